//! The serving model behind an atomically swapped handle, and the reload that replaces it.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use tch::Device;

use super::{LoadError, LoadedModel, ModelPaths, ThreadLayout};

pub struct ModelRegistry {
    current: ArcSwap<LoadedModel>,
    paths: ModelPaths,
    device: Device,
    layout: ThreadLayout,
    loader: Loader,
    /// Serialises reloads; never held by a prediction. It guards the number of reload requests
    /// that the last load covered, and its outcome (not the model: models are freed on the loader
    /// thread, and a copy kept here could make this the last owner).
    reload_lock: tokio::sync::Mutex<Option<(u64, Result<(), LoadError>)>>,
    /// Reload requests so far, numbered from 1.
    reload_requests: AtomicU64,
    reloads: Mutex<ReloadStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStats {
    pub succeeded: u64,
    pub failed: u64,
    pub last: Option<ReloadRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub ok: bool,
    pub generation: u64,
    pub duration_ms: f64,
    pub error: Option<String>,
}

impl ModelRegistry {
    /// Loads generation 1 on the loader thread. An ONNX model gets a session per inference thread
    /// (`layout`); libtorch's warm-ups use the shared intra-op thread count.
    pub async fn start(paths: ModelPaths, device: Device, layout: ThreadLayout) -> Result<Self, LoadError> {
        let loader = Loader::spawn(layout.torch.shared)
            .map_err(|e| LoadError::new(&paths.model_dir, format!("cannot start the loader thread: {e}")))?;
        let load_paths = paths.clone();
        let model = loader
            .run(move || LoadedModel::load(&load_paths, device, layout, 1))
            .await
            .unwrap_or_else(|| Err(loader_crashed(&paths)))?;
        tracing::info!(
            name = %model.manifest.name, version = %model.manifest.version, format = model.backend(), classes = model.classes.len(), alone_pays = model.alone_pays,
            load_ms = model.load_ms, ?device, "model loaded"
        );
        Ok(Self {
            current: ArcSwap::from_pointee(model),
            paths,
            device,
            layout,
            loader,
            reload_lock: tokio::sync::Mutex::new(None),
            reload_requests: AtomicU64::new(0),
            reloads: Mutex::new(ReloadStats::default()),
        })
    }

    /// The model serving now. Holding the `Arc` keeps it alive across a swap.
    pub fn current(&self) -> Arc<LoadedModel> {
        self.current.load_full()
    }

    pub fn reload_stats(&self) -> ReloadStats {
        self.reloads.lock().expect("reload stats lock").clone()
    }

    /// Reads the model files again and swaps the new model in only if it loads, validates and
    /// warms up; otherwise the serving model stays and the error names the file at fault.
    /// Concurrent requests coalesce: a load that started after a request arrived read the files as
    /// they were then or later, so its outcome is that request's too. A burst costs two loads at most.
    pub async fn reload(&self) -> Result<Arc<LoadedModel>, LoadError> {
        let request = self.reload_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.reload_lock.lock().await;
        if let Some((covered, outcome)) = &*last {
            if *covered >= request {
                // No reload can swap models while the lock is held: the current one is that load's.
                return outcome.clone().map(|()| self.current());
            }
        }
        let covers = self.reload_requests.load(Ordering::SeqCst);
        let outcome = self.load_and_swap().await;
        *last = Some((covers, outcome.as_ref().map(|_| ()).map_err(Clone::clone)));
        outcome
    }

    async fn load_and_swap(&self) -> Result<Arc<LoadedModel>, LoadError> {
        let started = Instant::now();
        let generation = self.current().generation + 1;
        let (paths, device, layout) = (self.paths.clone(), self.device, self.layout);
        let loaded = self
            .loader
            .run(move || LoadedModel::load(&paths, device, layout, generation))
            .await
            .unwrap_or_else(|| Err(loader_crashed(&self.paths)));

        let record = |ok: bool, error: Option<String>| ReloadRecord {
            at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            ok,
            generation: if ok { generation } else { generation - 1 },
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            error,
        };
        let mut stats = self.reloads.lock().expect("reload stats lock");
        match loaded {
            Ok(model) => {
                let model = Arc::new(model);
                let old = self.current.swap(model.clone());
                // Unless a request still holds it, the old model is freed where it was made.
                self.loader.drop_later(old);
                stats.succeeded += 1;
                stats.last = Some(record(true, None));
                tracing::info!(generation, version = %model.manifest.version, format = model.backend(), load_ms = model.load_ms, "model reloaded");
                Ok(model)
            }
            Err(e) => {
                stats.failed += 1;
                stats.last = Some(record(false, Some(e.to_string())));
                tracing::warn!(error = %e, "reload refused, the previous model keeps serving");
                Err(e)
            }
        }
    }
}

fn loader_crashed(paths: &ModelPaths) -> LoadError {
    LoadError::new(&paths.model_dir, "the model loader thread stopped")
}

/// The one thread that loads every model and frees every swapped-out one. Loading on whichever
/// blocking-pool thread was free scattered each model's tensors over the allocator's per-thread
/// arenas among the traffic's buffers, and RSS crept up with every reload under traffic
/// (bench/soak.py); it also keeps libtorch off the actix workers.
struct Loader {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Loader {
    fn spawn(torch_threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new().name("model-loader".into()).spawn(move || {
            // OpenMP's thread count is per calling thread: set where the warm-ups run.
            tch::set_num_threads(torch_threads as i32);
            for job in queue {
                // A panic inside libtorch fails that load, not every later one.
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("panic on the model loader thread");
                }
            }
        })?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the loader thread; None if it panicked.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send(Box::new(move || drop(reply.send(work())))).ok()?;
        answer.await.ok()
    }

    fn drop_later(&self, value: impl Send + 'static) {
        let _ = self.jobs.send(Box::new(move || drop(value)));
    }
}
