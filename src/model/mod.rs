//! The model: its files (manifest, weights, class mapping), loading and validating them, the
//! inference thread that runs it, the repository of versions on disk and the table of loaded ones.
mod audit;
pub mod bundle;
mod device;
mod dropin;
mod identity;
mod loaded;
mod loader;
mod manage;
mod manifest;
mod mapping;
mod onnx;
mod onnx_check;
mod prediction;
mod repository;
mod restore;
mod routing;
mod state;
mod stats;
mod table;
mod text;
#[cfg(feature = "torch")]
pub mod torchscript_ops;
mod worker;

use std::path::{Path, PathBuf};

pub use audit::{AuditSink, Deployment, KEPT as DEPLOYMENTS_KEPT};
pub use device::{
    allowed_cpus, bind_torch_team, device_name, enable_onednn_fusion, fusing, no_grad, onednn_fusion, resolve_device,
    set_torch_threads, undo_openmp_pin, Device, DeviceChoice,
};
pub use identity::{Fingerprint, ModelId};
pub use loaded::{models_alive, LoadedModel, ModelFile, ModelPaths, Work};
pub use manifest::{Manifest, TextEncoderManifest, MANIFEST_FILE};
pub use mapping::{ClassEntry, ClassMapping};
pub use onnx::{new_session as onnx_session, runtime as onnx_runtime, Slot, Spinning};
pub use prediction::{class_probabilities, combine, softmax, ClassScore, Prediction};
pub use repository::{fingerprint as fingerprint_files, valid_name, CLASS_MAPPING_FILE};
pub use routing::{CanaryAbort, Route, RoutingPolicy, ShadowPolicy, Share};
pub use stats::{PairReport, ProtocolTotals, Recorded, Stages, StatsReport, Totals, VersionStats};
pub use table::{
    ManageError, ModelEntry, ModelTable, ResolveError, Snapshot, TableSettings, Validator, VersionEntry, VersionState,
    PREVIOUS, STABLE,
};
pub use text::TextModel;
pub use worker::{InferError, Inference, InferenceWorker, Lane, ThreadLayout, TorchThreads};

/// Reloads of the drop-in folder so far.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStats {
    pub succeeded: u64,
    pub failed: u64,
    pub last: Option<ReloadRecord>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub ok: bool,
    pub generation: u64,
    pub duration_ms: f64,
    pub error: Option<String>,
}

/// A name read from a file (a tensor's, a tar entry's), cut short for an error message and the
/// log: a hostile one may be megabytes long.
pub fn shorten(name: &str) -> String {
    const MAX_SHOWN: usize = 80;
    match name.char_indices().nth(MAX_SHOWN) {
        Some((end, _)) => format!("{:?}... ({} bytes)", &name[..end], name.len()),
        None => format!("{name:?}"),
    }
}

/// Why a model folder cannot be served, naming the file at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
}

impl LoadError {
    pub fn new(file: &Path, reason: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), reason: reason.into() }
    }

    pub fn io(file: &Path, e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Self::new(file, "file not found"),
            _ => Self::new(file, format!("cannot read: {e}")),
        }
    }
}
