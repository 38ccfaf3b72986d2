//! The prediction service, as text-embeddings-inference's `Infer`: it owns the models (the
//! table of versions, its aliases and reloads), the inference threads, the caches and admission, and runs the
//! pipeline behind every prediction route: cache lookups, image preprocessing and the text's
//! tokenization beside the async workers, both models on the inference thread, and the rule that
//! combines their answers. Routes hold a handle to it and only translate HTTP.
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::admission::{Admission, AdmissionError};
pub use crate::answer::{Answer, TextMatch};
use crate::cache::flight::{follow, Flights, Turn};
use crate::cache::{
    image_digest, prediction_key, shared_key, text_key, CacheStats, InputKey, ModelCache, PredictionKey, SharedCache,
};
use crate::domain::{ImageUpload, PredictUpload};
use crate::history::{History, Role};
use crate::model::{
    class_probabilities, combine, softmax, Fingerprint, InferError, InferenceWorker, Lane, LoadError, LoadedModel,
    ModelTable, Prediction, Recorded, ReloadStats, ResolveError, Route, Stages, Work,
};
use crate::preprocess::{decode_rgb, to_model_input, ImageError};
pub use crate::recording::{Asked, Call, Recorder};
use crate::shadow::Mirrors;

/// What the text cache keeps per text: the tokenization and the embedding.
pub struct TextEncoding {
    pub token_ids: Vec<i64>,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
    /// Looking the answer up in the shared cache (Redis); null without one or on a local hit.
    pub cache: Option<f64>,
    pub preprocess: Option<f64>,
    pub queue: Option<f64>,
    pub inference: Option<f64>,
    /// Tokenizing and encoding the text; null when there is none or it came from the text cache.
    pub text: Option<f64>,
    /// The whole request, upload included: set by the route.
    pub total: f64,
}

pub struct Outcome {
    pub model: Arc<LoadedModel>,
    pub answer: Arc<Answer>,
    /// Answered without a forward pass of its own (`cache` says how).
    pub cache_hit: bool,
    pub cache: CacheLevel,
    pub timings: Timings,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheLevel {
    /// Computed for this request.
    Miss,
    /// This server's own cache.
    Local,
    /// The cache the replicas share (Redis).
    Shared,
    /// An identical request was being computed: this one waited for its answer.
    Joined,
}

impl CacheLevel {
    fn outcome(self, model: Arc<LoadedModel>, answer: Arc<Answer>, timings: Timings) -> Outcome {
        Outcome { model, answer, cache_hit: self != CacheLevel::Miss, cache: self, timings }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Why a prediction failed; `error.rs` says what each means over HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The text cannot be tokenized.
    #[error("`text` {0}")]
    Text(String),
    #[error("no answer within the deadline of {0} ms; the request was dropped, retry or raise --deadline-ms")]
    Deadline(u64),
    #[error("{0}")]
    Internal(String),
}

fn thread_failed(what: &str) -> impl Fn(tokio::task::JoinError) -> PredictError + '_ {
    move |e| PredictError::Internal(format!("{what} thread failed: {e}"))
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
}

pub struct Predictor {
    table: ModelTable,
    mirrors: Mirrors,
    worker: InferenceWorker,
    admission: Admission,
    predictions: ModelCache<Answer>,
    /// The second level, shared by replicas: None without --redis-url.
    shared: Option<SharedCache>,
    flights: Flights<(Fingerprint, PredictionKey), Answer, PredictError>,
    texts: ModelCache<TextEncoding>,
    text_weight: f32,
    max_image_pixels: u64,
    deadline_ms: u64,
    recorder: Recorder,
}

impl Predictor {
    pub fn new(
        table: ModelTable,
        worker: InferenceWorker,
        admission: Admission,
        settings: PredictorSettings,
        recorder: Recorder,
        shared: Option<SharedCache>,
    ) -> Self {
        Self {
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

    /// The versions and their management.
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

    /// The status a failed prediction answers with (for its history row).
    pub(crate) fn status_of(&self, e: &PredictError) -> u16 {
        (self.recorder.status_of)(e)
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

    /// One prediction on `model` (the caller pins it, from `model()`, once per request: every item
    /// of a batch then runs on the same model, whatever a reload swaps in meanwhile), within the
    /// deadline; past it, the pipeline is dropped: its place in the queue is freed and the
    /// inference thread skips its job.
    /// The outcome goes into the version's statistics and the history.
    pub async fn predict(
        &self,
        model: &Arc<LoadedModel>,
        upload: &PredictUpload,
        call: &Call,
    ) -> Result<Outcome, PredictError> {
        let started = Instant::now();
        let image_sha256 = digest_of(&upload.image).await?;
        let work = self.run(model.clone(), upload, &image_sha256, Lane::Primary);
        let outcome = tokio::time::timeout(Duration::from_millis(self.deadline_ms), work)
            .await
            .map_err(|_| PredictError::Deadline(self.deadline_ms))
            .and_then(|outcome| outcome);
        let latency = started.elapsed();
        let asked = Asked { upload, image_sha256: &image_sha256, call };
        if let Ok(done) = &outcome {
            self.maybe_mirror(model, &asked, &done.answer);
        }
        self.remember(model, &asked, Role::Primary, outcome.as_ref(), latency);
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
        outcome
    }

    pub(crate) async fn run(
        &self,
        model: Arc<LoadedModel>,
        upload: &PredictUpload,
        image_sha256: &InputKey,
        lane: Lane,
    ) -> Result<Outcome, PredictError> {
        let text = upload.text.as_ref().map(|t| t.as_str());
        let key = prediction_key(image_sha256, text);
        let fingerprint = model.id.fingerprint;
        loop {
            if let Some(answer) = self.predictions.get(fingerprint, &key) {
                return Ok(CacheLevel::Local.outcome(model, answer, Timings::default()));
            }
            // Mirrors neither lead nor follow: a client's request would wait behind the shadow lane.
            let leader = match lane {
                Lane::Shadow => None,
                Lane::Primary => match self.flights.join((fingerprint, key)) {
                    Turn::Lead(leader) => Some(leader),
                    Turn::Follow(slot) => match follow(slot).await {
                        Some(Ok(answer)) => return Ok(CacheLevel::Joined.outcome(model, answer, Timings::default())),
                        Some(Err(e)) => return Err(e),
                        // The leader gave up (its client left): look again, and lead this time.
                        None => continue,
                    },
                },
            };
            let result = self.answer(&model, upload, key, lane).await;
            if let Some(leader) = leader {
                leader.finish(&result.as_ref().map(|(answer, ..)| answer.clone()).map_err(Clone::clone));
            }
            let (answer, level, timings) = result?;
            return Ok(level.outcome(model, answer, timings));
        }
    }

    /// From the shared cache, or computed (and then kept in both levels).
    async fn answer(
        &self,
        model: &Arc<LoadedModel>,
        upload: &PredictUpload,
        key: PredictionKey,
        lane: Lane,
    ) -> Result<(Arc<Answer>, CacheLevel, Timings), PredictError> {
        let fingerprint = model.id.fingerprint;
        let mut looked_up = None;
        if let Some(shared) = &self.shared {
            let started = Instant::now();
            let found = shared.get(shared_key(fingerprint, &key)).await;
            looked_up = Some(ms(started.elapsed()));
            if let Some(bytes) = found {
                match Answer::decode(&bytes, &model.classes) {
                    Some(answer) => {
                        let answer = Arc::new(answer);
                        self.predictions.insert(fingerprint, key, answer.clone());
                        let timings = Timings { cache: looked_up, ..Default::default() };
                        return Ok((answer, CacheLevel::Shared, timings));
                    }
                    None => shared.counts.undecodable.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                };
            }
        }

        let text = upload.text.as_ref().map(|t| t.as_str());
        let weight = self.text_weight;
        let used_text = text.filter(|_| weight > 0.0);
        let ((image_output, mut timings), encoded) =
            tokio::try_join!(self.run_image(model, &upload.image, lane), self.encode_text(model, used_text, lane))?;
        timings.cache = looked_up;

        let image = class_probabilities(&image_output, &model.classes);
        let image_only = Prediction::rank(&image, &model.classes);
        let image_best = image_only.best().clone();
        let (combined, text_match) = match encoded {
            None => (image_only, None),
            Some((encoding, text_ms)) => {
                timings.text = text_ms;
                let similarities = model.text.similarities(&encoding.embedding);
                let text_probabilities = softmax(&similarities, model.text.manifest.temperature);
                let best =
                    (0..similarities.len()).max_by(|&a, &b| similarities[a].total_cmp(&similarities[b])).unwrap_or(0);
                let text_match = TextMatch {
                    label: model.classes.entries()[best].label.clone(),
                    similarity: similarities[best],
                    probability: text_probabilities[best],
                };
                let combined = combine(&image, &text_probabilities, weight);
                (Prediction::rank(&combined, &model.classes), Some(text_match))
            }
        };
        let answer = Arc::new(Answer { combined, image: image_best, text_match });
        // Keyed by the model that computed it: right even if a reload swapped another in meanwhile.
        self.predictions.insert(fingerprint, key, answer.clone());
        if let Some(shared) = &self.shared {
            shared.set(shared_key(fingerprint, &key), answer.encode());
        }
        Ok((answer, CacheLevel::Miss, timings))
    }

    /// Decode and resize on the blocking pool, then the image model on the inference thread.
    async fn run_image(
        &self,
        model: &Arc<LoadedModel>,
        image: &ImageUpload,
        lane: Lane,
    ) -> Result<(Vec<f32>, Timings), PredictError> {
        let started = Instant::now();
        let (image, spec, max_pixels) = (image.clone(), model.manifest.input_spec(), self.max_image_pixels);
        let admission = self.admission.clone();
        let input = tokio::task::spawn_blocking(move || {
            // The decode's memory comes from the budget before any pixel, and returns to it once the
            // model input (a few hundred KB) is made.
            let reserve = |bytes| {
                admission.reserve(bytes).map_err(|e| match e {
                    AdmissionError::TooLarge { .. } => ImageError::TooLarge(format!("decoding this image: {e}")),
                    busy => ImageError::Busy(busy),
                })
            };
            let (rgb, _held) = decode_rgb(image.bytes(), image.format(), max_pixels, spec.jpeg_at_least(), reserve)?;
            // The model input is held until its pass is done: a manifest's input size is the
            // model author's to choose (within the manifest's bounds), so it is counted too.
            let input_bytes = 3 * u64::from(spec.input_size).pow(2) * std::mem::size_of::<f32>() as u64;
            let input_held = reserve(input_bytes)?;
            Ok::<_, ImageError>((to_model_input(&rgb, &spec)?, input_held))
        })
        .await
        .map_err(thread_failed("preprocessing"))??;
        let (input, _input_held) = input;
        let preprocess = started.elapsed();
        let inference = self.worker.infer(model.clone(), Work::Image(input), lane).await?;
        let timings = Timings {
            preprocess: Some(ms(preprocess)),
            queue: Some(ms(inference.queue_wait)),
            inference: Some(ms(inference.forward)),
            ..Default::default()
        };
        Ok((inference.output, timings))
    }

    /// The text's embedding from the text cache, or tokenized here and encoded on the inference thread.
    async fn encode_text(
        &self,
        model: &Arc<LoadedModel>,
        text: Option<&str>,
        lane: Lane,
    ) -> Result<Option<(Arc<TextEncoding>, Option<f64>)>, PredictError> {
        let Some(text) = text else { return Ok(None) };
        let key = text_key(text);
        if let Some(hit) = self.texts.get(model.id.fingerprint, &key) {
            return Ok(Some((hit, None)));
        }
        let started = Instant::now();
        // A few microseconds for a text within the length limit: not worth a thread hop.
        let token_ids = model.text.tokenize(text).map_err(|e| PredictError::Text(e.to_string()))?;
        let inference = self.worker.infer(model.clone(), Work::Text(token_ids.clone()), lane).await?;
        let encoding = Arc::new(TextEncoding { token_ids, embedding: inference.output });
        self.texts.insert(model.id.fingerprint, key, encoding.clone());
        Ok(Some((encoding, Some(ms(started.elapsed())))))
    }
}

/// Hashing runs at about 1 GB/s: a large image's would hold an async worker (and every connection
/// it serves) for milliseconds, so it goes to the blocking pool; a small one's costs less than the hop.
const HASH_INLINE_BYTES: usize = 256 * 1024;

/// The image's SHA-256: for the cache's key and the history.
pub(crate) async fn digest_of(image: &ImageUpload) -> Result<InputKey, PredictError> {
    let bytes = image.bytes();
    if bytes.len() <= HASH_INLINE_BYTES {
        return Ok(image_digest(bytes));
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || image_digest(&bytes)).await.map_err(thread_failed("hashing"))
}
