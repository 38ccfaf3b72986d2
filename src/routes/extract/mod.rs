//! Request bodies read into domain types (`crate::domain`), within the upload limits, the read
//! timeout and the memory budget: HTTP I/O stays here, the domain types only validate.
mod body;
mod json;

use actix_web::http::header::HeaderMap;
use actix_web::web::Payload;

use crate::domain::{BatchUpload, InputError, PredictUpload, UploadLimits};
use crate::limits::Reservation;
use body::{content_type_is, read_parts, twice};
pub use json::{read_body, read_json_body};

/// A /predict upload from a multipart body, or a JSON one (`{"image": "<base64>", "text": "..."}`).
/// Its bytes are held in `memory` as they arrive.
pub async fn predict_upload(
    headers: &HeaderMap,
    payload: Payload,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<PredictUpload, InputError> {
    if content_type_is(headers, "application/json") {
        return json::predict_upload(headers, payload, limits, memory).await;
    }
    let (mut image, mut text) = (None, None);
    for part in read_parts(headers, payload, limits, memory).await? {
        match part.name.as_deref() {
            Some("image") if image.is_some() => return Err(twice("image")),
            Some("image") => image = Some(part.bytes),
            Some("text") if text.is_some() => return Err(twice("text")),
            Some("text") => text = Some(part.bytes),
            // Unknown fields are ignored, like unknown JSON keys (their bytes count to the limit).
            _ => {}
        }
    }
    let image = image.ok_or_else(|| {
        InputError::Invalid("missing the `image` file field (send multipart/form-data with image=@photo.jpg)".into())
    })?;
    PredictUpload::parse(image, text, limits.max_text_chars)
}

/// A /predict/batch upload: every `image` field, each with the `text` at its position.
pub async fn batch_upload(
    headers: &HeaderMap,
    payload: Payload,
    limits: UploadLimits,
    max_items: usize,
    memory: &mut Reservation,
) -> Result<BatchUpload, InputError> {
    let (mut images, mut texts) = (Vec::new(), Vec::new());
    for part in read_parts(headers, payload, limits, memory).await? {
        match part.name.as_deref() {
            Some("image") => images.push(part.bytes),
            Some("text") => texts.push(part.bytes),
            _ => {}
        }
    }
    BatchUpload::pair(images, texts, limits.max_text_chars, max_items)
}
