//! Request bodies and shared refusals as the OpenAPI document describes them: the handlers read these
//! bodies through `extract/`, so these types only document them.
use utoipa::ToSchema;

use crate::error::ErrorBody;

/// POST /predict as multipart/form-data.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PredictForm {
    /// The photo: JPEG, PNG, WebP, BMP, GIF or TIFF.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// Optional text about the photo ("Image of pizza"); it moves the answer towards the label it names.
    text: Option<String>,
}

/// POST /predict as application/json (Truss/Baseten style).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PredictJson {
    /// The photo as base64, or a data URL (`data:image/jpeg;base64,...`).
    image: String,
    /// Optional text; `prompt` is accepted as another name for it.
    text: Option<String>,
}

/// POST /predict/batch: several `image` files, each optionally with a `text` (paired by position).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchForm {
    #[schema(value_type = Vec<String>, format = Binary)]
    image: Vec<Vec<u8>>,
    text: Option<Vec<String>>,
}

/// The refusals every upload route shares, each answered with the error shape.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum UploadErrors {
    /// Bad input (validation, invalid_image)
    #[response(status = 400)]
    BadInput(#[to_schema] ErrorBody<'static>),
    /// No such model, version or alias (the path, or `X-Model-Version`)
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody<'static>),
    /// The body did not arrive within --request-timeout-seconds
    #[response(status = 408)]
    Timeout(#[to_schema] ErrorBody<'static>),
    /// Body or image too large
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody<'static>),
    /// Not an image, not a supported body type, or a Content-Encoding
    #[response(status = 415)]
    UnsupportedMediaType(#[to_schema] ErrorBody<'static>),
    /// Queue full, requests in progress at their bound, or memory budget in use (Retry-After: 1)
    #[response(status = 503)]
    Overloaded(#[to_schema] ErrorBody<'static>),
    /// Deadline passed
    #[response(status = 504)]
    DeadlineExceeded(#[to_schema] ErrorBody<'static>),
}
