//! Request inputs that validate on construction: a handler that holds one knows it is usable.
mod top_k;
mod upload;

pub use top_k::TopK;
pub use upload::{ImageUpload, PredictText, PredictUpload, UploadLimits};
