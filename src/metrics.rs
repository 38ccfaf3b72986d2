//! GET /metrics in Prometheus' text format. One prefix (`food_api_`), base units (seconds), as
//! Prometheus' naming guide asks. What requests do is counted as it happens; what other parts
//! already count (caches, queue, reloads, the model) is read when scraped, so there is one source
//! for /system_status and /metrics alike. The request counters and the machine's figures that
//! /system_status shows live here too: what the process observes of itself.
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::predictor::{Outcome, Predictor};

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

const PREFIX: &str = "food_api";
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

#[derive(Debug, Default, serde::Serialize)]
pub struct RequestCounters {
    pub total: AtomicU64,
    pub success: AtomicU64,
    pub client_error: AtomicU64,
    pub server_error: AtomicU64,
    pub predictions: AtomicU64,
    /// Requests dropped because their client hung up while they waited for the model.
    pub client_closed: AtomicU64,
}

impl RequestCounters {
    pub fn record(&self, status: StatusCode) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let class = match status.as_u16() {
            200..=399 => &self.success,
            400..=499 => &self.client_error,
            _ => &self.server_error,
        };
        class.fetch_add(1, Ordering::Relaxed);
    }
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

    /// The stages of one prediction (single or batch item); stages that did not run (a cache hit
    /// has no forward pass) are not observed.
    pub fn record_prediction(&self, outcome: &Outcome) {
        let t = &outcome.timings;
        let id = &outcome.model.id;
        let model: [&str; 2] = [&id.name, &id.version];
        for (histogram, ms) in [
            (&self.queue_wait, t.queue),
            (&self.preprocess, t.preprocess),
            (&self.inference, t.inference),
            (&self.text, t.text),
        ] {
            if let Some(ms) = ms {
                histogram.with_label_values(&model).observe(ms / 1e3);
            }
        }
        let label = outcome.answer.combined.best().label.as_str();
        self.predictions.with_label_values(&[model[0], model[1], label]).inc();
    }
}

pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The text exposition of everything: live series plus a snapshot of the counts kept elsewhere.
pub fn render(metrics: &Metrics, predictor: &Predictor) -> prometheus::Result<String> {
    // The snapshot first: it also drops the series of versions no longer loaded.
    let snapshot = snapshot(metrics, predictor)?;
    let mut families = metrics.registry.gather();
    families.extend(snapshot.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

fn snapshot(metrics: &Metrics, predictor: &Predictor) -> prometheus::Result<Registry> {
    let registry = Registry::new_custom(Some(PREFIX.into()), None)?;
    let counter_vec = |name: &str, help: &str, label: &str, values: &[(&str, u64)]| -> prometheus::Result<()> {
        let vec = IntCounterVec::new(Opts::new(name, help), &[label])?;
        for (value, n) in values {
            vec.with_label_values(&[value]).inc_by(*n);
        }
        registry.register(Box::new(vec))
    };
    let gauge_vec = |name: &str, help: &str, labels: &[&str], values: &[(&[&str], i64)]| -> prometheus::Result<()> {
        let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
        for (label_values, n) in values {
            vec.with_label_values(label_values).set(*n);
        }
        registry.register(Box::new(vec))
    };
    let counter = |name: &str, help: &str, n: u64| -> prometheus::Result<()> {
        let c = IntCounter::new(name, help)?;
        c.inc_by(n);
        registry.register(Box::new(c))
    };
    let gauge = |name: &str, help: &str, n: f64| -> prometheus::Result<()> {
        let g = prometheus::Gauge::new(name, help)?;
        g.set(n);
        registry.register(Box::new(g))
    };

    let (p, t) = predictor.cache_stats();
    counter_vec("cache_hits_total", "Cache hits", "cache", &[("prediction", p.hits), ("text", t.hits)])?;
    counter_vec("cache_misses_total", "Cache misses", "cache", &[("prediction", p.misses), ("text", t.misses)])?;
    gauge_vec(
        "cache_entries",
        "Entries in each cache",
        &["cache"],
        &[(&["prediction"], p.size as i64), (&["text"], t.size as i64)],
    )?;
    gauge_vec(
        "cache_capacity",
        "Capacity of each cache",
        &["cache"],
        &[(&["prediction"], p.capacity as i64), (&["text"], t.capacity as i64)],
    )?;

    if let Some(shared) = predictor.shared_cache() {
        let c = &shared.counts;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter_vec(
            "shared_cache_lookups_total",
            "Lookups in the shared cache (Redis) by outcome; skipped: breaker open or queue full; forged: signature not the shared secret's",
            "outcome",
            &[
                ("hit", n(&c.hits)),
                ("miss", n(&c.misses)),
                ("error", n(&c.errors)),
                ("timeout", n(&c.timeouts)),
                ("skipped", n(&c.skipped)),
                ("undecodable", n(&c.undecodable)),
                ("forged", n(&c.forged)),
            ],
        )?;
        counter_vec(
            "shared_cache_writes_total",
            "Answers written to the shared cache by outcome",
            "outcome",
            &[("written", n(&c.written)), ("error", n(&c.write_errors)), ("skipped", n(&c.writes_skipped))],
        )?;
        gauge("shared_cache_up", "1 while the shared cache's breaker is closed", f64::from(u8::from(shared.up())))?;
    }

    if let Ok(model) = predictor.model() {
        let fingerprint = model.id.fingerprint.to_string();
        let info: &[&str] = &[&model.id.name, &model.id.version, model.backend(), &fingerprint];
        let labels = ["name", "version", "format", "fingerprint"];
        gauge_vec("model_info", "The model /predict serves (always 1)", &labels, &[(info, 1)])?;
        gauge("model_generation", "Loads so far when the serving model was loaded", model.generation as f64)?;
        gauge("model_load_seconds", "Load, validation and warm-up of the serving model", model.load_ms / 1e3)?;
    }
    let snapshot = predictor.table().snapshot();
    let mut loaded = HashSet::new();
    let mut versions = Vec::new();
    for (name, entry) in &snapshot.models {
        for (version, slot) in &entry.versions {
            if slot.model.is_some() {
                loaded.insert((name.clone(), version.clone()));
            }
            versions.push(([name.as_str(), version.as_str(), slot.shown_state()], 1));
        }
    }
    metrics.retain_versions(&loaded);
    let mirrors = &predictor.mirrors().counts;
    counter_vec(
        "shadow_mirrors_total",
        "Mirrored (shadow) predictions by outcome",
        "outcome",
        &[
            ("compared", mirrors.compared.load(Ordering::Relaxed)),
            ("dropped_queue_full", mirrors.dropped_queue_full.load(Ordering::Relaxed)),
            ("dropped_memory", mirrors.dropped_memory.load(Ordering::Relaxed)),
            ("failed", mirrors.failed.load(Ordering::Relaxed)),
        ],
    )?;
    let mut pairs: Vec<([String; 3], f64, f64)> = Vec::new();
    for (name, entry) in &snapshot.models {
        for (version, slot) in &entry.versions {
            let Some(model) = &slot.model else { continue };
            for pair in model.stats.pairs().into_iter().filter(|p| p.role == "primary") {
                let labels = [name.clone(), version.clone(), pair.other_version];
                pairs.push((labels, pair.compared as f64, pair.top1_agreement));
            }
        }
    }
    let pair_gauge = |name: &str, help: &str, pick: fn(&([String; 3], f64, f64)) -> f64| -> prometheus::Result<()> {
        let vec = prometheus::GaugeVec::new(Opts::new(name, help), &["model", "primary", "shadow"])?;
        for pair in &pairs {
            vec.with_label_values(&[&pair.0[0], &pair.0[1], &pair.0[2]]).set(pick(pair));
        }
        registry.register(Box::new(vec))
    };
    pair_gauge("shadow_comparisons", "Mirrored requests compared, by primary and shadow version", |p| p.1)?;
    pair_gauge("shadow_top1_agreement", "Share of compared mirrors whose top-1 label matched the primary's", |p| p.2)?;
    let version_rows: Vec<(&[&str], i64)> = versions.iter().map(|(labels, v)| (&labels[..], *v)).collect();
    gauge_vec(
        "model_version_state",
        "Each version in the repository and its state (always 1)",
        &["model", "version", "state"],
        &version_rows,
    )?;
    let reloads = predictor.reload_stats();
    counter_vec(
        "model_reloads_total",
        "Reloads by outcome",
        "outcome",
        &[("success", reloads.succeeded), ("failure", reloads.failed)],
    )?;

    if let Some(rows) = predictor.history().counts() {
        counter_vec(
            "history_rows_total",
            "Inference history rows by outcome: written, or dropped (queue full, store failed)",
            "outcome",
            &[
                ("written", rows.written),
                ("dropped_queue_full", rows.dropped_queue_full),
                ("dropped_store_error", rows.dropped_store_error),
            ],
        )?;
        counter("history_pruned_rows_total", "History rows removed by retention", rows.pruned)?;
        gauge("history_queue_depth", "History rows waiting for the writer", rows.queued as f64)?;
        let up = predictor.history().status() == crate::history::Status::Ok;
        gauge(
            "history_up",
            "1 while the history store takes every row, 0 while rows are dropped",
            f64::from(u8::from(up)),
        )?;
    }

    let worker = predictor.worker().stats();
    gauge("queue_depth", "Requests waiting for or running on the model", predictor.worker().queued() as f64)?;
    gauge("queue_capacity", "Places in the queue (--queue-capacity)", predictor.worker().capacity() as f64)?;
    counter("forward_passes_total", "Forward passes run (images and texts)", worker.completed.load(Ordering::Relaxed))?;
    counter(
        "bad_model_outputs_total",
        "Forward passes whose output the model's manifest does not describe (width, NaN): answered 500",
        worker.bad_outputs.load(Ordering::Relaxed),
    )?;
    counter(
        "skipped_jobs_total",
        "Jobs whose request had given up before an inference thread reached them",
        worker.skipped.load(Ordering::Relaxed),
    )?;
    counter(
        "client_closed_total",
        "Requests dropped because the client hung up",
        metrics.requests.client_closed.load(Ordering::Relaxed),
    )?;
    gauge("uptime_seconds", "Seconds since the server started", metrics.started_at.elapsed().as_secs_f64())?;
    Ok(registry)
}
