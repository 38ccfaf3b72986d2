//! The live metrics: what requests do, counted as it happens (HTTP by the middleware, predictions by
//! the prediction service), in Prometheus series with one prefix (`food_api_`) and base units
//! (seconds), as Prometheus' naming guide asks; `routes/metrics.rs` renders them with a snapshot of
//! what other parts count. The machine's figures that /system_status shows live here too: what the
//! process observes of itself.
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Removes the series of `vec` (labelled `names`, model and version first) that `keep` refuses.
fn retain<T: MetricVecBuilder>(vec: &MetricVec<T>, names: &[&str], keep: impl Fn(&str, &str) -> bool) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let value_of =
                |name: &str| metric.get_label().iter().find(|l| l.name() == name).map_or("", |l| l.value()).to_string();
            let values: Vec<String> = names.iter().map(|n| value_of(n)).collect();
            if !keep(&values[0], &values[1]) {
                let _ = vec.remove_label_values(&values.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
    }
}

pub const PREFIX: &str = "food_api";
const MODEL_LABELS: [&str; 2] = ["model", "version"];
/// From a cache hit (~0.2 ms) to a forward pass under load (~1 s).
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    in_flight: IntGauge,
    queue_wait: HistogramVec,
    preprocess: HistogramVec,
    inference: HistogramVec,
    text: HistogramVec,
    predictions: IntCounterVec,
    pub requests: RequestCounters,
    pub started_at: Instant,
    /// CPU and memory readings; CPU usage is the change since the previous refresh.
    pub system: Mutex<sysinfo::System>,
}

/// What the prediction service counts (requests by status are `http_requests_total`'s).
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Predictions asked of the service: one per image, whichever protocol asked.
    pub predictions: AtomicU64,
    /// Requests dropped because their client hung up while they waited for the model.
    pub client_closed: AtomicU64,
}

/// HTTP requests answered, by class of status: a sum over `http_requests_total`'s series.
#[derive(Debug, Default, serde::Serialize)]
pub struct StatusCounts {
    pub total: u64,
    pub success: u64,
    pub client_error: u64,
    pub server_error: u64,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some(PREFIX.into()), None)?;
        // Every prediction series names the model and version that answered.
        let histogram = |name: &str, help: &str| -> prometheus::Result<HistogramVec> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()), &MODEL_LABELS)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests answered, by route and status"),
                &["route", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "Whole request, upload included, by route")
                    .buckets(BUCKETS.to_vec()),
                &["route"],
            )?,
            in_flight: IntGauge::new("http_requests_in_flight", "Requests being handled now")?,
            queue_wait: histogram(
                "queue_wait_seconds",
                "Wait for an inference thread (model calls only, cache hits excluded)",
            )?,
            preprocess: histogram(
                "preprocess_seconds",
                "Image decode, resize and normalise, blocking-pool wait included",
            )?,
            inference: histogram("inference_seconds", "Image model forward pass")?,
            text: histogram("text_encode_seconds", "Tokenizing and encoding a request's text (text cache misses)")?,
            predictions: IntCounterVec::new(
                Opts::new("predictions_total", "Answers given, by model, version and label"),
                &["model", "version", "label"],
            )?,
            registry,
            requests: RequestCounters::default(),
            started_at: Instant::now(),
            system: Mutex::new(sysinfo::System::new()),
        };
        metrics.registry.register(Box::new(metrics.http_requests.clone()))?;
        metrics.registry.register(Box::new(metrics.http_duration.clone()))?;
        metrics.registry.register(Box::new(metrics.in_flight.clone()))?;
        metrics.registry.register(Box::new(metrics.predictions.clone()))?;
        Ok(metrics)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// `route` is the matched pattern (`/v2/models/{name}/infer`), never the raw path: a scan of
    /// random URLs must not create a series per URL.
    pub fn record_http(&self, route: &str, status: StatusCode, took: Duration) {
        self.http_requests.with_label_values(&[route, status.as_str()]).inc();
        self.http_duration.with_label_values(&[route]).observe(took.as_secs_f64());
    }

    /// Drops the prediction series of versions that are no longer loaded: an unloaded version's
    /// series go away instead of lingering (and growing in number with every version ever served).
    pub fn retain_versions(&self, loaded: &HashSet<(String, String)>) {
        let keep = |model: &str, version: &str| loaded.contains(&(model.to_string(), version.to_string()));
        for histogram in [&self.queue_wait, &self.preprocess, &self.inference, &self.text] {
            retain(histogram, &MODEL_LABELS, keep);
        }
        retain(&self.predictions, &["model", "version", "label"], keep);
    }

    /// HTTP requests answered so far, by class of status.
    pub fn status_counts(&self) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for family in self.http_requests.collect() {
            for metric in family.get_metric() {
                let n = metric.get_counter().get_value() as u64;
                let status = metric.get_label().iter().find(|l| l.name() == "status").map_or("", |l| l.value());
                counts.total += n;
                match status.parse::<u16>() {
                    Ok(200..=399) => counts.success += n,
                    Ok(400..=499) => counts.client_error += n,
                    _ => counts.server_error += n,
                }
            }
        }
        counts
    }

    /// One answer of `model` `version` (single or batch item): its label, and its stages in
    /// milliseconds, queue wait, preprocess, inference and text, in that order; stages that did not
    /// run (a cache hit has no forward pass) are not observed.
    pub fn record_prediction(&self, model: &str, version: &str, label: &str, stages_ms: [Option<f64>; 4]) {
        let labels = [model, version];
        let histograms = [&self.queue_wait, &self.preprocess, &self.inference, &self.text];
        for (histogram, ms) in histograms.into_iter().zip(stages_ms) {
            if let Some(ms) = ms {
                histogram.with_label_values(&labels).observe(ms / 1e3);
            }
        }
        self.predictions.with_label_values(&[model, version, label]).inc();
    }

    /// The live series, for the exposition (`routes/metrics.rs` adds the snapshot of the counts
    /// kept elsewhere).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
