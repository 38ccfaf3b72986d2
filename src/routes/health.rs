use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ModelRef;
use crate::error::ApiError;
use crate::predictor::Predictor;

/// GET /health: 200 while a warmed-up model and its inference thread can answer, 503 otherwise.
/// The server binds its port only after the model has loaded and warmed up.
#[utoipa::path(get, path = "/health", tag = "model", responses(
    (status = 200, description = "`{status: \"ok\", model}`", body = Object),
    (status = 503, description = "No model can answer", body = crate::error::ErrorBody),
))]
pub async fn health(predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    if !predictor.worker().is_alive() {
        return Err(ApiError::ModelUnavailable);
    }
    let model = predictor.model()?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ok", "model": ModelRef::from(&*model) })))
}
