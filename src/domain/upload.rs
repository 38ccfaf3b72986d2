//! A `/predict` upload: a multipart body with one `image` file and at most one `text`, read
//! within a byte budget so that an oversized body is refused while it streams in. The same reader
//! serves `/predict/batch` (domain/batch.rs).
use actix_multipart::{Field, Multipart};
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::TryStreamExt;
use image::ImageFormat;

use crate::error::ApiError;
use crate::preprocess::sniff_format;

#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_body_bytes: usize,
    pub max_text_chars: usize,
    pub max_parts: usize,
    /// For the whole body to arrive: a slow client does not hold its connection forever.
    pub read_timeout: std::time::Duration,
}

/// Non-empty bytes whose magic number is an image format we decode.
#[derive(Debug, Clone)]
pub struct ImageUpload {
    bytes: Bytes,
    format: ImageFormat,
}

impl ImageUpload {
    pub fn parse(bytes: Bytes) -> Result<Self, ApiError> {
        if bytes.is_empty() {
            return Err(ApiError::InvalidImage("the `image` file is empty".into()));
        }
        let format = sniff_format(&bytes)?;
        Ok(Self { bytes, format })
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }
}

/// A text within the length limit, trimmed; blank text counts as no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictText(String);

impl PredictText {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Option<Self>, ApiError> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(ApiError::Validation(format!("`text` is {chars} characters, more than the limit of {max_chars}")));
        }
        Ok((!text.is_empty()).then(|| Self(text.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug)]
pub struct PredictUpload {
    pub image: ImageUpload,
    pub text: Option<PredictText>,
}

impl PredictUpload {
    /// A multipart body, or a JSON one (`{"image": "<base64>", "text": "..."}`).
    pub async fn read(headers: &HeaderMap, payload: Payload, limits: UploadLimits) -> Result<Self, ApiError> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if content_type.trim_start().to_ascii_lowercase().starts_with("application/json") {
            return super::json_upload::read_json(payload, limits).await;
        }
        let (mut image, mut text) = (None, None);
        for part in read_parts(headers, payload, limits).await? {
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
            ApiError::Validation("missing the `image` file field (send multipart/form-data with image=@photo.jpg)".into())
        })?;
        Self::parse(image, text, limits.max_text_chars)
    }

    /// One image and its optional text, as raw field bytes.
    pub fn parse(image: Bytes, text: Option<Bytes>, max_text_chars: usize) -> Result<Self, ApiError> {
        let text = match text {
            None => None,
            Some(bytes) => {
                let raw = std::str::from_utf8(&bytes).map_err(|_| ApiError::Validation("`text` is not valid UTF-8".into()))?;
                PredictText::parse(raw, max_text_chars)?
            }
        };
        Ok(Self { image: ImageUpload::parse(image)?, text })
    }
}

/// One field of a multipart body.
pub struct Part {
    pub name: Option<String>,
    pub bytes: Bytes,
}

/// Every field of a multipart body, in order, within the limits' bytes, field count and time.
pub async fn read_parts(headers: &HeaderMap, payload: Payload, limits: UploadLimits) -> Result<Vec<Part>, ApiError> {
    tokio::time::timeout(limits.read_timeout, read_parts_within_time(headers, payload, limits))
        .await
        .map_err(|_| ApiError::RequestTimeout(limits.read_timeout.as_secs()))?
}

async fn read_parts_within_time(headers: &HeaderMap, payload: Payload, limits: UploadLimits) -> Result<Vec<Part>, ApiError> {
    check_content_type(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(ApiError::PayloadTooLarge { limit: limits.max_body_bytes });
    }

    let mut budget = Budget { left: limits.max_body_bytes, limit: limits.max_body_bytes };
    let mut multipart = Multipart::new(headers, payload);
    let mut parts = Vec::new();
    while let Some(mut field) = multipart.try_next().await.map_err(malformed)? {
        if parts.len() == limits.max_parts {
            return Err(ApiError::Validation(format!("more than {} multipart fields", limits.max_parts)));
        }
        let name = field.name().map(str::to_string);
        parts.push(Part { name, bytes: read_field(&mut field, &mut budget).await? });
    }
    Ok(parts)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "expected a multipart/form-data body with an `image` file (or, on /predict, application/json with a base64 `image`), got content type {content_type:?}"
        )));
    }
    Ok(())
}

struct Budget {
    left: usize,
    limit: usize,
}

async fn read_field(field: &mut Field, budget: &mut Budget) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.try_next().await.map_err(malformed)? {
        budget.left = budget.left.checked_sub(chunk.len()).ok_or(ApiError::PayloadTooLarge { limit: budget.limit })?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn malformed(e: actix_multipart::MultipartError) -> ApiError {
    ApiError::Validation(format!("malformed multipart body: {e}"))
}

fn twice(name: &str) -> ApiError {
    ApiError::Validation(format!("more than one `{name}` field"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_text_is_no_text_and_long_text_is_refused() {
        assert_eq!(PredictText::parse("  \n ", 10).unwrap(), None);
        assert_eq!(PredictText::parse(" pizza ", 10).unwrap().unwrap().as_str(), "pizza");
        assert!(PredictText::parse("ééééééééééé", 10).is_err(), "11 characters");
        assert!(PredictText::parse("éééééééééé", 10).is_ok(), "10 characters, 20 bytes");
    }

    #[test]
    fn an_empty_image_is_refused() {
        assert!(matches!(ImageUpload::parse(Bytes::new()), Err(ApiError::InvalidImage(_))));
    }
}
