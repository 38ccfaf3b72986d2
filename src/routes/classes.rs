use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::ModelRef;
use crate::error::ApiError;
use crate::runtime::ClassEntry;
use crate::service::Predictor;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Classes<'a> {
    count: usize,
    /// Sorted by output index.
    classes: &'a [ClassEntry],
    model: ModelRef<'a>,
}

/// The labels the serving model answers with, and their output indices.
#[utoipa::path(get, path = "/classes", tag = "model", responses((status = 200, description = "`{count, classes: [{label, index}], model}`", body = Classes)))]
pub async fn classes(predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    let model = predictor.model()?;
    let classes =
        Classes { count: model.classes.len(), classes: model.classes.entries(), model: ModelRef::from(&*model) };
    Ok(HttpResponse::Ok().json(classes))
}
