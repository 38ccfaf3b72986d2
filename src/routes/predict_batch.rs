//! POST /predict/batch: several images in one request, answered in their order, each with its own
//! answer or error. Items go through the same pipeline as single requests: the same caches, the
//! same queue, the same deadline per item.
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::{stream, StreamExt};
use serde::Serialize;

use super::predict::{
    call_of, items_in_flight, model_version, predict_one, route_header, routed, unless_client_closed, PredictQuery,
    PredictResponse, VersionPath,
};
use crate::config::Config;
use crate::domain::{PredictUpload, TopK};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::{LoadedModel, Route};
use crate::predictor::{Call, Outcome, Predictor};

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
    request_body(content = crate::routes::openapi::BatchForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "One item per image, in order", body = BatchResponse),
        crate::routes::openapi::UploadErrors,
    )
)]
pub async fn predict_batch(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let routed = routed(&predictor, None, &req)?;
    batch_on(routed, req, payload, query, predictor, config, metrics).await
}

/// Several photos on a given version or alias of a model: the same body and answer as
/// `POST /predict/batch`.
#[utoipa::path(
    post, path = "/models/{name}/versions/{version}/predict/batch", tag = "predict", params(VersionPath, PredictQuery),
    request_body(content = crate::routes::openapi::BatchForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "One item per image, in order", body = BatchResponse),
        (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
        (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
        crate::routes::openapi::UploadErrors,
    )
)]
pub async fn predict_batch_version(
    path: web::Path<VersionPath>,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let model = predictor.resolve(Some(&path.name), Some(&path.version))?;
    let call = call_of(&req, Route::Pinned, None);
    batch_on((model, call), req, payload, query, predictor, config, metrics).await
}

/// One model for every item, pinned before the body is read: a batch never mixes versions.
async fn batch_on(
    (model, call): (Arc<LoadedModel>, Call),
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let top_k = TopK::parse(query.top_k, config.top_k, config.max_top_k)?;
    let limits = config.batch_upload_limits();
    // The body's memory, held until the answer is built.
    let mut memory = predictor.admission().reservation();
    let max_items = config.max_batch_items as usize;
    let batch = super::extract::batch_upload(req.headers(), payload, limits, max_items, &mut memory).await?;
    metrics.requests.predictions.fetch_add(batch.items.len() as u64, std::sync::atomic::Ordering::Relaxed);

    let (predictor, model_ref, metrics, call) = (&predictor, &model, &metrics, &call);
    let answers = stream::iter(batch.items.into_iter().enumerate())
        .map(|(i, item)| async move {
            let upload = item?;
            let item_started = Instant::now();
            let call = Call { item: Some(i), ..call.clone() };
            let mut outcome = predict_one(predictor, model_ref, metrics, &upload, &call).await?;
            outcome.timings.total = item_started.elapsed().as_secs_f64() * 1e3;
            Ok((upload, outcome))
        })
        .buffered(items_in_flight(&config))
        .collect::<Vec<Result<(PredictUpload, Outcome), ApiError>>>();
    let results = unless_client_closed(&req, metrics, answers).await?;

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
                Item::Error { error: e.to_string(), error_type: e.error_type(), status: e.status_code().as_u16() }
            }
        })
        .collect();
    let errors = items.iter().filter(|i| matches!(i, Item::Error { .. })).count();
    let timings_ms = BatchTimings { total: started.elapsed().as_secs_f64() * 1e3 };
    Ok(HttpResponse::Ok()
        .insert_header(model_version(&model))
        .insert_header(route_header(call.route))
        .json(BatchResponse { items, errors, timings_ms }))
}
