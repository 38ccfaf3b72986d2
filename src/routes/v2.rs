//! The Open Inference Protocol (KServe v2) over REST, what Triton, KServe and MLServer speak:
//! health, model metadata, and `infer` with the image as a BYTES input (base64, one element per
//! image) and an optional `text` BYTES input. Outputs: `label` (BYTES), `probability` (FP32) and
//! `top_k` (BYTES "score:index:label", the classification extension's form); asking any output
//! with `"parameters": {"classification": N}` gives its top N in that form.
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::predict::{predict_within_deadline, unless_client_closed};
use crate::domain::{decode_base64_image, PredictUpload};
use crate::error::ApiError;
use crate::model::LoadedModel;
use crate::predictor::Outcome;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct InferRequest {
    id: Option<String>,
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

const OUTPUTS: [&str; 3] = ["label", "probability", "top_k"];

#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, description = "`{live: true}`", body = Object)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "live": true }))
}

#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses((status = 200, description = "`{ready: true}`", body = Object), (status = 503, description = "`{ready: false}`", body = Object)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.worker.is_alive();
    let body = json!({ "ready": ready });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// The server's metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, description = "`{name, version, extensions}`", body = Object)))]
pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "food-api",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["classification"],
    }))
}

/// The serving model, if it is the one named in the path.
fn model_named(state: &AppState, name: &str) -> Result<std::sync::Arc<LoadedModel>, ApiError> {
    let model = state.registry.current();
    if model.manifest.name != name {
        return Err(ApiError::NotFound(format!("no model named {name:?}; this server serves {:?}", model.manifest.name)));
    }
    Ok(model)
}

/// The model's metadata: platform, versions, inputs and outputs.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2", params(("name" = String, Path, description = "efficientnet-lite0")), responses(
    (status = 200, description = "Model metadata", body = Object),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
        (status = 404, description = "No model of that name", body = crate::error::ErrorBody),
))]
pub async fn model_metadata(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let model = model_named(&state, &path)?;
    let platform = match model.backend() {
        "onnx" => "onnxruntime_onnx",
        _ => "pytorch_torchscript",
    };
    Ok(HttpResponse::Ok().json(json!({
        "name": model.manifest.name,
        "versions": [model.manifest.version],
        "platform": platform,
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probability", "datatype": "FP32", "shape": [-1]},
            {"name": "top_k", "datatype": "BYTES", "shape": [-1, state.config.top_k]},
        ],
    })))
}

#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2", params(("name" = String, Path)), responses(
    (status = 200, description = "`{name, ready}`", body = Object),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
        (status = 404, description = "No model of that name", body = crate::error::ErrorBody),
))]
pub async fn model_ready(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let model = model_named(&state, &path)?;
    Ok(HttpResponse::Ok().json(json!({ "name": model.manifest.name, "ready": state.worker.is_alive() })))
}

/// Inference: `image` BYTES input (base64 per image), optional `text` BYTES input.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2", params(("name" = String, Path)), request_body = InferRequest, responses(
    (status = 200, description = "`label`, `probability` and `top_k` outputs", body = Object),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
        (status = 404, description = "No model of that name", body = crate::error::ErrorBody),
    (status = 413, description = "Body or an image too large", body = crate::error::ErrorBody),
    (status = 415, description = "Not JSON, or an element is not an image", body = crate::error::ErrorBody),
))]
pub async fn infer(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<InferRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let model = model_named(&state, &path)?;
    let request = body.into_inner();
    let uploads = uploads(&request, &state)?;
    let outputs = requested_outputs(&request, state.config.top_k, state.config.max_top_k)?;
    state.requests.predictions.fetch_add(uploads.len() as u64, std::sync::atomic::Ordering::Relaxed);

    let in_flight = 2 * state.config.inference_threads();
    let state_ref = &state;
    let answers = stream::iter(&uploads).map(|upload| predict_within_deadline(state_ref, upload)).buffered(in_flight).try_collect::<Vec<Outcome>>();
    let outcomes = unless_client_closed(&req, &state, answers).await??;

    let rows = outcomes.len();
    let outputs: Vec<Value> = outputs.iter().map(|(name, k)| output(name, *k, &outcomes, rows)).collect();
    let mut body = json!({ "model_name": model.manifest.name, "model_version": model.manifest.version, "outputs": outputs });
    if let Some(id) = request.id {
        body["id"] = id.into();
    }
    Ok(HttpResponse::Ok().json(body))
}

/// One upload per element of `image`, each with its element of `text` (one text for all, or one
/// per image).
fn uploads(request: &InferRequest, state: &AppState) -> Result<Vec<PredictUpload>, ApiError> {
    let mut images = None;
    let mut texts = None;
    for input in &request.inputs {
        if input.datatype != "BYTES" {
            return Err(ApiError::Validation(format!("input {:?} must be BYTES, got {}", input.name, input.datatype)));
        }
        let count: i64 = input.shape.iter().product();
        if input.shape.iter().any(|&d| d < 0) || count != input.data.len() as i64 {
            return Err(ApiError::Validation(format!("input {:?}: shape {:?} does not hold {} elements", input.name, input.shape, input.data.len())));
        }
        let strings = input
            .data
            .iter()
            .map(|v| v.as_str().ok_or_else(|| ApiError::Validation(format!("input {:?}: BYTES elements are strings", input.name))))
            .collect::<Result<Vec<&str>, ApiError>>()?;
        match input.name.as_str() {
            "image" => images = Some(strings),
            "text" => texts = Some(strings),
            other => return Err(ApiError::Validation(format!("unknown input {other:?}; inputs are \"image\" and \"text\""))),
        }
    }
    let images = images.ok_or_else(|| ApiError::Validation("missing the \"image\" input (BYTES, base64 of each image)".into()))?;
    let max_items = state.config.max_batch_items as usize;
    if images.is_empty() || images.len() > max_items {
        return Err(ApiError::Validation(format!("\"image\" holds {} images; 1 to {max_items} are accepted", images.len())));
    }
    let texts = match texts {
        Some(t) if t.len() == images.len() => t.into_iter().map(Some).collect(),
        Some(t) if t.len() == 1 => vec![Some(t[0]); images.len()],
        Some(t) => return Err(ApiError::Validation(format!("\"text\" holds {} elements for {} images: send one, or one per image", t.len(), images.len()))),
        None => vec![None; images.len()],
    };
    images
        .into_iter()
        .zip(texts)
        .map(|(image, text)| {
            let bytes = decode_base64_image(image)?;
            if bytes.len() > state.config.max_upload_bytes {
                return Err(ApiError::PayloadTooLarge { limit: state.config.max_upload_bytes });
            }
            PredictUpload::parse(bytes.into(), text.map(|t| t.to_string().into()), state.config.max_text_chars)
        })
        .collect()
}

/// (name, top N) of each output to send; every output when the request names none.
fn requested_outputs(request: &InferRequest, top_k: usize, max_top_k: usize) -> Result<Vec<(String, Option<usize>)>, ApiError> {
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
                    _ => return Err(ApiError::Validation(format!("\"classification\" must be 1 to {max_top_k}, got {v}"))),
                },
            };
            Ok((o.name.clone(), k))
        })
        .collect()
}

fn output(name: &str, classification: Option<usize>, outcomes: &[Outcome], rows: usize) -> Value {
    if let Some(k) = classification {
        let data: Vec<String> = outcomes
            .iter()
            .flat_map(|o| o.answer.combined.top(k).iter().map(|c| format!("{:.6}:{}:{}", c.probability, c.index, c.label)))
            .collect();
        let k = data.len() / rows.max(1);
        return json!({ "name": name, "datatype": "BYTES", "shape": [rows, k], "data": data });
    }
    let best = outcomes.iter().map(|o| o.answer.combined.best());
    match name {
        "label" => json!({ "name": name, "datatype": "BYTES", "shape": [rows], "data": best.map(|c| c.label.clone()).collect::<Vec<_>>() }),
        _ => json!({ "name": name, "datatype": "FP32", "shape": [rows], "data": best.map(|c| c.probability).collect::<Vec<_>>() }),
    }
}
