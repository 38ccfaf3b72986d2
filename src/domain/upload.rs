//! A `/predict` upload: a multipart body with one `image` file and at most one `text`, read
//! within a byte budget so that an oversized body is refused while it streams in. The same reader
//! serves `/predict/batch` (domain/batch.rs).
use std::future::Future;

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::{Stream, TryStreamExt};
use image::ImageFormat;

use super::InputError;
use crate::admission::Reservation;
use crate::preprocess::{sniff_format, ImageError};

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
    pub fn parse(bytes: Bytes) -> Result<Self, InputError> {
        if bytes.is_empty() {
            return Err(ImageError::Invalid("the `image` file is empty".into()).into());
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
    pub fn parse(raw: &str, max_chars: usize) -> Result<Option<Self>, InputError> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(InputError::Invalid(format!(
                "`text` is {chars} characters, more than the limit of {max_chars}"
            )));
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
    /// A multipart body, or a JSON one (`{"image": "<base64>", "text": "..."}`). Its bytes are
    /// held in `memory` as they arrive.
    pub async fn read(
        headers: &HeaderMap,
        payload: Payload,
        limits: UploadLimits,
        memory: &mut Reservation,
    ) -> Result<Self, InputError> {
        if content_type_is(headers, "application/json") {
            return super::json_upload::read_json(headers, payload, limits, memory).await;
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
            InputError::Invalid(
                "missing the `image` file field (send multipart/form-data with image=@photo.jpg)".into(),
            )
        })?;
        Self::parse(image, text, limits.max_text_chars)
    }

    /// One image and its optional text, as raw field bytes.
    pub fn parse(image: Bytes, text: Option<Bytes>, max_text_chars: usize) -> Result<Self, InputError> {
        let text = match text {
            None => None,
            Some(bytes) => {
                let raw =
                    std::str::from_utf8(&bytes).map_err(|_| InputError::Invalid("`text` is not valid UTF-8".into()))?;
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
pub async fn read_parts(
    headers: &HeaderMap,
    payload: Payload,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<Vec<Part>, InputError> {
    within_read_timeout(&limits, read_parts_within_time(headers, payload, limits, memory)).await
}

/// `reading` (a body) within the limits' time: a client that sends too slowly gets 408.
pub(super) async fn within_read_timeout<T>(
    limits: &UploadLimits,
    reading: impl Future<Output = Result<T, InputError>>,
) -> Result<T, InputError> {
    tokio::time::timeout(limits.read_timeout, reading)
        .await
        .map_err(|_| InputError::Timeout(limits.read_timeout.as_secs()))?
}

async fn read_parts_within_time(
    headers: &HeaderMap,
    payload: Payload,
    limits: UploadLimits,
    memory: &mut Reservation,
) -> Result<Vec<Part>, InputError> {
    check_content_type(headers)?;
    let mut budget = Budget::new(headers, limits.max_body_bytes, memory)?;
    let mut multipart = Multipart::new(headers, payload);
    let mut parts = Vec::new();
    while let Some(mut field) = multipart.try_next().await.map_err(malformed)? {
        if parts.len() == limits.max_parts {
            return Err(InputError::Invalid(format!("more than {} multipart fields", limits.max_parts)));
        }
        let name = field.name().map(str::to_string);
        parts.push(Part { name, bytes: read_within(&mut field, &mut budget, 0, malformed).await? });
    }
    Ok(parts)
}

/// The length the body declares, if it does.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Whether the body is of this media type, whatever its parameters and case.
pub(super) fn content_type_is(headers: &HeaderMap, essence: &str) -> bool {
    content_type(headers).trim_start().to_ascii_lowercase().starts_with(essence)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), InputError> {
    let content_type = content_type(headers);
    if !content_type_is(headers, "multipart/form-data") {
        return Err(InputError::UnsupportedMediaType(format!(
            "expected a multipart/form-data body with an `image` file (or, on /predict, application/json with a base64 `image`), got content type {content_type:?}"
        )));
    }
    Ok(())
}

/// Bytes a body may still bring, shared by all the fields of one multipart body; and the memory
/// they take, held in the request's reservation as they arrive.
pub(super) struct Budget<'a> {
    left: usize,
    limit: usize,
    /// Reserved ahead from the declared length and not yet used.
    prepaid: usize,
    memory: &'a mut Reservation,
}

impl<'a> Budget<'a> {
    /// A body whose declared length is over `limit` is refused before any of it is read; one
    /// within it has that much memory reserved at once (so it is refused before it is read when
    /// the budget cannot hold it), one without a length reserves as it arrives.
    pub(super) fn new(headers: &HeaderMap, limit: usize, memory: &'a mut Reservation) -> Result<Self, InputError> {
        let declared = declared_length(headers).unwrap_or(0);
        if declared > limit {
            return Err(InputError::TooLarge { limit });
        }
        memory.add(declared as u64)?;
        Ok(Self { left: limit, limit, prepaid: declared, memory })
    }

    /// The declared length that is reserved and not yet read.
    pub(super) fn prepaid(&self) -> usize {
        self.prepaid
    }

    fn take(&mut self, bytes: usize) -> Result<(), InputError> {
        self.left = self.left.checked_sub(bytes).ok_or(InputError::TooLarge { limit: self.limit })?;
        let from_prepaid = bytes.min(self.prepaid);
        self.prepaid -= from_prepaid;
        Ok(self.memory.add((bytes - from_prepaid) as u64)?)
    }
}

/// A body stream (a multipart field, or a whole body) within the budget: past it, 413 at once,
/// before the rest arrives. `expected`: the bytes it should bring (a whole body's declared length),
/// allocated at once rather than grown by copies.
pub(super) async fn read_within<S, E>(
    stream: &mut S,
    budget: &mut Budget<'_>,
    expected: usize,
    error: impl Fn(E) -> InputError,
) -> Result<Bytes, InputError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut buf = BytesMut::with_capacity(expected.min(budget.left));
    while let Some(chunk) = stream.try_next().await.map_err(&error)? {
        budget.take(chunk.len())?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn malformed(e: actix_multipart::MultipartError) -> InputError {
    InputError::Invalid(format!("malformed multipart body: {e}"))
}

fn twice(name: &str) -> InputError {
    InputError::Invalid(format!("more than one `{name}` field"))
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
        assert!(matches!(ImageUpload::parse(Bytes::new()), Err(InputError::Image(ImageError::Invalid(_)))));
    }
}
