//! The model: its files (manifest, weights, class mapping), loading and validating them, the
//! inference thread that runs it, and the handle that swaps in a reloaded one.
mod device;
mod identity;
mod loaded;
mod manifest;
mod mapping;
mod onnx;
mod prediction;
mod registry;
mod text;
mod worker;

use std::path::{Path, PathBuf};

pub use device::{device_name, resolve_device, DeviceChoice};
pub use identity::{Fingerprint, ModelId};
pub use loaded::{models_alive, LoadedModel, ModelFile, ModelPaths, Work};
pub use manifest::{Manifest, TextEncoderManifest, MANIFEST_FILE};
pub use mapping::{ClassEntry, ClassMapping};
pub use onnx::{new_session as onnx_session, runtime as onnx_runtime, Slot};
pub use prediction::{class_probabilities, combine, softmax, ClassScore, Prediction};
pub use registry::{ModelRegistry, ReloadRecord, ReloadStats};
pub use text::TextModel;
pub use worker::{InferError, Inference, InferenceWorker, ThreadLayout, TorchThreads};

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
