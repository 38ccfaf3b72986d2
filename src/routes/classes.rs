use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ModelRef;
use crate::error::ApiError;
use crate::service::Predictor;

/// The labels the serving model answers with, and their output indices.
#[utoipa::path(get, path = "/classes", tag = "model", responses((status = 200, description = "`{count, classes: [{label, index}], model}`", body = Object)))]
pub async fn classes(predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    let model = predictor.model()?;
    Ok(HttpResponse::Ok().json(json!({
        "count": model.classes.len(),
        "classes": model.classes.entries(),
        "model": ModelRef::from(&*model),
    })))
}
