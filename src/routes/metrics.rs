use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::predictor::Predictor;

/// Prometheus' text exposition format (src/metrics.rs lists the series).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(metrics: web::Data<Metrics>, predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    let text = crate::metrics::render(&metrics, &predictor)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics failed: {e}")))?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}
