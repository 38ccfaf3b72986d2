//! A `/predict` body as JSON, the way Truss/Baseten-style clients send an image:
//! `{"image": "<base64 or data URL>", "text": "..."}`, with `prompt` taken as `text`. The same
//! limits as multipart: the decoded image may be at most the upload limit.
use actix_web::http::header::HeaderMap;
use actix_web::web::{Bytes, Payload};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Deserialize;

use super::upload::{read_within, within_read_timeout, Budget, PredictUpload, UploadLimits};
use super::InputError;
use crate::admission::Reservation;

#[derive(Deserialize)]
struct JsonPredict {
    image: Option<String>,
    #[serde(alias = "prompt")]
    text: Option<String>,
}

/// Standard alphabet; padding may be there or not (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Room for the text, the keys and a data-URL prefix beside the base64 of the images.
const JSON_OVERHEAD_BYTES: usize = 64 * 1024;

/// The largest JSON body that can carry `decoded_bytes` of images as base64 (4 bytes for 3).
pub fn base64_body_limit(decoded_bytes: usize) -> usize {
    decoded_bytes.div_ceil(3) * 4 + JSON_OVERHEAD_BYTES
}

pub async fn read_json(
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
    .map_err(|e| InputError::Internal(format!("JSON body thread failed: {e}")))??;
    PredictUpload::parse(image, text.map(Bytes::from), limits.max_text_chars)
}

/// A whole JSON body within `body_limit` bytes and the limits' time, held in `memory` as it
/// arrives; then as much again is reserved for what parsing it makes (the strings, the decoded
/// images: together about the body's size once more).
pub async fn read_json_body(
    headers: &HeaderMap,
    mut payload: Payload,
    body_limit: usize,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<Bytes, InputError> {
    if !super::upload::content_type_is(headers, "application/json") {
        return Err(InputError::UnsupportedMediaType("expected an application/json body".into()));
    }
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

/// Plain base64, or a data URL (`data:image/jpeg;base64,...`); whitespace (line breaks) ignored.
/// An image over `max_bytes` once decoded is refused (413), as an upload of that size would be.
pub fn decode_base64_image(field: &str, max_bytes: usize) -> Result<Bytes, InputError> {
    let data = match field.strip_prefix("data:") {
        Some(url) => {
            let (meta, data) = url
                .split_once(',')
                .ok_or_else(|| InputError::Invalid("`image` is a data URL without a comma".into()))?;
            if !meta.ends_with(";base64") {
                return Err(InputError::Invalid("`image` data URLs must be base64 (data:image/...;base64,...)".into()));
            }
            data
        }
        None => field,
    };
    let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let image =
        BASE64.decode(&compact).map_err(|e| InputError::Invalid(format!("`image` is not valid base64: {e}")))?;
    if image.len() > max_bytes {
        return Err(InputError::TooLarge { limit: max_bytes });
    }
    Ok(Bytes::from(image))
}

#[cfg(test)]
mod tests {
    use super::decode_base64_image;
    use super::InputError;

    fn decode_image(field: &str) -> Result<Vec<u8>, InputError> {
        decode_base64_image(field, 100).map(|b| b.to_vec())
    }

    #[test]
    fn base64_is_taken_plain_or_as_a_data_url_with_or_without_padding() {
        assert_eq!(decode_image("aGk=").unwrap(), b"hi");
        assert_eq!(decode_image("aGk").unwrap(), b"hi");
        assert_eq!(decode_image("data:image/jpeg;base64,aG\nk=").unwrap(), b"hi");
        assert!(decode_image("data:image/jpeg,hi").is_err(), "not base64");
        assert!(decode_image("not base64!").is_err());
    }
}
