//! The prediction service, as text-embeddings-inference's `Infer`: it holds the table of versions,
//! the inference threads, the caches and admission, and owns one prediction end to end: the
//! deadline, the pipeline (`pipeline.rs`), and every side effect once (statistics, history,
//! mirrors, the canary's judge, metrics). Routes hold a handle to it and only translate HTTP.
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answer::Answer;
use super::mirrors::Mirrors;
use super::outcome::{thread_failed, Outcome, PredictError};
use super::record::{Asked, Call, Recorder};
use crate::cache::flight::Flights;
use crate::cache::{digest_of, CacheStats, ModelCache, PredictionKey, SharedCache};
use crate::domain::PredictUpload;
use crate::history::{History, Role};
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::runtime::{Fingerprint, InferenceWorker, Lane, LoadError, LoadedModel, Recorded, Stages};
use crate::traffic::Route;
use crate::versions::{ModelTable, ReloadStats, ResolveError};

/// What the text cache keeps per text: the tokenization and the embedding.
pub struct TextEncoding {
    pub token_ids: Vec<i64>,
    pub embedding: Vec<f32>,
}

/// What the service is told at start (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct PredictorSettings {
    pub prediction_cache_size: usize,
    pub text_cache_size: usize,
    pub text_weight: f32,
    pub max_image_pixels: u64,
    pub deadline_ms: u64,
    pub shadow_queue_capacity: usize,
    /// Items of one multi-image request (/predict/batch, v2 infer) run at once.
    pub items_in_flight: usize,
}

pub struct Predictor {
    pub(super) table: Arc<ModelTable>,
    pub(super) mirrors: Mirrors,
    pub(super) worker: InferenceWorker,
    pub(super) admission: Admission,
    pub(super) predictions: ModelCache<Answer>,
    /// The second level, shared by replicas: None without --redis-url.
    pub(super) shared: Option<SharedCache>,
    pub(super) flights: Flights<(Fingerprint, PredictionKey), Answer, PredictError>,
    pub(super) texts: ModelCache<TextEncoding>,
    pub(super) text_weight: f32,
    pub(super) max_image_pixels: u64,
    pub(super) deadline_ms: u64,
    pub(super) recorder: Recorder,
    pub(super) metrics: Arc<Metrics>,
    pub(super) items_in_flight: usize,
}

impl Predictor {
    pub fn new(
        table: Arc<ModelTable>,
        worker: InferenceWorker,
        admission: Admission,
        settings: PredictorSettings,
        recorder: Recorder,
        shared: Option<SharedCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            metrics,
            items_in_flight: settings.items_in_flight.max(1),
            shared,
            flights: Flights::default(),
            recorder,
            table,
            mirrors: Mirrors::new(settings.shadow_queue_capacity),
            worker,
            admission,
            predictions: ModelCache::new(settings.prediction_cache_size),
            texts: ModelCache::new(settings.text_cache_size),
            text_weight: settings.text_weight,
            max_image_pixels: settings.max_image_pixels,
            deadline_ms: settings.deadline_ms,
        }
    }

    /// What `/predict` serves: the default model's `stable` version. Holding the `Arc` keeps it
    /// alive across any change of the table.
    pub fn model(&self) -> Result<Arc<LoadedModel>, ResolveError> {
        self.table.resolve(None, None)
    }

    /// A version or alias (`stable` when None) of a model (the default one when None).
    pub fn resolve(&self, name: Option<&str>, target: Option<&str>) -> Result<Arc<LoadedModel>, ResolveError> {
        self.table.resolve(name, target)
    }

    /// The version that answers a request: its pin, or the routing policy's pick (see `ModelTable::route`).
    pub fn route(
        &self,
        name: Option<&str>,
        pin: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<(Arc<LoadedModel>, Route), ResolveError> {
        self.table.route(name, pin, header)
    }

    /// The versions and their management (routes get their own handle, `Data<ModelTable>`).
    pub fn table(&self) -> &ModelTable {
        &self.table
    }

    pub async fn reload(&self, by: &str) -> Result<Arc<LoadedModel>, LoadError> {
        self.table.reload(by).await
    }

    pub fn reload_stats(&self) -> ReloadStats {
        self.table.reload_stats()
    }

    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    pub fn history(&self) -> &History {
        &self.recorder.history
    }

    pub(super) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn worker(&self) -> &InferenceWorker {
        &self.worker
    }

    /// The shared cache (Redis), when there is one.
    pub fn shared_cache(&self) -> Option<&SharedCache> {
        self.shared.as_ref()
    }

    /// The prediction cache's and the text cache's.
    pub fn cache_stats(&self) -> (CacheStats, CacheStats) {
        (self.predictions.stats(), self.texts.stats())
    }

    pub fn text_weight(&self) -> f32 {
        self.text_weight
    }

    /// One prediction on `model` (the caller pins it once per request, before reading the body:
    /// the request then finishes on that version whatever a reload or promotion swaps in), unless
    /// `cancelled` (the client hung up) comes first. See `predict_item` for the rest.
    pub async fn predict(
        &self,
        model: &Arc<LoadedModel>,
        upload: &PredictUpload,
        call: &Call,
        cancelled: impl Future<Output = ()>,
    ) -> Result<Outcome, PredictError> {
        self.metrics.requests.predictions.fetch_add(1, Ordering::Relaxed);
        self.unless_cancelled(cancelled, self.predict_item(model, upload, call)).await?
    }

    /// Runs `work` unless `cancelled` comes first; then `work` is dropped (its queue places freed,
    /// its jobs skipped) and the request counted. Biased towards `work`: what is ready at once (a
    /// cache hit) never pays for watching the socket.
    pub(super) async fn unless_cancelled<T>(
        &self,
        cancelled: impl Future<Output = ()>,
        work: impl Future<Output = T>,
    ) -> Result<T, PredictError> {
        tokio::select! {
            biased;
            done = work => Ok(done),
            () = cancelled => {
                self.metrics.requests.client_closed.fetch_add(1, Ordering::Relaxed);
                Err(PredictError::ClientClosed)
            }
        }
    }

    /// One prediction within the deadline; past it, the pipeline is dropped: its place in the
    /// queue is freed and the inference thread skips its job. Every side effect happens here, once:
    /// the version's statistics, the history, the mirror, the canary's judge and the metrics.
    pub(super) async fn predict_item(
        &self,
        model: &Arc<LoadedModel>,
        upload: &PredictUpload,
        call: &Call,
    ) -> Result<Outcome, PredictError> {
        let started = Instant::now();
        let image_sha256 = digest_of(&upload.image).await.map_err(thread_failed("hashing"))?;
        let work = self.run(model.clone(), upload, &image_sha256, Lane::Primary);
        let outcome = tokio::time::timeout(Duration::from_millis(self.deadline_ms), work)
            .await
            .map_err(|_| PredictError::Deadline(self.deadline_ms))
            .and_then(|outcome| outcome);
        let latency = started.elapsed();
        let asked = Asked { upload, image_sha256: &image_sha256, call };
        if let Ok(done) = &outcome {
            self.mirrors.offer(&self.table, &self.admission, model, &asked, &done.answer);
        }
        self.recorder.remember(model, &asked, Role::Primary, outcome.as_ref(), latency);
        model.stats.record(match &outcome {
            Ok(done) => {
                let best = done.answer.combined.best();
                let (label, confidence) = (best.label.as_str(), best.probability);
                let took = |ms: Option<f64>| ms.map(|ms| Duration::from_secs_f64(ms / 1e3));
                let t = &done.timings;
                let stages =
                    Stages { queue: took(t.queue), preprocess: took(t.preprocess), inference: took(t.inference) };
                Recorded::Answer { latency, cache_hit: done.cache_hit, label, confidence, stages }
            }
            Err(_) => Recorded::Error { latency },
        });
        self.table.check_canary(model);
        if let Ok(done) = &outcome {
            let (id, t) = (&done.model.id, &done.timings);
            let label = done.answer.combined.best().label.as_str();
            self.metrics.record_prediction(&id.name, &id.version, label, [t.queue, t.preprocess, t.inference, t.text]);
        }
        outcome
    }
}
