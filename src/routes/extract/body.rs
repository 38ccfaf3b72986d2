//! Reading a request body within the limits: its declared length and its bytes (413 past the
//! limit, while it streams in), its time (408), and the memory budget (held in the request's
//! reservation as the bytes arrive). Multipart bodies are read field by field.
use std::future::Future;

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::{Stream, TryStreamExt};

use crate::domain::{InputError, UploadLimits};
use crate::limits::Reservation;

/// One field of a multipart body.
pub(super) struct Part {
    pub name: Option<String>,
    pub bytes: Bytes,
}

/// Every field of a multipart body, in order, within the limits' bytes, field count and time.
pub(super) async fn read_parts(
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

pub(super) fn twice(name: &str) -> InputError {
    InputError::Invalid(format!("more than one `{name}` field"))
}
