use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::state::AppState;

/// Prometheus' text exposition format (src/metrics.rs lists the series).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = crate::metrics::render(&state)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics failed: {e}")))?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}
