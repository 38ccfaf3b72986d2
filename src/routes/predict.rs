//! POST /predict and POST /models/{name}/versions/{version}/predict: one photo (multipart or JSON
//! with base64), optionally a text; parse, ask the prediction service, render.
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::target::{Target, VersionPath};
use super::{extract, ModelRef};
use crate::config::PredictLimits;
use crate::domain::{PredictUpload, TopK};
use crate::error::ApiError;
use crate::peer;
use crate::runtime::ClassScore;
use crate::service::{CacheLevel, Outcome, Predictor, TextMatch, Timings};
use crate::telemetry::PredictionLog;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// Classes to list in `top_k` (default 5, at most `--max-top-k`)
    pub(super) top_k: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PredictResponse<'a> {
    /// The answer: the image's, combined with the text's when there is one.
    label: &'a str,
    confidence: f32,
    top_k: &'a [ClassScore],
    /// Probability mass on all mapped classes: low means the photo is none of them.
    mapped_probability: f32,
    /// What the image alone says.
    image: &'a ClassScore,
    text: Option<&'a str>,
    /// The label the text points at; null without text.
    text_match: Option<&'a TextMatch>,
    text_weight: Option<f32>,
    /// Answered without a forward pass of its own; `cache` says where the answer came from.
    cache_hit: bool,
    cache: CacheLevel,
    model: ModelRef<'a>,
    timings_ms: &'a Timings,
}

/// The request headers that choose the version (documented; read in `routed`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct RoutingHeaders {
    /// Pins a version or alias (`stable`, `previous`, ...): it answers, whatever the routing policy says
    #[param(rename = "X-Model-Version")]
    x_model_version: Option<String>,
    /// Keeps a user on one version under a weighted routing policy (the policy's `sticky_header`, by default this one)
    #[param(rename = "X-User-Id")]
    x_user_id: Option<String>,
}

/// Classify one photo, optionally guided by a text. The answer's `X-Model-Version` header names the
/// version that answered, `X-Route` why (pinned, sticky or weighted).
#[utoipa::path(
    post, path = "/predict", tag = "predict", params(PredictQuery, RoutingHeaders),
    request_body(content(
        (crate::routes::schemas::PredictForm = "multipart/form-data"),
        (crate::routes::schemas::PredictJson = "application/json"),
    )),
    responses(
        (status = 200, description = "The answer", body = PredictResponse),
        crate::routes::schemas::UploadErrors,
    )
)]
#[tracing::instrument(name = "predict", skip_all, fields(request_id = %target.call.request_id, version = %target.model.id.version))]
pub async fn predict(
    query: web::Query<PredictQuery>,
    target: Target,
    req: HttpRequest,
    payload: web::Payload,
    predictor: web::Data<Predictor>,
    limits: web::Data<PredictLimits>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let top_k = TopK::parse(query.top_k, limits.top_k, limits.max_top_k)?;
    // The body's memory, held until the answer is built.
    let mut memory = predictor.admission().reservation();
    let upload = extract::predict_upload(req.headers(), payload, limits.upload, &mut memory).await?;
    let mut outcome = predictor.predict(&target.model, &upload, &target.call, peer::closed(&req)).await?;
    // Total includes reading the upload.
    outcome.timings.total = started.elapsed().as_secs_f64() * 1e3;
    let mut response = target.answered().json(PredictResponse::new(&outcome, &upload, top_k, predictor.text_weight()));
    let label = outcome.answer.combined.best().label.clone();
    response.extensions_mut().insert(PredictionLog { cache_hit: outcome.cache_hit, label, timings: outcome.timings });
    Ok(response)
}

/// Classify one photo on a given version or alias of a model: the same body and answer as
/// `POST /predict`.
#[utoipa::path(
    post, path = "/models/{name}/versions/{version}/predict", tag = "predict", params(VersionPath, PredictQuery),
    request_body(content(
        (crate::routes::schemas::PredictForm = "multipart/form-data"),
        (crate::routes::schemas::PredictJson = "application/json"),
    )),
    responses(
        (status = 200, description = "The answer", body = PredictResponse),
        (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
        (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
        crate::routes::schemas::UploadErrors,
    )
)]
// Documents the route only: `predict` serves it (`Target` reads the version from the path).
#[allow(dead_code)]
fn predict_version() {}

impl<'a> PredictResponse<'a> {
    pub(super) fn new(outcome: &'a Outcome, upload: &'a PredictUpload, top_k: TopK, text_weight: f32) -> Self {
        let (answer, best) = (&outcome.answer, outcome.answer.combined.best());
        Self {
            label: &best.label,
            confidence: best.probability,
            top_k: answer.combined.top(top_k.get()),
            mapped_probability: answer.combined.mapped_mass,
            image: &answer.image,
            text: upload.text.as_ref().map(|t| t.as_str()),
            text_match: answer.text_match.as_ref(),
            text_weight: answer.text_match.as_ref().map(|_| text_weight),
            cache_hit: outcome.cache_hit,
            cache: outcome.cache,
            model: ModelRef::from(&*outcome.model),
            timings_ms: &outcome.timings,
        }
    }
}
