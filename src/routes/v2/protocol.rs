//! The protocol's infer request and response, translated to and from this server's uploads and
//! answers: BYTES inputs (base64 images, texts) in, `label` / `probability` / `top_k` outputs out.
use actix_web::web::Bytes;
use serde::Deserialize;

use super::binary::{bytes_elements, Section};
use super::bounded::{Bounded, Element};
use super::tensor::{OutputTensor, TensorData};
use crate::config::PredictLimits;
use crate::domain::{decode_base64_image, InputError, PredictUpload};
use crate::error::ApiError;
use crate::service::Outcome;

/// Most elements of an input: --max-batch-items can be at most this.
pub const MAX_ELEMENTS: usize = 10_000;
/// Inputs and outputs: the protocol knows two of one and three of the other; room for repeats.
const MAX_TENSORS: usize = 8;
const MAX_DIMENSIONS: usize = 8;

/// Parsed with every list bounded as it is read (`Bounded`), and unknown fields skipped unbuilt.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    pub id: Option<String>,
    #[schema(value_type = Vec<InferInput>)]
    inputs: Bounded<InferInput, MAX_TENSORS>,
    #[schema(value_type = Option<Vec<RequestedOutput>>)]
    outputs: Option<Bounded<RequestedOutput, MAX_TENSORS>>,
    #[serde(default)]
    parameters: RequestParameters,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct RequestParameters {
    /// Every output in binary (the binary data extension) unless an output says otherwise
    binary_data_output: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct InferInput {
    /// "image" or "text"
    name: String,
    /// "BYTES"
    datatype: String,
    #[schema(value_type = Vec<i64>)]
    shape: Bounded<i64, MAX_DIMENSIONS>,
    /// Base64 of each image; UTF-8 strings for texts. Absent when the elements are in the body's
    /// binary data (`parameters.binary_data_size`): there, raw image bytes, no base64
    #[schema(value_type = Option<Vec<String>>)]
    data: Option<Bounded<Element, MAX_ELEMENTS>>,
    #[serde(default)]
    parameters: InputParameters,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct InputParameters {
    /// This input's bytes in the binary data after the JSON (Inference-Header-Content-Length)
    binary_data_size: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RequestedOutput {
    /// "label", "probability" or "top_k"
    name: String,
    #[serde(default)]
    parameters: OutputParameters,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct OutputParameters {
    /// The top N as "score:index:label"
    #[schema(value_type = Option<u64>)]
    classification: Option<serde_json::Number>,
    /// This output in binary after the JSON (the binary data extension)
    binary_data: Option<bool>,
}

/// An input element: a JSON string (base64 for images) or raw bytes (binary data, gRPC).
#[derive(Clone)]
pub enum Item {
    Json(String),
    Raw(Bytes),
}

/// An input tensor however it came (JSON, the binary data extension, gRPC), before its checks.
pub struct Input {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub elements: Vec<Item>,
}

/// An output to send: its name, the top N for the classification extension, in binary or not.
pub struct Requested {
    pub name: String,
    pub classification: Option<usize>,
    pub binary: bool,
}

/// Parses an infer body (off the async workers: it may be tens of MB).
pub async fn parse(body: Bytes) -> Result<InferRequest, ApiError> {
    actix_web::web::block(move || serde_json::from_slice::<InferRequest>(&body))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("JSON body thread failed: {e}")))?
        .map_err(|e| ApiError::Validation(format!("malformed JSON body: {e}")))
}

pub const OUTPUTS: [&str; 3] = ["label", "probability", "top_k"];

/// The request's images and texts as uploads.
pub async fn uploads(
    request: InferRequest,
    binary: Bytes,
    limits: &PredictLimits,
) -> Result<Vec<PredictUpload>, ApiError> {
    let mut inputs = Vec::with_capacity(request.inputs.0.len());
    let mut section = Section::new(binary);
    for input in request.inputs.0 {
        let elements: Vec<Item> = match (input.data, input.parameters.binary_data_size) {
            (None, Some(size)) => {
                let raw = section.take(&input.name, size)?;
                bytes_elements(&input.name, &raw, MAX_ELEMENTS)?.into_iter().map(Item::Raw).collect()
            }
            (Some(data), None) => data
                .0
                .into_iter()
                .map(|e| {
                    e.0.map(Item::Json).ok_or_else(|| {
                        ApiError::Validation(format!("input {:?}: BYTES elements are strings", input.name))
                    })
                })
                .collect::<Result<_, ApiError>>()?,
            (Some(_), Some(_)) => {
                return Err(ApiError::Validation(format!(
                    "input {:?}: `data` and `parameters.binary_data_size` both given; send one",
                    input.name
                )))
            }
            (None, None) => {
                return Err(ApiError::Validation(format!(
                    "input {:?}: no `data`, and no `parameters.binary_data_size` for binary data",
                    input.name
                )))
            }
        };
        inputs.push(Input { name: input.name, datatype: input.datatype, shape: input.shape.0, elements });
    }
    section.finish()?;
    uploads_of(inputs, limits).await
}

/// The inputs' images and texts as uploads, checked (names, types, shapes, counts, sizes); base64
/// is decoded off the async workers.
pub async fn uploads_of(inputs: Vec<Input>, limits: &PredictLimits) -> Result<Vec<PredictUpload>, ApiError> {
    let mut images = None;
    let mut texts = None;
    for input in inputs {
        if input.datatype != "BYTES" {
            return Err(ApiError::Validation(format!("input {:?} must be BYTES, got {}", input.name, input.datatype)));
        }
        let elements = input.elements;
        if elements.len() > MAX_ELEMENTS {
            return Err(ApiError::Validation(format!(
                "input {:?} holds more than {MAX_ELEMENTS} elements",
                input.name
            )));
        }
        let count = input.shape.iter().try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) });
        if input.shape.len() > MAX_DIMENSIONS || count != Some(elements.len() as i64) {
            return Err(ApiError::Validation(format!(
                "input {:?}: shape {:?} does not hold {} elements",
                input.name,
                input.shape,
                elements.len()
            )));
        }
        match input.name.as_str() {
            "image" => images = Some(elements),
            "text" => texts = Some(elements),
            other => {
                return Err(ApiError::Validation(format!("unknown input {other:?}; inputs are \"image\" and \"text\"")))
            }
        }
    }
    let images = images
        .ok_or_else(|| ApiError::Validation("missing the \"image\" input (BYTES, base64 of each image)".into()))?;
    let max_items = limits.max_batch_items;
    if images.is_empty() || images.len() > max_items {
        return Err(ApiError::Validation(format!(
            "\"image\" holds {} images; 1 to {max_items} are accepted",
            images.len()
        )));
    }
    let texts: Vec<Option<Item>> = match texts {
        Some(t) if t.len() == images.len() => t.into_iter().map(Some).collect(),
        Some(t) if t.len() == 1 => vec![t.into_iter().next(); images.len()],
        Some(t) => {
            return Err(ApiError::Validation(format!(
                "\"text\" holds {} elements for {} images: send one, or one per image",
                t.len(),
                images.len()
            )))
        }
        None => vec![None; images.len()],
    };
    let (max_bytes, max_chars) = (limits.max_upload_bytes, limits.max_text_chars);
    actix_web::web::block(move || {
        images
            .into_iter()
            .zip(texts)
            .map(|(image, text)| {
                let bytes = match image {
                    Item::Json(base64) => decode_base64_image(&base64, max_bytes)?,
                    Item::Raw(raw) if raw.len() > max_bytes => return Err(InputError::TooLarge { limit: max_bytes }),
                    Item::Raw(raw) => raw,
                };
                let text = text.map(|t| match t {
                    Item::Json(text) => Bytes::from(text),
                    Item::Raw(raw) => raw,
                });
                PredictUpload::parse(bytes, text, max_chars)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("base64 thread failed: {e}")))?
    .map_err(ApiError::from)
}

/// The outputs to send; every output when the request names none.
pub fn requested_outputs(request: &InferRequest, top_k: usize, max_top_k: usize) -> Result<Vec<Requested>, ApiError> {
    let all_binary = request.parameters.binary_data_output.unwrap_or(false);
    let Some(Bounded(outputs)) = &request.outputs else {
        return Ok(all_outputs(top_k, all_binary));
    };
    outputs
        .iter()
        .map(|o| {
            let classification =
                o.parameters.classification.as_ref().map(|v| (v.as_u64(), v as &dyn std::fmt::Display));
            let binary = o.parameters.binary_data.unwrap_or(all_binary);
            requested(&o.name, classification, binary, top_k, max_top_k)
        })
        .collect()
}

/// Every output, `top_k` with the default N.
pub fn all_outputs(top_k: usize, binary: bool) -> Vec<Requested> {
    OUTPUTS
        .iter()
        .map(|name| Requested { name: name.to_string(), classification: (*name == "top_k").then_some(top_k), binary })
        .collect()
}

/// One requested output, checked: a known name, and a classification count (as given: the count
/// if it is a whole number, and how it was written) within 1..=max_top_k.
pub fn requested(
    name: &str,
    classification: Option<(Option<u64>, &dyn std::fmt::Display)>,
    binary: bool,
    top_k: usize,
    max_top_k: usize,
) -> Result<Requested, ApiError> {
    if !OUTPUTS.contains(&name) {
        return Err(ApiError::Validation(format!("unknown output {name:?}; outputs are {OUTPUTS:?}")));
    }
    let classification = match classification {
        None => (name == "top_k").then_some(top_k),
        Some((Some(k), _)) if (1..=max_top_k as u64).contains(&k) => Some(k as usize),
        Some((_, given)) => {
            return Err(ApiError::Validation(format!("\"classification\" must be 1 to {max_top_k}, got {given}")))
        }
    };
    Ok(Requested { name: name.to_string(), classification, binary })
}

pub fn output(name: &str, classification: Option<usize>, outcomes: &[Outcome], rows: usize) -> OutputTensor {
    let tensor = |datatype, shape, data| OutputTensor {
        name: name.to_string(),
        datatype,
        shape,
        data: Some(data),
        parameters: None,
    };
    if let Some(k) = classification {
        let data: Vec<String> = outcomes
            .iter()
            .flat_map(|o| {
                o.answer.combined.top(k).iter().map(|c| format!("{:.6}:{}:{}", c.probability, c.index, c.label))
            })
            .collect();
        let k = data.len() / rows.max(1);
        return tensor("BYTES", vec![rows, k], TensorData::Bytes(data));
    }
    let best = outcomes.iter().map(|o| o.answer.combined.best());
    match name {
        "label" => tensor("BYTES", vec![rows], TensorData::Bytes(best.map(|c| c.label.clone()).collect())),
        _ => tensor("FP32", vec![rows], TensorData::Fp32(best.map(|c| f64::from(c.probability)).collect())),
    }
}
