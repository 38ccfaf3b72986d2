use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::ModelRef;
use crate::error::ApiError;
use crate::history::Status;
use crate::service::Predictor;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Health<'a> {
    /// Always `ok` (a model that cannot answer is a 503).
    status: &'static str,
    model: ModelRef<'a>,
    history: Status,
    /// `ok`, `degraded` (Redis failing: the local cache answers alone) or `off`.
    shared_cache: &'static str,
}

/// GET /health: 200 while a warmed-up model and its inference thread can answer, 503 otherwise.
/// The server binds its port only after the model has loaded and warmed up. `history` is ok,
/// degraded (rows are being dropped: the store is down or behind) or off; `shared_cache` is ok,
/// degraded (Redis failing: the local cache answers alone) or off. Neither ever fails the check.
#[utoipa::path(get, path = "/health", tag = "model", responses(
    (status = 200, description = "`{status: \"ok\", model, history, shared_cache: \"ok\" | \"degraded\" | \"off\"}`", body = Health),
    (status = 503, description = "No model can answer", body = crate::error::ErrorBody),
))]
pub async fn health(predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    if !predictor.worker().is_alive() {
        return Err(ApiError::ModelUnavailable);
    }
    let model = predictor.model()?;
    let shared_cache = match predictor.shared_cache() {
        None => "off",
        Some(cache) if cache.up() => "ok",
        Some(_) => "degraded",
    };
    let history = predictor.history().status();
    Ok(HttpResponse::Ok().json(Health { status: "ok", model: ModelRef::from(&*model), history, shared_cache }))
}
