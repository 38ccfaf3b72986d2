use actix_web::{web, HttpResponse};
use serde_json::json;

use super::ModelRef;
use crate::state::AppState;

/// GET /classes: the labels the serving model answers with, and their output indices.
pub async fn classes(state: web::Data<AppState>) -> HttpResponse {
    let model = state.registry.current();
    HttpResponse::Ok().json(json!({
        "count": model.classes.len(),
        "classes": model.classes.entries(),
        "model": ModelRef::from(&*model),
    }))
}
