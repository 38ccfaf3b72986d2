use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::ModelRef;
use crate::cache::{cache_key, CachedPrediction};
use crate::domain::{PredictUpload, TopK};
use crate::error::ApiError;
use crate::model::{ClassScore, LoadedModel, Prediction};
use crate::preprocess::{decode_rgb, to_model_input};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct PredictQuery {
    top_k: Option<usize>,
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    label: &'a str,
    confidence: f32,
    top_k: &'a [ClassScore],
    /// Probability mass on all mapped classes: low means the photo is none of them.
    mapped_probability: f32,
    text: Option<&'a str>,
    cache_hit: bool,
    model: ModelRef<'a>,
    timings_ms: Timings,
}

#[derive(Serialize, Default)]
struct Timings {
    preprocess: Option<f64>,
    queue: Option<f64>,
    inference: Option<f64>,
    total: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// POST /predict: multipart `image` (+ optional `text`), `?top_k=N`.
pub async fn predict(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    state.requests.predictions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let top_k = TopK::parse(query.top_k, state.config.top_k, state.config.max_top_k)?;
    let upload = PredictUpload::read(req.headers(), payload, state.upload_limits()).await?;
    let text = upload.text.as_ref().map(|t| t.as_str());

    // The whole request runs on this model, whatever a reload swaps in meanwhile.
    let model = state.registry.current();
    let key = cache_key(upload.image.bytes(), text);
    if let Some(hit) = state.predictions.get(&key, model.generation) {
        let timings = Timings { total: ms(started.elapsed()), ..Default::default() };
        return Ok(respond(&model, &hit.prediction, top_k, text, true, timings));
    }

    let preprocess_started = Instant::now();
    let (image, spec, max_pixels) = (upload.image.clone(), model.manifest.input_spec(), state.config.max_image_pixels);
    let input = web::block(move || decode_rgb(image.bytes(), image.format(), max_pixels).map(|rgb| to_model_input(&rgb, &spec)))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("preprocessing thread failed: {e}")))??;
    let preprocess = preprocess_started.elapsed();

    let inference = state.worker.infer(model.clone(), input).await?;
    let prediction = Prediction::from_probabilities(&inference.probabilities, &model.classes);
    let timings = Timings {
        preprocess: Some(ms(preprocess)),
        queue: Some(ms(inference.queue_wait)),
        inference: Some(ms(inference.forward)),
        total: ms(started.elapsed()),
    };
    let response = respond(&model, &prediction, top_k, text, false, timings);
    // A reload may have swapped the model while this one ran: its answer is then not cached.
    if state.registry.current().generation == model.generation {
        state.predictions.insert(key, CachedPrediction { generation: model.generation, prediction });
    }
    Ok(response)
}

fn respond(
    model: &LoadedModel,
    prediction: &Prediction,
    top_k: TopK,
    text: Option<&str>,
    cache_hit: bool,
    timings_ms: Timings,
) -> HttpResponse {
    let best = prediction.best();
    HttpResponse::Ok().json(PredictResponse {
        label: &best.label,
        confidence: best.probability,
        top_k: prediction.top(top_k.get()),
        mapped_probability: prediction.mapped_mass,
        text,
        cache_hit,
        model: ModelRef::from(model),
        timings_ms,
    })
}
