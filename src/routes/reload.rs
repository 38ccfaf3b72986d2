use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::ModelRef;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::runtime::ModelFile;
use crate::service::Predictor;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Reloaded<'a> {
    /// Always `reloaded`.
    status: &'static str,
    model: ModelRef<'a>,
    /// How many classes the new model answers with.
    classes: usize,
    load_ms: f64,
    files: &'a [ModelFile],
}

/// POST /reload_model: reads the model folder and class mapping again; swaps the new model in
/// only if it is valid. Requests already running finish on the model they started with.
/// A management endpoint: see `admin`.
#[utoipa::path(post, path = "/reload_model", tag = "model", security(("admin_token" = [])), responses(
    (status = 200, description = "`{status: \"reloaded\", model, classes, load_ms, files}`", body = Reloaded),
    (status = 401, description = "Token configured and missing or wrong", body = crate::error::ErrorBody),
    (status = 403, description = "No token configured and the caller is not on loopback", body = crate::error::ErrorBody),
    (status = 422, description = "The files on disk are not a valid model; the serving model stays", body = crate::error::ErrorBody),
))]
pub async fn reload_model(admin: Admin, predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    // The caches are keyed by the model's fingerprint: the old model's answers are never served
    // for the new one, and a reload of the same files keeps them.
    let model = predictor.reload(&admin.by).await?;
    Ok(HttpResponse::Ok().json(Reloaded {
        status: "reloaded",
        model: ModelRef::from(&*model),
        classes: model.classes.len(),
        load_ms: model.load_ms,
        files: &model.files,
    }))
}
