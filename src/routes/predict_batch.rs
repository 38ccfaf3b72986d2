//! POST /predict/batch: several images in one request, answered in their order, each with its own
//! answer or error. Items go through the same pipeline as single requests: the same caches, the
//! same queue, the same deadline per item.
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::predict::{PredictQuery, PredictResponse};
use super::target::Target;
use super::target::VersionPath;
use crate::config::PredictLimits;
use crate::domain::TopK;
use crate::error::{ApiError, Statuses};
use crate::peer;
use crate::service::{Items, Predictor};

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Item<'a> {
    Answer(PredictResponse<'a>),
    Error { error: String, error_type: &'static str, status: u16 },
}

#[derive(Serialize, utoipa::ToSchema)]
struct BatchResponse<'a> {
    items: Vec<Item<'a>>,
    /// Items that carry an error instead of an answer.
    errors: usize,
    timings_ms: BatchTimings,
}

#[derive(Serialize, utoipa::ToSchema)]
struct BatchTimings {
    /// The whole request, upload included.
    total: f64,
}

/// Classify several photos in one request; each item is an answer or its own error.
#[utoipa::path(
    post, path = "/predict/batch", tag = "predict", params(PredictQuery, super::predict::RoutingHeaders),
    request_body(content = crate::routes::schemas::BatchForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "One item per image, in order", body = BatchResponse),
        crate::routes::schemas::UploadErrors,
    )
)]
#[tracing::instrument(name = "predict_batch", skip_all, fields(request_id = %target.call.request_id, version = %target.model.id.version))]
pub async fn predict_batch(
    query: web::Query<PredictQuery>,
    target: Target,
    req: HttpRequest,
    payload: web::Payload,
    predictor: web::Data<Predictor>,
    limits: web::Data<PredictLimits>,
    statuses: web::Data<Statuses>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let top_k = TopK::parse(query.top_k, limits.top_k, limits.max_top_k)?;
    // The body's memory, held until the answer is built.
    let mut memory = predictor.admission().reservation();
    let (upload_limits, max_items) = (limits.batch_upload, limits.max_batch_items);
    let batch = super::extract::batch_upload(req.headers(), payload, upload_limits, max_items, &mut memory).await?;
    let items = batch.items.into_iter().map(|item| item.map_err(ApiError::from)).collect();
    let (service, model, call) = (predictor.clone().into_inner(), &target.model, &target.call);
    let results = service.predict_many(model, items, call, Items::EachOwn, peer::closed(&req)).await?;

    let items: Vec<Item> = results
        .iter()
        .map(|result| match result {
            Ok((upload, outcome)) => {
                Item::Answer(PredictResponse::new(outcome, upload, top_k, predictor.text_weight()))
            }
            Err(e) => {
                if let ApiError::Internal(cause) = e {
                    tracing::error!(error = ?cause, "batch item failed");
                }
                Item::Error { error: e.to_string(), error_type: e.error_type(), status: statuses.of(e).as_u16() }
            }
        })
        .collect();
    let errors = items.iter().filter(|i| matches!(i, Item::Error { .. })).count();
    let timings_ms = BatchTimings { total: started.elapsed().as_secs_f64() * 1e3 };
    Ok(target.answered().json(BatchResponse { items, errors, timings_ms }))
}

/// Several photos on a given version or alias of a model: the same body and answer as
/// `POST /predict/batch`.
#[utoipa::path(
    post, path = "/models/{name}/versions/{version}/predict/batch", tag = "predict", params(VersionPath, PredictQuery),
    request_body(content = crate::routes::schemas::BatchForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "One item per image, in order", body = BatchResponse),
        (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
        (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
        crate::routes::schemas::UploadErrors,
    )
)]
// Documents the route only: `predict_batch` serves it (`Target` reads the version from the path).
#[allow(dead_code)]
fn predict_batch_version() {}
