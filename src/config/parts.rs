//! What each part of the server reads of the settings: the prediction routes' limits, the thread
//! layout, and the settings of the predictor, caches, history and validator.
use clap::Parser;

use super::Config;
use crate::domain::UploadLimits;
use crate::history::{HistorySettings, Target};
use crate::runtime::{ThreadLayout, TorchThreads};
use crate::secret::Secret;
use crate::service::PredictorSettings;

/// The answer's size and the inputs' limits, as the prediction routes need them (each handler gets
/// this, not the whole configuration).
#[derive(Debug, Clone, Copy)]
pub struct PredictLimits {
    /// Classes in `top_k` when the request does not say, and the most it may ask for.
    pub top_k: usize,
    pub max_top_k: usize,
    /// A single upload's body, and a batch's.
    pub upload: UploadLimits,
    pub batch_upload: UploadLimits,
    pub max_batch_items: usize,
    /// One image's bytes, a batch's (and a v2 request's), a text's characters.
    pub max_upload_bytes: usize,
    pub max_batch_upload_bytes: usize,
    pub max_text_chars: usize,
}

impl Config {
    /// The settings of a start with no flags (environment variables still apply).
    pub fn defaults() -> Self {
        Self::parse_from(["food-api"])
    }

    /// The admin token from the flag, the environment or the token file.
    pub fn admin_token(&self) -> anyhow::Result<Option<Secret>> {
        if let Some(path) = &self.admin_token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the admin token file {}: {e}", path.display()))?;
            let token = Secret::new(text.lines().next().unwrap_or(""))
                .map_err(|e| anyhow::anyhow!("the admin token file {}: {e}", path.display()))?;
            return Ok(Some(token));
        }
        Ok(self.admin_token.clone())
    }

    pub fn predictor_settings(&self) -> PredictorSettings {
        PredictorSettings {
            prediction_cache_size: self.prediction_cache_size,
            text_cache_size: self.text_cache_size,
            text_weight: self.text_weight,
            max_image_pixels: self.max_image_pixels,
            deadline_ms: self.deadline_ms,
            shadow_queue_capacity: self.shadow_queue_capacity as usize,
            // Enough to preprocess the next items while the model runs, few enough to leave the
            // queue's places to single requests.
            items_in_flight: 2 * self.inference_threads(),
        }
    }

    /// The shared cache's settings, or None without --redis-url.
    pub fn shared_cache_settings(&self) -> anyhow::Result<Option<crate::cache::SharedSettings>> {
        let Some(url) = &self.redis_url else { return Ok(None) };
        Ok(Some(crate::cache::SharedSettings {
            url: url.0.clone(),
            timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
            ttl_seconds: self.redis_ttl_seconds,
            secret: self.cache_secret()?,
        }))
    }

    /// --cache-secret, --cache-secret-file, or the one kept in --data-dir (made on first use).
    fn cache_secret(&self) -> anyhow::Result<Secret> {
        if let Some(secret) = &self.cache_secret {
            return Ok(secret.clone());
        }
        let (path, made_here) = match &self.cache_secret_file {
            Some(path) => (path.clone(), false),
            None => (self.data_dir.join("cache-secret"), true),
        };
        if made_here && !path.exists() {
            let secret = crate::secret::random_secret()?;
            std::fs::create_dir_all(&self.data_dir)?;
            let mut file = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(file.create_new(true).write(true), 0o600);
            // Two servers starting on one --data-dir at once: the second finds the first's file.
            if let Ok(mut file) = file.open(&path) {
                std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
            }
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the shared cache's secret {}: {e}", path.display()))?;
        Secret::new(text.lines().next().unwrap_or(""))
            .map_err(|_| anyhow::anyhow!("the shared cache's secret file {} is empty", path.display()))
    }

    pub fn history_settings(&self) -> HistorySettings {
        let replica = self.replica_name.clone().unwrap_or_else(|| {
            let host = sysinfo::System::host_name().unwrap_or_else(|| "localhost".into());
            format!("{host}-{}", std::process::id())
        });
        HistorySettings {
            target: Target::of(self.history_url.as_ref(), &self.data_dir),
            store_text: self.history_store_text,
            retention: std::time::Duration::from_secs(self.history_retention_days * 86_400),
            max_rows: self.history_max_rows,
            queue_capacity: self.history_queue_capacity as usize,
            prune_every: std::time::Duration::from_secs(self.history_prune_seconds),
            replica,
        }
    }

    /// How uploaded versions are checked before the server loads them.
    pub fn validation_limits(&self) -> anyhow::Result<crate::validate::ValidationLimits> {
        let binary = match &self.validate_with {
            Some(binary) => binary.clone(),
            None => std::env::current_exe()?,
        };
        // As Application::build chooses them: the validator runs the model as the server will.
        let device = crate::runtime::resolve_device(self.device)?;
        let fusion = !self.no_onednn_fusion && device == crate::runtime::Device::Cpu;
        Ok(crate::validate::ValidationLimits {
            binary,
            timeout: std::time::Duration::from_secs(self.validate_timeout_seconds),
            memory_bytes: self.validate_memory_mb << 20,
            settings: crate::validate::RunSettings::of(device, self.thread_layout(), fusion),
        })
    }

    /// What a /predict body may bring.
    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            max_body_bytes: self.max_upload_bytes,
            max_text_chars: self.max_text_chars,
            max_parts: self.max_parts,
            read_timeout: std::time::Duration::from_secs(self.request_timeout_seconds),
        }
    }

    /// What the prediction routes (REST, batch, v2 over HTTP and gRPC) read of the configuration.
    pub fn predict_limits(&self) -> PredictLimits {
        PredictLimits {
            top_k: self.top_k,
            max_top_k: self.max_top_k,
            upload: self.upload_limits(),
            batch_upload: self.batch_upload_limits(),
            max_batch_items: self.max_batch_items as usize,
            max_upload_bytes: self.max_upload_bytes,
            max_batch_upload_bytes: self.max_batch_upload_bytes,
            max_text_chars: self.max_text_chars,
        }
    }

    /// A batch may carry an image and a text per item, plus the fields a single upload may have.
    pub fn batch_upload_limits(&self) -> UploadLimits {
        let items = self.max_batch_items as usize;
        UploadLimits {
            max_body_bytes: self.max_batch_upload_bytes,
            max_parts: 2 * items + self.max_parts,
            ..self.upload_limits()
        }
    }

    pub fn inference_threads(&self) -> usize {
        match self.inference_threads {
            0 => cores(),
            n => n as usize,
        }
    }

    /// Intra-op threads per forward pass when other requests are in (and the warm-ups').
    pub fn torch_threads(&self) -> usize {
        match self.torch_threads {
            0 => (cores() / self.inference_threads()).max(1),
            n => n,
        }
    }

    pub fn torch_threads_layout(&self) -> TorchThreads {
        let alone = if self.torch_threads == 0 { cores() } else { self.torch_threads };
        TorchThreads { shared: self.torch_threads(), alone }
    }

    pub fn thread_layout(&self) -> ThreadLayout {
        let bind = !self.no_thread_binding && owns_its_cpus();
        ThreadLayout { inference_threads: self.inference_threads(), torch: self.torch_threads_layout(), bind }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether this process may run on as many CPUs as it counts cores. Not so in a container whose
/// CPU quota is smaller than the machine: binding would crowd its threads onto a few of CPUs that
/// others share, where the scheduler would otherwise spread them.
fn owns_its_cpus() -> bool {
    crate::runtime::allowed_cpus().len() == cores()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_one_inference_thread_per_core_that_takes_every_core_when_alone() {
        let config = Config::parse_from(["food-api"]);
        assert_eq!(config.inference_threads(), cores());
        assert_eq!(config.torch_threads_layout(), TorchThreads { shared: 1, alone: cores() });
        let pinned = Config::parse_from(["food-api", "--inference-threads", "1", "--torch-threads", "3"]);
        assert_eq!(pinned.torch_threads_layout(), TorchThreads { shared: 3, alone: 3 }, "an explicit count is kept");
    }
}
