//! Request inputs that validate on construction: a handler that holds one knows it is usable.
mod base64_image;
mod batch;
mod names;
mod top_k;
mod upload;

pub use batch::BatchUpload;
pub use names::{valid_name, PREVIOUS, STABLE};

use crate::limits::AdmissionError;
use crate::preprocess::ImageError;

/// Why a request's input is refused; `error.rs` says what each means over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Malformed or out of the limits (fields, text, top_k, JSON, base64).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {0} s")]
    Timeout(u64),
    /// The memory budget cannot hold the body.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// A task of ours failed (the JSON body's parse on the blocking pool): the cause is kept.
    #[error("the {what} thread failed")]
    Internal {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
pub use base64_image::{base64_body_limit, decode_base64_image};
pub use top_k::TopK;
pub use upload::{ImageUpload, PredictText, PredictUpload, UploadLimits};
