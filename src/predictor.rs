//! The prediction pipeline behind `POST /predict`: cache lookups, image preprocessing and the
//! text's tokenization beside the async workers, both models on the inference thread, and the
//! rule that combines their answers.
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use serde::Serialize;

use crate::admission::AdmissionError;
use crate::cache::{prediction_key, text_key, PredictionKey};
use crate::domain::{ImageUpload, PredictUpload};
use crate::error::ApiError;
use crate::model::{class_probabilities, combine, softmax, ClassScore, LoadedModel, Prediction, Work};
use crate::preprocess::{decode_rgb, to_model_input, ImageError};
use crate::state::AppState;

/// A cached answer: everything in it depends only on (image, text, model).
pub struct Answer {
    pub combined: Prediction,
    /// The image's own best class, before the text had its say.
    pub image: ClassScore,
    pub text_match: Option<TextMatch>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TextMatch {
    pub label: String,
    /// Cosine similarity of the text to the label's prompt.
    pub similarity: f32,
    /// The text's own probability for this label (softmax over similarities / temperature).
    pub probability: f32,
}

/// What the text cache keeps per text: the tokenization and the embedding.
pub struct TextEncoding {
    pub token_ids: Vec<i64>,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
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
    pub cache_hit: bool,
    pub timings: Timings,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn predict(state: &AppState, upload: &PredictUpload) -> Result<Outcome, ApiError> {
    // The whole request runs on this model, whatever a reload swaps in meanwhile.
    let model = state.registry.current();
    let text = upload.text.as_ref().map(|t| t.as_str());
    let key = key_of(upload).await?;
    if let Some(answer) = state.predictions.get(model.id.fingerprint, &key) {
        return Ok(Outcome { model, answer, cache_hit: true, timings: Timings::default() });
    }

    let weight = state.config.text_weight;
    let used_text = text.filter(|_| weight > 0.0);
    let ((image_output, mut timings), encoded) =
        tokio::try_join!(run_image(state, &model, &upload.image), encode_text(state, &model, used_text))?;

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
    state.predictions.insert(model.id.fingerprint, key, answer.clone());
    Ok(Outcome { model, answer, cache_hit: false, timings })
}

/// Hashing runs at about 1 GB/s: a large image's would hold an async worker (and every connection
/// it serves) for milliseconds, so it goes to the blocking pool; a small one's costs less than the hop.
const HASH_INLINE_BYTES: usize = 256 * 1024;

async fn key_of(upload: &PredictUpload) -> Result<PredictionKey, ApiError> {
    let (image, text) = (upload.image.bytes(), upload.text.as_ref().map(|t| t.as_str()));
    if image.len() <= HASH_INLINE_BYTES {
        return Ok(prediction_key(image, text));
    }
    let (image, text) = (image.clone(), text.map(str::to_string));
    web::block(move || prediction_key(&image, text.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing thread failed: {e}")))
}

/// Decode and resize on actix's blocking pool, then the image model on the inference thread.
async fn run_image(
    state: &AppState,
    model: &Arc<LoadedModel>,
    image: &ImageUpload,
) -> Result<(Vec<f32>, Timings), ApiError> {
    let started = Instant::now();
    let (image, spec, max_pixels) = (image.clone(), model.manifest.input_spec(), state.config.max_image_pixels);
    let admission = state.admission.clone();
    let input = web::block(move || {
        // The decode's memory comes from the budget before any pixel, and returns to it once the
        // model input (a few hundred KB) is made.
        let reserve = |bytes| {
            admission.reserve(bytes).map_err(|e| match e {
                AdmissionError::TooLarge { .. } => ImageError::TooLarge(format!("decoding this image: {e}")),
                busy => ImageError::Busy(busy),
            })
        };
        let (rgb, _held) = decode_rgb(image.bytes(), image.format(), max_pixels, reserve)?;
        to_model_input(&rgb, &spec)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("preprocessing thread failed: {e}")))??;
    let preprocess = started.elapsed();
    let inference = state.worker.infer(model.clone(), Work::Image(input)).await?;
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
    state: &AppState,
    model: &Arc<LoadedModel>,
    text: Option<&str>,
) -> Result<Option<(Arc<TextEncoding>, Option<f64>)>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let key = text_key(text);
    if let Some(hit) = state.texts.get(model.id.fingerprint, &key) {
        return Ok(Some((hit, None)));
    }
    let started = Instant::now();
    // A few microseconds for a text within the length limit: not worth a thread hop.
    let token_ids = model.text.tokenize(text).map_err(|e| ApiError::Validation(format!("`text` {e}")))?;
    let inference = state.worker.infer(model.clone(), Work::Text(token_ids.clone())).await?;
    let encoding = Arc::new(TextEncoding { token_ids, embedding: inference.output });
    state.texts.insert(model.id.fingerprint, key, encoding.clone());
    Ok(Some((encoding, Some(ms(started.elapsed())))))
}
