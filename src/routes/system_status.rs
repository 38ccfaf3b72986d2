use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use sysinfo::{ProcessesToUpdate, System};

use crate::cache::CacheStats;
use crate::config::Config;
use crate::error::ApiError;
use crate::history::{Counts, Status};
use crate::metrics::Metrics;
use crate::routes::admin::Admin;
use crate::runtime::ModelFile;
use crate::service::Predictor;
use crate::versions::ReloadStats;

/// What /system_status shows of the settings (the handler gets this, not the whole configuration).
pub struct StatusSettings {
    pub inference_threads: usize,
    pub torch_threads_alone: usize,
    pub torch_threads: usize,
    pub text_weight: f32,
    pub max_concurrent_requests: u64,
    pub queue_capacity: usize,
}

impl StatusSettings {
    pub fn of(config: &Config) -> Self {
        Self {
            inference_threads: config.inference_threads(),
            torch_threads_alone: config.torch_threads_layout().alone,
            torch_threads: config.torch_threads(),
            text_weight: config.text_weight,
            max_concurrent_requests: config.max_concurrent_requests,
            queue_capacity: config.queue_capacity,
        }
    }
}

/// Machine, process, model (format, files, reloads), caches, queue and request counts. Where the
/// model files lie on disk and why a reload failed are shown to the admin (token, or loopback when
/// none is set) only: others see file names.
#[utoipa::path(get, path = "/system_status", tag = "model", responses((status = 200, description = "Status object", body = SystemStatus)))]
pub async fn system_status(
    admin: Result<Admin, ApiError>,
    predictor: web::Data<Predictor>,
    settings: web::Data<StatusSettings>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let model = predictor.model()?;
    let (files, reloads) = if admin.is_ok() {
        (model.files.clone(), predictor.reload_stats())
    } else {
        (model.files.iter().map(without_folders).collect(), anonymous(predictor.reload_stats()))
    };
    let (prediction, text) = predictor.cache_stats();
    let pid = sysinfo::get_current_pid().ok();
    let (machine, process) = {
        let mut sys = metrics.system.lock().expect("sysinfo lock");
        // CPU usage is the change since the previous refresh: the first call reads 0.
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        if let Some(pid) = pid {
            sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
        }
        let machine = Machine {
            cpus: sys.cpus().len(),
            cpu_percent: sys.global_cpu_usage(),
            memory_total_bytes: sys.total_memory(),
            memory_used_bytes: sys.used_memory(),
            memory_available_bytes: sys.available_memory(),
            uptime_seconds: System::uptime(),
        };
        let process = pid.and_then(|pid| sys.process(pid)).map(|p| Process {
            pid: p.pid().as_u32(),
            cpu_percent: p.cpu_usage(),
            memory_rss_bytes: p.memory(),
            memory_virtual_bytes: p.virtual_memory(),
        });
        (machine, process)
    };
    let (requests, by_status) = (&metrics.requests, metrics.status_counts());
    let (on, fused_graphs) = crate::runtime::onednn_fusion();
    let (admission, worker) = (predictor.admission(), predictor.worker());
    Ok(HttpResponse::Ok().json(SystemStatus {
        uptime_seconds: metrics.started_at.elapsed().as_secs_f64(),
        machine,
        process,
        model: ModelStatus {
            name: model.id.name.clone(),
            version: model.id.version.clone(),
            format: model.backend(),
            fingerprint: model.id.fingerprint.to_string(),
            generation: model.generation,
            device: crate::runtime::device_name(model.device),
            inference_threads: settings.inference_threads,
            torch_threads_alone: settings.torch_threads_alone,
            alone_pays: model.alone_pays,
            torch_threads: settings.torch_threads,
            onednn_fusion: Fusion { on, fused_graphs },
            classes: model.classes.len(),
            input_size: model.manifest.input_size,
            loaded_at_unix: model.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            load_ms: model.load_ms,
            files,
            reloads,
            models_in_memory: crate::runtime::models_alive(),
            text_encoder: TextEncoderStatus {
                name: model.text.manifest.name.clone(),
                version: model.text.manifest.version.clone(),
                format: model.text.backend(),
                dim: model.text.manifest.dim,
                max_tokens: model.text.manifest.max_tokens,
                weight: settings.text_weight,
            },
        },
        caches: Caches { prediction, text },
        admission: AdmissionStatus {
            requests_in_progress: admission.requests_in_progress(),
            max_concurrent_requests: settings.max_concurrent_requests,
            memory_in_use_bytes: admission.memory_in_use_bytes(),
            memory_budget_bytes: admission.budget_bytes(),
        },
        queue: QueueStatus {
            depth: worker.queued(),
            capacity: settings.queue_capacity,
            completed: worker.stats().completed.load(Ordering::Relaxed),
            skipped: worker.stats().skipped.load(Ordering::Relaxed),
            threads_bound_to_cores: worker.stats().bound.load(Ordering::Relaxed),
        },
        history: history_status(&predictor, admin.is_ok()),
        requests: RequestCounts {
            total: by_status.total,
            success: by_status.success,
            client_error: by_status.client_error,
            server_error: by_status.server_error,
            predictions: requests.predictions.load(Ordering::Relaxed),
            client_closed: requests.client_closed.load(Ordering::Relaxed),
        },
    }))
}

/// The store's kind, health and counts; the last error (it may name hosts) for the admin only.
fn history_status(predictor: &Predictor, admin: bool) -> HistoryStatus {
    let history = predictor.history();
    HistoryStatus {
        status: history.status(),
        store: history.store_kind(),
        rows: history.counts(),
        last_error: history.last_error().filter(|_| admin),
    }
}

fn without_folders(file: &ModelFile) -> ModelFile {
    ModelFile { path: file.path.file_name().map(Into::into).unwrap_or_default(), ..file.clone() }
}

/// A failed reload's message names paths (and libtorch's own words may too).
fn anonymous(mut stats: ReloadStats) -> ReloadStats {
    if let Some(last) = stats.last.as_mut() {
        last.error = last.error.as_ref().map(|_| "refused; the admin's view of /system_status says why".into());
    }
    stats
}

/// The answer of `GET /system_status`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SystemStatus {
    uptime_seconds: f64,
    machine: Machine,
    /// This process (absent where the platform does not say).
    process: Option<Process>,
    model: ModelStatus,
    caches: Caches,
    admission: AdmissionStatus,
    queue: QueueStatus,
    history: HistoryStatus,
    requests: RequestCounts,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Machine {
    cpus: usize,
    cpu_percent: f32,
    memory_total_bytes: u64,
    memory_used_bytes: u64,
    memory_available_bytes: u64,
    uptime_seconds: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Process {
    pid: u32,
    cpu_percent: f32,
    memory_rss_bytes: u64,
    memory_virtual_bytes: u64,
}

/// The default model's serving version.
#[derive(Serialize, utoipa::ToSchema)]
struct ModelStatus {
    name: String,
    version: String,
    /// torchscript or onnx
    format: &'static str,
    /// SHA-256 over the version's files
    fingerprint: String,
    generation: u64,
    device: String,
    inference_threads: usize,
    torch_threads_alone: usize,
    /// Whether a lone request does get `torch_threads_alone` (measured faster at load).
    alone_pays: bool,
    torch_threads: usize,
    onednn_fusion: Fusion,
    classes: usize,
    input_size: u32,
    loaded_at_unix: u64,
    load_ms: f64,
    /// Full paths for the admin, file names for others.
    files: Vec<ModelFile>,
    reloads: ReloadStats,
    /// The loaded versions, plus any that requests still hold after an unload or a reload.
    models_in_memory: usize,
    text_encoder: TextEncoderStatus,
}

/// TorchScript image models fused by oneDNN Graph (--no-onednn-fusion turns it off), and the
/// graphs fused so far in this process (the image models' first passes).
#[derive(Serialize, utoipa::ToSchema)]
struct Fusion {
    on: bool,
    fused_graphs: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TextEncoderStatus {
    name: String,
    version: String,
    format: &'static str,
    dim: i64,
    max_tokens: usize,
    /// The text's share of the answer (--text-weight).
    weight: f32,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Caches {
    prediction: CacheStats,
    text: CacheStats,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AdmissionStatus {
    requests_in_progress: usize,
    max_concurrent_requests: u64,
    memory_in_use_bytes: u64,
    memory_budget_bytes: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct QueueStatus {
    depth: usize,
    capacity: usize,
    completed: u64,
    skipped: u64,
    /// Inference threads bound to cores with their libtorch team (--no-thread-binding).
    threads_bound_to_cores: usize,
}

/// The store's kind, health and counts; the last error (it may name hosts) for the admin only.
#[derive(Serialize, utoipa::ToSchema)]
struct HistoryStatus {
    status: Status,
    /// sqlite or postgres; absent when off
    store: Option<&'static str>,
    rows: Option<Counts>,
    last_error: Option<String>,
}

/// Requests by status class (from `http_requests_total`) and the predictions among them.
#[derive(Serialize, utoipa::ToSchema)]
struct RequestCounts {
    total: u64,
    success: u64,
    client_error: u64,
    server_error: u64,
    predictions: u64,
    client_closed: u64,
}
