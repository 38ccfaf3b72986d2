//! The protocol's infer request and response, translated to and from this server's uploads and
//! answers: BYTES inputs (base64 images, texts) in, `label` / `probability` / `top_k` outputs out.
use actix_web::web::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::bounded::{Bounded, Element};
use crate::config::Config;
use crate::domain::{decode_base64_image, PredictUpload};
use crate::error::ApiError;
use crate::predictor::Outcome;

/// Most elements of an input: --max-batch-items can be at most this.
const MAX_ELEMENTS: usize = 10_000;
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
}

#[derive(Deserialize, utoipa::ToSchema)]
struct InferInput {
    /// "image" or "text"
    name: String,
    /// "BYTES"
    datatype: String,
    #[schema(value_type = Vec<i64>)]
    shape: Bounded<i64, MAX_DIMENSIONS>,
    /// Base64 of each image; UTF-8 strings for texts
    #[schema(value_type = Vec<String>)]
    data: Bounded<Element, MAX_ELEMENTS>,
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
}

/// Parses an infer body (off the async workers: it may be tens of MB).
pub async fn parse(body: Bytes) -> Result<InferRequest, ApiError> {
    actix_web::web::block(move || serde_json::from_slice::<InferRequest>(&body))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("JSON body thread failed: {e}")))?
        .map_err(|e| ApiError::Validation(format!("malformed JSON body: {e}")))
}

pub const OUTPUTS: [&str; 3] = ["label", "probability", "top_k"];

/// The request's images and texts as uploads; base64 is decoded off the async workers.
pub async fn uploads(request: InferRequest, config: &Config) -> Result<Vec<PredictUpload>, ApiError> {
    let mut images = None;
    let mut texts = None;
    for input in request.inputs.0 {
        if input.datatype != "BYTES" {
            return Err(ApiError::Validation(format!("input {:?} must be BYTES, got {}", input.name, input.datatype)));
        }
        let count = input.shape.0.iter().try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) });
        if count != Some(input.data.0.len() as i64) {
            return Err(ApiError::Validation(format!(
                "input {:?}: shape {:?} does not hold {} elements",
                input.name,
                input.shape.0,
                input.data.0.len()
            )));
        }
        let strings = input
            .data
            .0
            .into_iter()
            .map(|e| {
                e.0.ok_or_else(|| ApiError::Validation(format!("input {:?}: BYTES elements are strings", input.name)))
            })
            .collect::<Result<Vec<String>, ApiError>>()?;
        match input.name.as_str() {
            "image" => images = Some(strings),
            "text" => texts = Some(strings),
            other => {
                return Err(ApiError::Validation(format!("unknown input {other:?}; inputs are \"image\" and \"text\"")))
            }
        }
    }
    let images = images
        .ok_or_else(|| ApiError::Validation("missing the \"image\" input (BYTES, base64 of each image)".into()))?;
    let max_items = config.max_batch_items as usize;
    if images.is_empty() || images.len() > max_items {
        return Err(ApiError::Validation(format!(
            "\"image\" holds {} images; 1 to {max_items} are accepted",
            images.len()
        )));
    }
    let texts: Vec<Option<String>> = match texts {
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
    let (max_bytes, max_chars) = (config.max_upload_bytes, config.max_text_chars);
    actix_web::web::block(move || {
        images
            .into_iter()
            .zip(texts)
            .map(|(image, text)| {
                let bytes = decode_base64_image(&image, max_bytes)?;
                PredictUpload::parse(bytes, text.map(Bytes::from), max_chars)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("base64 thread failed: {e}")))?
    .map_err(ApiError::from)
}

/// (name, top N) of each output to send; every output when the request names none.
pub fn requested_outputs(
    request: &InferRequest,
    top_k: usize,
    max_top_k: usize,
) -> Result<Vec<(String, Option<usize>)>, ApiError> {
    let Some(Bounded(outputs)) = &request.outputs else {
        return Ok(OUTPUTS.iter().map(|name| (name.to_string(), (*name == "top_k").then_some(top_k))).collect());
    };
    outputs
        .iter()
        .map(|o| {
            if !OUTPUTS.contains(&o.name.as_str()) {
                return Err(ApiError::Validation(format!("unknown output {:?}; outputs are {OUTPUTS:?}", o.name)));
            }
            let k = match &o.parameters.classification {
                None => (o.name == "top_k").then_some(top_k),
                Some(v) => match v.as_u64() {
                    Some(k) if (1..=max_top_k as u64).contains(&k) => Some(k as usize),
                    _ => {
                        return Err(ApiError::Validation(format!(
                            "\"classification\" must be 1 to {max_top_k}, got {v}"
                        )))
                    }
                },
            };
            Ok((o.name.clone(), k))
        })
        .collect()
}

pub fn output(name: &str, classification: Option<usize>, outcomes: &[Outcome], rows: usize) -> Value {
    if let Some(k) = classification {
        let data: Vec<String> = outcomes
            .iter()
            .flat_map(|o| {
                o.answer.combined.top(k).iter().map(|c| format!("{:.6}:{}:{}", c.probability, c.index, c.label))
            })
            .collect();
        let k = data.len() / rows.max(1);
        return json!({ "name": name, "datatype": "BYTES", "shape": [rows, k], "data": data });
    }
    let best = outcomes.iter().map(|o| o.answer.combined.best());
    match name {
        "label" => {
            json!({ "name": name, "datatype": "BYTES", "shape": [rows], "data": best.map(|c| c.label.clone()).collect::<Vec<_>>() })
        }
        _ => {
            json!({ "name": name, "datatype": "FP32", "shape": [rows], "data": best.map(|c| c.probability).collect::<Vec<_>>() })
        }
    }
}
