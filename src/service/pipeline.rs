//! One prediction's pipeline, behind `Predictor::predict` and the shadow lane: the local cache, the
//! joining of identical requests in flight, the shared cache, then decoding and resizing beside the
//! async workers and both models on the inference thread, and the rule that combines their answers.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answer::{Answer, TextMatch};
use super::outcome::{ms, thread_failed, CacheLevel, Outcome, PredictError, Timings};
use super::predictor::{Predictor, TextEncoding};
use crate::cache::flight::{follow, Turn};
use crate::cache::{prediction_key, shared_key, text_key, InputKey, PredictionKey};
use crate::domain::{ImageUpload, PredictUpload};
use crate::limits::{AdmissionError, Reservation};
use crate::preprocess::{decode_rgb, to_model_input, ImageError};
use crate::runtime::{class_probabilities, combine, softmax, Lane, LoadedModel, Prediction, Work};

impl Predictor {
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
        // The text is encoded while the image is decoded and resized; the image's pass is queued
        // once the text's is done. A request never holds two queue places: asking for both at once
        // could be refused on every try on a small queue (the text's pass still running when the
        // image's asked), and under load it took two places of the queue's capacity.
        let (image_input, encoded) =
            tokio::try_join!(self.preprocess(model, &upload.image), self.encode_text(model, used_text, lane))?;
        let (image_output, mut timings) = self.run_image(model, image_input, lane).await?;
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

    /// Decode and resize on the blocking pool: the model input, the memory it holds from the budget
    /// (until its pass is done), and how long it took.
    async fn preprocess(&self, model: &LoadedModel, image: &ImageUpload) -> Result<ImageInput, PredictError> {
        let started = Instant::now();
        let (image, spec, max_pixels) = (image.clone(), model.manifest.input_spec(), self.max_image_pixels);
        let admission = self.admission.clone();
        let (input, held) = tokio::task::spawn_blocking(move || {
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
        Ok(ImageInput { input, _held: held, took: started.elapsed() })
    }

    /// The image model on the inference thread.
    async fn run_image(
        &self,
        model: &Arc<LoadedModel>,
        image: ImageInput,
        lane: Lane,
    ) -> Result<(Vec<f32>, Timings), PredictError> {
        let ImageInput { input, _held, took } = image;
        let inference = self.worker.infer(model.clone(), Work::Image(input), lane).await?;
        let timings = Timings {
            preprocess: Some(ms(took)),
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

/// A preprocessed image, waiting for its pass.
struct ImageInput {
    input: Vec<f32>,
    /// Its memory, from the budget, given back after the pass.
    _held: Reservation,
    took: Duration,
}
