use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ModelRef;
use crate::error::ApiError;
use crate::service::Predictor;

/// GET /health: 200 while a warmed-up model and its inference thread can answer, 503 otherwise.
/// The server binds its port only after the model has loaded and warmed up. `history` is ok,
/// degraded (rows are being dropped: the store is down or behind) or off; `shared_cache` is ok,
/// degraded (Redis failing: the local cache answers alone) or off. Neither ever fails the check.
#[utoipa::path(get, path = "/health", tag = "model", responses(
    (status = 200, description = "`{status: \"ok\", model, history, shared_cache: \"ok\" | \"degraded\" | \"off\"}`", body = Object),
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
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "model": ModelRef::from(&*model),
        "history": predictor.history().status(),
        "shared_cache": shared_cache,
    })))
}
