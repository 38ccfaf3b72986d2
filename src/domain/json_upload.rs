//! A `/predict` body as JSON, the way Truss/Baseten-style clients send an image:
//! `{"image": "<base64 or data URL>", "text": "..."}`, with `prompt` taken as `text`. The same
//! limits as multipart: the decoded image may be at most the upload limit.
use actix_web::web::{Bytes, BytesMut, Payload};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use futures_util::TryStreamExt;
use serde::Deserialize;

use super::upload::{PredictUpload, UploadLimits};
use crate::error::ApiError;

#[derive(Deserialize)]
struct JsonPredict {
    image: Option<String>,
    #[serde(alias = "prompt")]
    text: Option<String>,
}

/// Standard alphabet; padding may be there or not (clients differ).
const BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// Room for the text, the keys and a data-URL prefix beside the base64 of the largest image.
const JSON_OVERHEAD_BYTES: usize = 64 * 1024;

pub async fn read_json(payload: Payload, limits: UploadLimits) -> Result<PredictUpload, ApiError> {
    let body_limit = limits.max_body_bytes.div_ceil(3) * 4 + JSON_OVERHEAD_BYTES;
    let body = tokio::time::timeout(limits.read_timeout, read_body(payload, body_limit))
        .await
        .map_err(|_| ApiError::RequestTimeout(limits.read_timeout.as_secs()))??;
    let request: JsonPredict =
        serde_json::from_slice(&body).map_err(|e| ApiError::Validation(format!("malformed JSON body: {e}")))?;
    let image = request.image.ok_or_else(|| {
        ApiError::Validation("missing `image`: send {\"image\": \"<base64 or data:image/...;base64,...>\", \"text\": \"...\"}".into())
    })?;
    let image = decode_base64_image(&image)?;
    if image.len() > limits.max_body_bytes {
        return Err(ApiError::PayloadTooLarge { limit: limits.max_body_bytes });
    }
    PredictUpload::parse(Bytes::from(image), request.text.map(Bytes::from), limits.max_text_chars)
}

/// Plain base64, or a data URL (`data:image/jpeg;base64,...`); whitespace (line breaks) ignored.
pub fn decode_base64_image(field: &str) -> Result<Vec<u8>, ApiError> {
    let data = match field.strip_prefix("data:") {
        Some(url) => {
            let (meta, data) = url.split_once(',').ok_or_else(|| ApiError::Validation("`image` is a data URL without a comma".into()))?;
            if !meta.ends_with(";base64") {
                return Err(ApiError::Validation("`image` data URLs must be base64 (data:image/...;base64,...)".into()));
            }
            data
        }
        None => field,
    };
    let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    BASE64.decode(&compact).map_err(|e| ApiError::Validation(format!("`image` is not valid base64: {e}")))
}

async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.try_next().await.map_err(|e| ApiError::Validation(format!("cannot read the body: {e}")))? {
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::decode_base64_image as decode_image;

    #[test]
    fn base64_is_taken_plain_or_as_a_data_url_with_or_without_padding() {
        assert_eq!(decode_image("aGk=").unwrap(), b"hi");
        assert_eq!(decode_image("aGk").unwrap(), b"hi");
        assert_eq!(decode_image("data:image/jpeg;base64,aG\nk=").unwrap(), b"hi");
        assert!(decode_image("data:image/jpeg,hi").is_err(), "not base64");
        assert!(decode_image("not base64!").is_err());
    }
}
