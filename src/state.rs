//! What every handler shares.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::StatusCode;
use serde::Serialize;

use crate::admin::Secret;
use crate::admission::Admission;
use crate::cache::ModelCache;
use crate::config::{Config, OverloadStatus};
use crate::domain::UploadLimits;
use crate::metrics::Metrics;
use crate::model::{InferenceWorker, ModelRegistry};
use crate::predictor::{Answer, TextEncoding};

pub struct AppState {
    pub config: Config,
    pub admin_token: Option<Secret>,
    pub registry: ModelRegistry,
    pub worker: InferenceWorker,
    pub admission: Admission,
    pub predictions: ModelCache<Answer>,
    pub texts: ModelCache<TextEncoding>,
    pub requests: RequestCounters,
    pub metrics: Metrics,
    pub started_at: Instant,
    pub system: Mutex<sysinfo::System>,
}

impl AppState {
    pub fn new(
        config: Config,
        admin_token: Option<Secret>,
        registry: ModelRegistry,
        worker: InferenceWorker,
        metrics: Metrics,
    ) -> Self {
        Self {
            metrics,
            admin_token,
            admission: Admission::new(
                config.max_concurrent_requests as usize,
                config.memory_budget_mb << 20,
                config.overload_status == OverloadStatus::TooManyRequests,
            ),
            predictions: ModelCache::new(config.prediction_cache_size),
            texts: ModelCache::new(config.text_cache_size),
            config,
            registry,
            worker,
            requests: RequestCounters::default(),
            started_at: Instant::now(),
            system: Mutex::new(sysinfo::System::new()),
        }
    }

    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            max_body_bytes: self.config.max_upload_bytes,
            max_text_chars: self.config.max_text_chars,
            max_parts: self.config.max_parts,
            read_timeout: std::time::Duration::from_secs(self.config.request_timeout_seconds),
        }
    }

    /// A batch may carry an image and a text per item, plus the fields a single upload may have.
    pub fn batch_upload_limits(&self) -> UploadLimits {
        let items = self.config.max_batch_items as usize;
        UploadLimits {
            max_body_bytes: self.config.max_batch_upload_bytes,
            max_parts: 2 * items + self.config.max_parts,
            ..self.upload_limits()
        }
    }
}

#[derive(Debug, Default, Serialize)]
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
