use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use actix_web::{web, HttpResponse};
use serde_json::json;
use sysinfo::{ProcessesToUpdate, System};

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::admin::Admin;
use crate::runtime::ModelFile;
use crate::service::Predictor;
use crate::versions::ReloadStats;

/// Machine, process, model (format, files, reloads), caches, queue and request counts. Where the
/// model files lie on disk and why a reload failed are shown to the admin (token, or loopback when
/// none is set) only: others see file names.
#[utoipa::path(get, path = "/system_status", tag = "model", responses((status = 200, description = "Status object", body = Object)))]
pub async fn system_status(
    admin: Result<Admin, ApiError>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let model = predictor.model()?;
    let (files, reloads) = if admin.is_ok() {
        (json!(model.files), json!(predictor.reload_stats()))
    } else {
        (json!(model.files.iter().map(without_folders).collect::<Vec<_>>()), anonymous(predictor.reload_stats()))
    };
    let caches = predictor.cache_stats();
    let pid = sysinfo::get_current_pid().ok();
    let (machine, process) = {
        let mut sys = metrics.system.lock().expect("sysinfo lock");
        // CPU usage is the change since the previous refresh: the first call reads 0.
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        if let Some(pid) = pid {
            sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
        }
        let machine = json!({
            "cpus": sys.cpus().len(),
            "cpu_percent": sys.global_cpu_usage(),
            "memory_total_bytes": sys.total_memory(),
            "memory_used_bytes": sys.used_memory(),
            "memory_available_bytes": sys.available_memory(),
            "uptime_seconds": System::uptime(),
        });
        let process = pid.and_then(|pid| sys.process(pid)).map(|p| {
            json!({
                "pid": p.pid().as_u32(),
                "cpu_percent": p.cpu_usage(),
                "memory_rss_bytes": p.memory(),
                "memory_virtual_bytes": p.virtual_memory(),
            })
        });
        (machine, process)
    };
    let (requests, by_status) = (&metrics.requests, metrics.status_counts());
    let fusion = crate::runtime::onednn_fusion();
    Ok(HttpResponse::Ok().json(json!({
        "uptime_seconds": metrics.started_at.elapsed().as_secs_f64(),
        "machine": machine,
        "process": process,
        "model": {
            "name": model.id.name,
            "version": model.id.version,
            "format": model.backend(),
            "fingerprint": model.id.fingerprint,
            "generation": model.generation,
            "device": crate::runtime::device_name(model.device),
            "inference_threads": config.inference_threads(),
            "torch_threads_alone": config.torch_threads_layout().alone,
            // Whether a lone request does get `torch_threads_alone` (measured faster at load).
            "alone_pays": model.alone_pays,
            "torch_threads": config.torch_threads(),
            // TorchScript image models fused by oneDNN Graph (--no-onednn-fusion turns it off),
            // and the graphs fused so far in this process (the image models' first passes).
            "onednn_fusion": { "on": fusion.0, "fused_graphs": fusion.1 },
            "classes": model.classes.len(),
            "input_size": model.manifest.input_size,
            "loaded_at_unix": model.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "load_ms": model.load_ms,
            "files": files,
            "reloads": reloads,
            // The loaded versions, plus any that requests still hold after an unload or a reload.
            "models_in_memory": crate::runtime::models_alive(),
            "text_encoder": {
                "name": model.text.manifest.name,
                "version": model.text.manifest.version,
                "format": model.text.backend(),
                "dim": model.text.manifest.dim,
                "max_tokens": model.text.manifest.max_tokens,
                "weight": config.text_weight,
            },
        },
        "caches": { "prediction": caches.0, "text": caches.1 },
        "admission": {
            "requests_in_progress": predictor.admission().requests_in_progress(),
            "max_concurrent_requests": config.max_concurrent_requests,
            "memory_in_use_bytes": predictor.admission().memory_in_use_bytes(),
            "memory_budget_bytes": predictor.admission().budget_bytes(),
        },
        "queue": {
            "depth": predictor.worker().queued(),
            "capacity": config.queue_capacity,
            "completed": predictor.worker().stats().completed.load(Ordering::Relaxed),
            "skipped": predictor.worker().stats().skipped.load(Ordering::Relaxed),
            // Inference threads bound to cores with their libtorch team (--no-thread-binding).
            "threads_bound_to_cores": predictor.worker().stats().bound.load(Ordering::Relaxed),
        },
        "history": history_status(&predictor, admin.is_ok()),
        "requests": {
            "total": by_status.total,
            "success": by_status.success,
            "client_error": by_status.client_error,
            "server_error": by_status.server_error,
            "predictions": requests.predictions.load(Ordering::Relaxed),
            "client_closed": requests.client_closed.load(Ordering::Relaxed),
        },
    })))
}

/// The store's kind, health and counts; the last error (it may name hosts) for the admin only.
fn history_status(predictor: &Predictor, admin: bool) -> serde_json::Value {
    let history = predictor.history();
    json!({
        "status": history.status(),
        "store": history.store_kind(),
        "rows": history.counts(),
        "last_error": history.last_error().filter(|_| admin),
    })
}

fn without_folders(file: &ModelFile) -> ModelFile {
    ModelFile { path: file.path.file_name().map(Into::into).unwrap_or_default(), ..file.clone() }
}

/// A failed reload's message names paths (and libtorch's own words may too).
fn anonymous(mut stats: ReloadStats) -> serde_json::Value {
    if let Some(last) = stats.last.as_mut() {
        last.error = last.error.as_ref().map(|_| "refused; the admin's view of /system_status says why".into());
    }
    json!(stats)
}
