//! GET /metrics in Prometheus' text format: the live series (`src/metrics.rs`) and a snapshot of the
//! counts that other parts already keep (caches, queue, reloads, the model, the history), read when
//! scraped, so there is one source for /system_status and /metrics alike.
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::ApiError;
use crate::metrics::{Metrics, PREFIX};
use crate::service::Predictor;

/// Prometheus' text exposition format (src/metrics.rs lists the series).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(metrics: web::Data<Metrics>, predictor: web::Data<Predictor>) -> Result<HttpResponse, ApiError> {
    let text = render(&metrics, &predictor)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics failed: {e}")))?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}

/// The text exposition of everything: live series plus a snapshot of the counts kept elsewhere.
fn render(metrics: &Metrics, predictor: &Predictor) -> prometheus::Result<String> {
    // The snapshot first: it also drops the series of versions no longer loaded.
    let snapshot = snapshot(metrics, predictor)?;
    let mut families = metrics.gather();
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
