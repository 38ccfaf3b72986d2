//! The model at run time: its files (manifest, weights, class mapping), loading and validating them,
//! the backends (TorchScript on libtorch, ONNX Runtime), the inference threads that run them, the
//! device and thread layout, and each loaded version's statistics. Nothing here knows of aliases,
//! routing or the repository: that is `versions` (the control plane) and `traffic` (the policy).
mod device;
mod files;
mod identity;
mod loaded;
mod loader;
mod manifest;
mod mapping;
mod onnx;
pub(crate) mod onnx_check;
mod prediction;
mod stats;
mod text;
#[cfg(feature = "torch")]
pub mod torchscript_ops;
mod worker;

use std::path::{Path, PathBuf};

pub use device::{
    allowed_cpus, bind_torch_team, device_name, enable_onednn_fusion, fusing, no_grad, onednn_fusion, resolve_device,
    set_torch_threads, undo_openmp_pin, Device, DeviceChoice,
};
pub use files::{first_line, hashed, ModelFile};
pub use identity::{Fingerprint, ModelId};
pub use loaded::{models_alive, LoadedModel, ModelPaths, Work};
pub use loader::Loader;
pub use manifest::{Manifest, ModelFormat, TextEncoderManifest, MANIFEST_FILE};
pub use mapping::{ClassEntry, ClassMapping};
pub use onnx::{new_session as onnx_session, runtime as onnx_runtime, Slot, Spinning};
pub use prediction::{class_probabilities, combine, softmax, ClassScore, Prediction};
pub use stats::{PairReport, ProtocolTotals, Recorded, Stages, StatsReport, Totals, VersionStats, Window};
pub use text::TextModel;
pub use worker::{InferError, Inference, InferenceWorker, Lane, ThreadLayout, TorchThreads};

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
