//! Request inputs that validate on construction: a handler that holds one knows it is usable.
mod batch;
mod json_upload;
mod top_k;
mod upload;

pub use batch::BatchUpload;
pub use json_upload::{base64_body_limit, decode_base64_image, read_json_body};
pub use top_k::TopK;
pub use upload::{ImageUpload, PredictText, PredictUpload, UploadLimits};
