use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ModelRef;
use crate::state::AppState;

/// The labels the serving model answers with, and their output indices.
#[utoipa::path(get, path = "/classes", tag = "model", responses((status = 200, description = "`{count, classes: [{label, index}], model}`", body = Object)))]
pub async fn classes(state: web::Data<AppState>) -> HttpResponse {
    let model = state.registry.current();
    HttpResponse::Ok().json(json!({
        "count": model.classes.len(),
        "classes": model.classes.entries(),
        "model": ModelRef::from(&*model),
    }))
}
