//! JSON bodies: /predict's `{"image", "text"}` form and the whole body of a v2 infer request.
use actix_web::http::header::HeaderMap;
use actix_web::web::{Bytes, Payload};
use serde::Deserialize;

use super::body::{content_type_is, read_within, within_read_timeout, Budget};
use crate::domain::{base64_body_limit, decode_base64_image, InputError, PredictUpload, UploadLimits};
use crate::limits::Reservation;

#[derive(Deserialize)]
struct JsonPredict {
    image: Option<String>,
    #[serde(alias = "prompt")]
    text: Option<String>,
}

/// A /predict upload from `{"image": "<base64 or data URL>", "text": "..."}` (Truss/Baseten
/// style; `prompt` is taken as `text`): the same limits as multipart, the decoded image at most the
/// upload limit.
pub async fn predict_upload(
    headers: &HeaderMap,
    payload: Payload,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<PredictUpload, InputError> {
    let body = read_json_body(headers, payload, base64_body_limit(limits.max_body_bytes), limits, memory).await?;
    let max_bytes = limits.max_body_bytes;
    // Parsing and base64 over megabytes is CPU work: not on an async worker.
    let (image, text) = actix_web::web::block(move || {
        let request: JsonPredict =
            serde_json::from_slice(&body).map_err(|e| InputError::Invalid(format!("malformed JSON body: {e}")))?;
        let image = request.image.ok_or_else(|| {
            InputError::Invalid(
                "missing `image`: send {\"image\": \"<base64 or data:image/...;base64,...>\", \"text\": \"...\"}"
                    .into(),
            )
        })?;
        Ok::<_, InputError>((decode_base64_image(&image, max_bytes)?, request.text))
    })
    .await
    .map_err(|e| InputError::Internal { what: "JSON body", source: Box::new(e) })??;
    PredictUpload::parse(image, text.map(Bytes::from), limits.max_text_chars)
}

/// A whole JSON body within `body_limit` bytes and the limits' time, held in `memory` as it
/// arrives; then as much again is reserved for what parsing it makes (the strings, the decoded
/// images: together about the body's size once more).
pub async fn read_json_body(
    headers: &HeaderMap,
    payload: Payload,
    body_limit: usize,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<Bytes, InputError> {
    // No Content-Type at all is taken as JSON: tritonclient sends none on infer requests, and
    // Triton and KServe accept that. Another type is refused.
    let declared = headers.contains_key(actix_web::http::header::CONTENT_TYPE);
    if declared && !content_type_is(headers, "application/json") {
        return Err(InputError::UnsupportedMediaType("expected an application/json body".into()));
    }
    read_body(headers, payload, body_limit, limits, memory).await
}

/// A whole body of any type, with the same limits as `read_json_body` (the protocol's binary
/// data extension: its JSON part is parsed as JSON afterwards).
pub async fn read_body(
    headers: &HeaderMap,
    mut payload: Payload,
    body_limit: usize,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<Bytes, InputError> {
    let body = within_read_timeout(&limits, async {
        let mut budget = Budget::new(headers, body_limit, memory)?;
        let declared = budget.prepaid();
        let error = |e| InputError::Invalid(format!("cannot read the body: {e}"));
        read_within(&mut payload, &mut budget, declared, error).await
    })
    .await?;
    memory.add(body.len() as u64)?;
    Ok(body)
}
