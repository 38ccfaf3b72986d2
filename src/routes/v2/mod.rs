//! The Open Inference Protocol (KServe v2) over REST, what Triton, KServe and MLServer speak:
//! health, model metadata, and `infer` with the image as a BYTES input (base64, one element per
//! image) and an optional `text` BYTES input. Outputs: `label` (BYTES), `probability` (FP32) and
//! `top_k` (BYTES "score:index:label", the classification extension's form); asking any output
//! with `"parameters": {"classification": N}` gives its top N in that form.
pub mod binary;
mod bounded;
pub mod protocol;
pub mod repository;
pub mod tensor;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::extract::{read_body, read_json_body};
use super::target::Target;
use crate::config::PredictLimits;
use crate::domain::base64_body_limit;
use crate::error::ApiError;
use crate::peer;
use crate::runtime::LoadedModel;
use crate::service::{Items, Predictor};
use crate::versions::ModelTable;
pub use protocol::InferRequest;
use protocol::{output, requested_outputs, uploads};
use tensor::{InferResponse, OutputTensor};

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Live {
    /// Always true: the process answers.
    live: bool,
}

#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, description = "`{live: true}`", body = Live)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Live { live: true })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Ready {
    /// The inference threads are alive.
    ready: bool,
}

#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses((status = 200, description = "`{ready: true}`", body = Ready), (status = 503, description = "`{ready: false}`", body = Ready)))]
pub async fn ready(predictor: web::Data<Predictor>) -> HttpResponse {
    let ready = predictor.worker().is_alive();
    let body = Ready { ready };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    /// The protocol's extensions this server speaks.
    extensions: [&'static str; 3],
}

/// The server's metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, description = "`{name, version, extensions}`", body = ServerMetadata)))]
pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(ServerMetadata {
        name: "food-api",
        version: env!("CARGO_PKG_VERSION"),
        extensions: ["classification", "model_repository", "statistics"],
    })
}

/// `/v2/models/{name}` or `/v2/models/{name}/versions/{version}` (a version or an alias).
#[derive(serde::Deserialize)]
pub struct ModelPath {
    name: String,
    version: Option<String>,
}

/// The model the path names: its `stable` version, or the version it names.
pub fn model_named(
    versions: &ModelTable,
    name: &str,
    version: Option<&str>,
) -> Result<std::sync::Arc<LoadedModel>, ApiError> {
    Ok(versions.resolve(Some(name), version)?)
}

/// The model's metadata: platform, versions, inputs and outputs.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2", params(("name" = String, Path, description = "efficientnet-lite0")), responses(
    (status = 200, description = "Model metadata", body = ModelMetadata),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
    (status = 404, description = "No model of that name", body = crate::error::ErrorBody),
))]
pub async fn model_metadata(
    path: web::Path<ModelPath>,
    versions: web::Data<ModelTable>,
    limits: web::Data<PredictLimits>,
) -> Result<HttpResponse, ApiError> {
    let model = model_named(&versions, &path.name, path.version.as_deref())?;
    // How the elements are encoded: the protocol has no field for it, tensor parameters do.
    let input = |name, content| TensorMetadata {
        name,
        datatype: "BYTES",
        shape: vec![-1],
        parameters: Some(Content { content }),
    };
    let output = |name, datatype, shape| TensorMetadata { name, datatype, shape, parameters: None };
    Ok(HttpResponse::Ok().json(ModelMetadata {
        name: model.id.name.clone(),
        versions: ready_versions(&versions, &path.name),
        platform: platform(&model),
        inputs: [
            input("image", "an encoded image (JPEG, PNG, WebP, BMP, GIF or TIFF): its raw bytes with the binary data extension, base64 in JSON"),
            input("text", "optional UTF-8 text guiding the answer: one element, or one per image"),
        ],
        outputs: [
            output("label", "BYTES", vec![-1]),
            output("probability", "FP32", vec![-1]),
            output("top_k", "BYTES", vec![-1, limits.top_k as i64]),
        ],
    }))
}

/// A model's metadata (the protocol's): the loaded versions, the platform, the tensors.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    name: String,
    versions: Vec<String>,
    /// Triton's name for the runtime: pytorch_torchscript or onnxruntime_onnx
    platform: &'static str,
    inputs: [TensorMetadata; 2],
    outputs: [TensorMetadata; 3],
}

#[derive(Serialize, utoipa::ToSchema)]
struct TensorMetadata {
    name: &'static str,
    datatype: &'static str,
    /// -1: any size.
    shape: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Content>,
}

/// What an input's elements hold.
#[derive(Serialize, utoipa::ToSchema)]
struct Content {
    content: &'static str,
}

/// The model's versions that are loaded, for its metadata.
pub fn ready_versions(versions: &ModelTable, name: &str) -> Vec<String> {
    let snapshot = versions.snapshot();
    snapshot.models.get(name).map_or(Vec::new(), |m| {
        m.versions.iter().filter(|(_, v)| v.model.is_some()).map(|(version, _)| version.clone()).collect()
    })
}

/// The protocol's platform names (Triton's) for the version's backend.
pub fn platform(model: &LoadedModel) -> &'static str {
    match model.backend() {
        "onnx" => "onnxruntime_onnx",
        _ => "pytorch_torchscript",
    }
}

#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2", params(("name" = String, Path)), responses(
    (status = 200, description = "`{name, ready}`", body = ModelReady),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
    (status = 404, description = "No model of that name", body = crate::error::ErrorBody),
))]
pub async fn model_ready(
    path: web::Path<ModelPath>,
    versions: web::Data<ModelTable>,
    predictor: web::Data<Predictor>,
) -> Result<HttpResponse, ApiError> {
    let model = model_named(&versions, &path.name, path.version.as_deref())?;
    Ok(HttpResponse::Ok().json(ModelReady { name: &model.id.name, ready: predictor.worker().is_alive() }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ModelReady<'a> {
    name: &'a str,
    /// The inference threads are alive (the version was found loaded).
    ready: bool,
}

/// Inference: `image` BYTES input (base64 per image), optional `text` BYTES input.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2", params(("name" = String, Path)), request_body = InferRequest, responses(
    (status = 200, description = "`label`, `probability` and `top_k` outputs (JSON; with the binary data extension, the JSON and then the raw bytes)", body = InferResponse),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
    (status = 404, description = "No model of that name", body = crate::error::ErrorBody),
    (status = 408, description = "The body did not arrive within --request-timeout-seconds", body = crate::error::ErrorBody),
    (status = 413, description = "Body or an image too large", body = crate::error::ErrorBody),
    (status = 415, description = "Not JSON, an element is not an image, or a Content-Encoding", body = crate::error::ErrorBody),
    (status = 503, description = "Queue full, requests in progress at their bound, or memory budget in use (Retry-After: 1)", body = crate::error::ErrorBody),
))]
#[tracing::instrument(name = "v2_infer", skip_all, fields(request_id = %target.call.request_id, version = %target.model.id.version))]
pub async fn infer(
    req: HttpRequest,
    target: Target,
    payload: web::Payload,
    predictor: web::Data<Predictor>,
    limits: web::Data<PredictLimits>,
) -> Result<HttpResponse, ApiError> {
    // A version in the path pins it (`Target`); otherwise the model's routing policy picks one.
    // The body as /predict's: the same read timeout, its memory held from the budget as it arrives.
    let mut memory = predictor.admission().reservation();
    let limit = base64_body_limit(limits.max_batch_upload_bytes);
    let header_length = binary::header_length(req.headers())?;
    let body = match header_length {
        // The binary data extension: JSON, then raw bytes (tritonclient sends no Content-Type).
        Some(_) => read_body(req.headers(), payload, limit, limits.upload, &mut memory).await?,
        None => read_json_body(req.headers(), payload, limit, limits.upload, &mut memory).await?,
    };
    let (json, raw) = binary::split(body, header_length)?;
    let mut request = protocol::parse(json).await?;
    let outputs = requested_outputs(&request, limits.top_k, limits.max_top_k)?;
    let id = request.id.take();
    let uploads = uploads(request, raw, &limits).await?;

    // The model the path named, for every image of the request; the first failure fails it.
    let (service, model) = (predictor.clone().into_inner(), &target.model);
    let items = uploads.into_iter().map(Ok::<_, ApiError>).collect();
    let answers = service.predict_many(model, items, &target.call, Items::AllOrNothing, peer::closed(&req)).await?;
    let outcomes =
        answers.into_iter().map(|answer| answer.map(|(_, outcome)| outcome)).collect::<Result<Vec<_>, _>>()?;

    let rows = outcomes.len();
    let mut raw = Vec::new();
    let outputs: Vec<OutputTensor> = outputs
        .iter()
        .map(|o| {
            let mut tensor = output(&o.name, o.classification, &outcomes, rows);
            if o.binary {
                binary::to_binary(&mut tensor, &mut raw);
            }
            tensor
        })
        .collect();
    let in_binary = outputs.iter().any(|t| t.parameters.is_some());
    let body =
        InferResponse { model_name: model.id.name.clone(), model_version: model.id.version.clone(), id, outputs };
    let mut response = target.answered();
    if in_binary {
        let (bytes, header_length) = binary::response_body(&body, raw);
        return Ok(response
            .insert_header((binary::HEADER, header_length))
            .content_type("application/octet-stream")
            .body(bytes));
    }
    Ok(response.json(body))
}

/// A version's (or an alias's) metadata: as `GET /v2/models/{name}`, on that version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2", params(("name" = String, Path), ("version" = String, Path, description = "A version or an alias")), responses(
    (status = 200, description = "Model metadata", body = ModelMetadata),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
))]
pub async fn version_metadata(
    path: web::Path<ModelPath>,
    versions: web::Data<ModelTable>,
    limits: web::Data<PredictLimits>,
) -> Result<HttpResponse, ApiError> {
    model_metadata(path, versions, limits).await
}

#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2", params(("name" = String, Path), ("version" = String, Path)), responses(
    (status = 200, description = "`{name, ready}`", body = ModelReady),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
))]
pub async fn version_ready(
    path: web::Path<ModelPath>,
    versions: web::Data<ModelTable>,
    predictor: web::Data<Predictor>,
) -> Result<HttpResponse, ApiError> {
    model_ready(path, versions, predictor).await
}

/// Inference on a version (or an alias): as `POST /v2/models/{name}/infer`.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2", params(("name" = String, Path), ("version" = String, Path)), request_body = InferRequest, responses(
    (status = 200, description = "`label`, `probability` and `top_k` outputs (JSON; with the binary data extension, the JSON and then the raw bytes)", body = InferResponse),
    (status = 400, description = "Malformed request", body = crate::error::ErrorBody),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
    (status = 413, description = "Body or an image too large", body = crate::error::ErrorBody),
    (status = 415, description = "Not JSON, an element is not an image, or a Content-Encoding", body = crate::error::ErrorBody),
    (status = 503, description = "Overloaded (Retry-After: 1)", body = crate::error::ErrorBody),
))]
// Documents the route only: `infer` serves it (`Target` reads the version from the path).
#[allow(dead_code)]
fn version_infer() {}
