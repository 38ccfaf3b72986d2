//! The protocol's infer request and response, translated to and from this server's uploads and
//! answers: BYTES inputs (base64 images, texts) in, `label` / `probability` / `top_k` outputs out.
use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::{decode_base64_image, PredictUpload};
use crate::error::ApiError;
use crate::predictor::Outcome;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    pub id: Option<String>,
    inputs: Vec<InferInput>,
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct InferInput {
    /// "image" or "text"
    name: String,
    /// "BYTES"
    datatype: String,
    shape: Vec<i64>,
    /// Base64 of each image; UTF-8 strings for texts
    #[schema(value_type = Vec<String>)]
    data: Vec<Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RequestedOutput {
    /// "label", "probability" or "top_k"
    name: String,
    /// `{"classification": N}`: the top N as "score:index:label"
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: serde_json::Map<String, Value>,
}

pub const OUTPUTS: [&str; 3] = ["label", "probability", "top_k"];

pub fn uploads(request: &InferRequest, state: &AppState) -> Result<Vec<PredictUpload>, ApiError> {
    let mut images = None;
    let mut texts = None;
    for input in &request.inputs {
        if input.datatype != "BYTES" {
            return Err(ApiError::Validation(format!("input {:?} must be BYTES, got {}", input.name, input.datatype)));
        }
        let count: i64 = input.shape.iter().product();
        if input.shape.iter().any(|&d| d < 0) || count != input.data.len() as i64 {
            return Err(ApiError::Validation(format!(
                "input {:?}: shape {:?} does not hold {} elements",
                input.name,
                input.shape,
                input.data.len()
            )));
        }
        let strings = input
            .data
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ApiError::Validation(format!("input {:?}: BYTES elements are strings", input.name)))
            })
            .collect::<Result<Vec<&str>, ApiError>>()?;
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
    let max_items = state.config.max_batch_items as usize;
    if images.is_empty() || images.len() > max_items {
        return Err(ApiError::Validation(format!(
            "\"image\" holds {} images; 1 to {max_items} are accepted",
            images.len()
        )));
    }
    let texts = match texts {
        Some(t) if t.len() == images.len() => t.into_iter().map(Some).collect(),
        Some(t) if t.len() == 1 => vec![Some(t[0]); images.len()],
        Some(t) => {
            return Err(ApiError::Validation(format!(
                "\"text\" holds {} elements for {} images: send one, or one per image",
                t.len(),
                images.len()
            )))
        }
        None => vec![None; images.len()],
    };
    images
        .into_iter()
        .zip(texts)
        .map(|(image, text)| {
            let bytes = decode_base64_image(image, state.config.max_upload_bytes)?;
            PredictUpload::parse(bytes, text.map(|t| t.to_string().into()), state.config.max_text_chars)
        })
        .collect()
}

/// (name, top N) of each output to send; every output when the request names none.
pub fn requested_outputs(
    request: &InferRequest,
    top_k: usize,
    max_top_k: usize,
) -> Result<Vec<(String, Option<usize>)>, ApiError> {
    let Some(outputs) = &request.outputs else {
        return Ok(OUTPUTS.iter().map(|name| (name.to_string(), (*name == "top_k").then_some(top_k))).collect());
    };
    outputs
        .iter()
        .map(|o| {
            if !OUTPUTS.contains(&o.name.as_str()) {
                return Err(ApiError::Validation(format!("unknown output {:?}; outputs are {OUTPUTS:?}", o.name)));
            }
            let k = match o.parameters.get("classification") {
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
