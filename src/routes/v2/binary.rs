//! The protocol's binary tensor data extension (Triton's and KServe's): a body whose
//! `Inference-Header-Content-Length` first bytes are the JSON request, followed by the raw data of
//! the inputs whose `parameters.binary_data_size` says how many bytes are theirs, in order. A BYTES
//! tensor's raw data is each element as a 4-byte little-endian length and its bytes, so an image
//! travels as itself, without base64. Outputs asked for in binary come back the same way.
use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::web::Bytes;

use super::tensor::{BinaryData, InferResponse, OutputTensor, TensorData};

use crate::error::ApiError;

pub const HEADER: &str = "inference-header-content-length";

/// The JSON header's length when the body uses the extension.
pub fn header_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let length = value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok());
    length.map(Some).ok_or_else(|| {
        ApiError::Validation(format!("Inference-Header-Content-Length must be a number of bytes, got {value:?}"))
    })
}

/// (the JSON header, the binary data after it).
pub fn split(body: Bytes, header_length: Option<usize>) -> Result<(Bytes, Bytes), ApiError> {
    match header_length {
        None => Ok((body, Bytes::new())),
        Some(n) if n <= body.len() => Ok((body.slice(..n), body.slice(n..))),
        Some(n) => Err(ApiError::Validation(format!(
            "Inference-Header-Content-Length is {n} but the body holds {} bytes",
            body.len()
        ))),
    }
}

/// Hands out the binary section input by input, in the order the inputs come.
pub struct Section {
    data: Bytes,
    offset: usize,
}

impl Section {
    pub fn new(data: Bytes) -> Self {
        Section { data, offset: 0 }
    }

    /// The next `size` bytes, for input `name`.
    pub fn take(&mut self, name: &str, size: u64) -> Result<Bytes, ApiError> {
        let left = self.data.len() - self.offset;
        let size = usize::try_from(size).ok().filter(|s| *s <= left).ok_or_else(|| {
            ApiError::Validation(format!(
                "input {name:?}: binary_data_size {size} is past the body's binary data ({left} bytes left)"
            ))
        })?;
        let taken = self.data.slice(self.offset..self.offset + size);
        self.offset += size;
        Ok(taken)
    }

    /// Every byte must belong to an input.
    pub fn finish(self) -> Result<(), ApiError> {
        let left = self.data.len() - self.offset;
        match left {
            0 => Ok(()),
            _ => {
                Err(ApiError::Validation(format!("{left} bytes of binary data belong to no input's binary_data_size")))
            }
        }
    }
}

/// A BYTES tensor's elements from its raw data, at most `max` of them.
pub fn bytes_elements(name: &str, data: &Bytes, max: usize) -> Result<Vec<Bytes>, ApiError> {
    let malformed = |what: &str| ApiError::Validation(format!("input {name:?}: binary BYTES data {what}"));
    let mut elements = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if elements.len() == max {
            return Err(malformed(&format!("holds more than {max} elements")));
        }
        let prefix = data.get(at..at + 4).ok_or_else(|| malformed("ends inside an element's 4-byte length"))?;
        let length = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
        at += 4;
        if length > data.len() - at {
            return Err(malformed(&format!("has an element of {length} bytes past its end")));
        }
        elements.push(data.slice(at..at + length));
        at += length;
    }
    Ok(elements)
}

/// Moves an output's `data` into raw bytes (BYTES: length-prefixed; FP32: little-endian), leaving
/// `parameters.binary_data_size` in its place.
pub fn to_binary(output: &mut OutputTensor, raw: &mut Vec<u8>) {
    let before = raw.len();
    match output.data.take() {
        Some(TensorData::Bytes(texts)) => {
            for text in texts {
                raw.extend_from_slice(&(text.len() as u32).to_le_bytes());
                raw.extend_from_slice(text.as_bytes());
            }
        }
        Some(TensorData::Fp32(values)) => {
            for value in values {
                raw.extend_from_slice(&(value as f32).to_le_bytes());
            }
        }
        None => {}
    }
    output.parameters = Some(BinaryData { binary_data_size: raw.len() - before });
}

/// The response body and its header value: the JSON, then the raw data.
pub fn response_body(json: &InferResponse, raw: Vec<u8>) -> (Vec<u8>, HeaderValue) {
    let mut body = serde_json::to_vec(json).expect("the answer serializes");
    let header = HeaderValue::from(body.len());
    body.extend_from_slice(&raw);
    (body, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_elements_are_length_prefixed_and_truncation_is_refused() {
        let mut data = Vec::new();
        for element in [&b"abc"[..], b"", b"\xff\xd8"] {
            data.extend_from_slice(&(element.len() as u32).to_le_bytes());
            data.extend_from_slice(element);
        }
        let elements = bytes_elements("image", &Bytes::from(data.clone()), 10).unwrap();
        assert_eq!(elements, [&b"abc"[..], b"", b"\xff\xd8"]);
        assert!(bytes_elements("image", &Bytes::from(data.clone()), 2).is_err(), "more than the bound");
        assert!(bytes_elements("image", &Bytes::from(data[..data.len() - 1].to_vec()), 10).is_err(), "short");
        assert!(bytes_elements("image", &Bytes::from(vec![1, 0]), 10).is_err(), "half a length");
    }

    #[test]
    fn outputs_become_raw_bytes_with_their_size() {
        let mut raw = Vec::new();
        let tensor = |name: &str, datatype, data| OutputTensor {
            name: name.into(),
            datatype,
            shape: vec![1],
            data: Some(data),
            parameters: None,
        };
        let mut label = tensor("label", "BYTES", TensorData::Bytes(vec!["lemon".into()]));
        let mut probability = tensor("p", "FP32", TensorData::Fp32(vec![0.5]));
        to_binary(&mut label, &mut raw);
        to_binary(&mut probability, &mut raw);
        let json = serde_json::to_value([&label, &probability]).unwrap();
        assert_eq!(json[0]["parameters"]["binary_data_size"], 9);
        assert_eq!(json[1]["parameters"]["binary_data_size"], 4);
        assert!(json[0].get("data").is_none());
        assert_eq!(raw, [&5u32.to_le_bytes()[..], b"lemon", &0.5f32.to_le_bytes()].concat());
    }
}
