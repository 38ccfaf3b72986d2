use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ModelRef;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::service::Predictor;

/// POST /reload_model: reads the model folder and class mapping again; swaps the new model in
/// only if it is valid. Requests already running finish on the model they started with.
/// A management endpoint: see `admin`.
#[utoipa::path(post, path = "/reload_model", tag = "model", security(("admin_token" = [])), responses(
    (status = 200, description = "`{status: \"reloaded\", model, classes, load_ms, files}`", body = Object),
    (status = 401, description = "Token configured and missing or wrong", body = crate::error::ErrorBody),
    (status = 403, description = "No token configured and the caller is not on loopback", body = crate::error::ErrorBody),
    (status = 422, description = "The files on disk are not a valid model; the serving model stays", body = crate::error::ErrorBody),
))]
pub async fn reload_model(admin: Admin, predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    // The caches are keyed by the model's fingerprint: the old model's answers are never served
    // for the new one, and a reload of the same files keeps them.
    let model = predictor.reload(&admin.by).await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "reloaded",
        "model": ModelRef::from(&*model),
        "classes": model.classes.len(),
        "load_ms": model.load_ms,
        "files": model.files,
    })))
}
