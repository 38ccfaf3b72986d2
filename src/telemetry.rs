//! Logs through `tracing`: RUST_LOG picks the levels (info by default), `--log-format` human or
//! JSON lines; and the middleware that gives every request an id, a log line and its metrics.
use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use clap::ValueEnum;
use tracing_actix_web::RequestId;
use tracing_subscriber::EnvFilter;

use crate::metrics::Metrics;
use crate::service::Timings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init_subscriber(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second call (several apps in one test binary) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

/// What a prediction route leaves in its response's extensions for the request's log line.
#[derive(Debug, Clone)]
pub struct PredictionLog {
    pub cache_hit: bool,
    pub label: String,
    pub timings: Timings,
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One log line per request (id, route, status, cache hit, timings), the id echoed in
/// `X-Request-Id`, and the request's metrics. The id comes from `TracingLogger`, which wraps this.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // The pattern (`/v2/models/{name}/infer`), not the path: a scan of random URLs makes one series.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
    let started = Instant::now();
    let _in_flight = metrics.as_ref().map(|m| m.in_flight());
    let mut response = next.call(req).await?;
    let took = started.elapsed();
    let status = response.status();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if let Some(metrics) = &metrics {
        metrics.record_http(&route, status, took);
    }
    let extensions = response.response().extensions();
    let prediction = extensions.get::<PredictionLog>();
    let timings = prediction.map(|p| &p.timings);
    tracing::info!(
        request_id,
        method,
        route,
        status = status.as_u16(),
        duration_ms = took.as_secs_f64() * 1e3,
        cache_hit = prediction.map(|p| p.cache_hit),
        label = prediction.map(|p| p.label.as_str()),
        preprocess_ms = timings.and_then(|t| t.preprocess),
        queue_ms = timings.and_then(|t| t.queue),
        inference_ms = timings.and_then(|t| t.inference),
        text_ms = timings.and_then(|t| t.text),
        "request"
    );
    drop(extensions);
    Ok(response)
}
