use std::future::Future;
use std::sync::Arc;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tracing_actix_web::RequestId;

use super::{extract, ModelRef};
use crate::config::Config;
use crate::domain::{PredictUpload, TopK};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::{ClassScore, LoadedModel, Route};
use crate::peer;
use crate::predictor::{CacheLevel, Call, Outcome, Predictor, TextMatch, Timings};
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
        (crate::routes::openapi::PredictForm = "multipart/form-data"),
        (crate::routes::openapi::PredictJson = "application/json"),
    )),
    responses(
        (status = 200, description = "The answer", body = PredictResponse),
        crate::routes::openapi::UploadErrors,
    )
)]
pub async fn predict(
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let routed = routed(&predictor, None, &req)?;
    predict_on(routed, req, payload, query, predictor, config, metrics).await
}

/// The version that answers a request naming none: its `X-Model-Version` pin, else the model's
/// routing policy (by the policy's sticky header, or at random with the weights).
pub(super) fn routed(
    predictor: &Predictor,
    name: Option<&str>,
    req: &HttpRequest,
) -> Result<(Arc<LoadedModel>, Call), ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (model, route, key) = route_by(predictor, name, header)?;
    Ok((model, call_of(req, route, key.as_deref())))
}

/// The version for a request whose headers (HTTP's, or gRPC's metadata) `header` reads: its
/// `X-Model-Version` pin, else the routing policy; with the sticky key the policy used, if any.
pub(super) fn route_by(
    predictor: &Predictor,
    name: Option<&str>,
    header: impl Fn(&str) -> Option<String>,
) -> Result<(Arc<LoadedModel>, Route, Option<String>), ApiError> {
    let pin = header(MODEL_VERSION);
    // The key the policy read, if any: the history keeps its hash.
    let key = std::cell::RefCell::new(None);
    let (model, route) = predictor.route(name, pin.as_deref(), |name| {
        let value = header(name);
        key.replace(value.clone());
        value
    })?;
    let key = key.into_inner().filter(|_| route == Route::Sticky);
    Ok((model, route, key))
}

/// The request as the history records it: its id, route pattern, and why its version answered.
pub(super) fn call_of(req: &HttpRequest, route: Route, sticky_key: Option<&str>) -> Call {
    Call {
        request_id: req.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default(),
        endpoint: req.match_pattern().unwrap_or_default(),
        route,
        sticky_key_sha256: sticky_key.map(|key| crate::recording::sha256_hex(key.as_bytes())),
        item: None,
    }
}

/// A model's version (or alias: `stable`, `previous`, ...), as the path names it.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// The model's name (GET /models lists them)
    pub name: String,
    /// A version, or an alias such as `stable` or `previous`
    pub version: String,
}

/// Classify one photo on a given version or alias of a model: the same body and answer as
/// `POST /predict`.
#[utoipa::path(
    post, path = "/models/{name}/versions/{version}/predict", tag = "predict", params(VersionPath, PredictQuery),
    request_body(content(
        (crate::routes::openapi::PredictForm = "multipart/form-data"),
        (crate::routes::openapi::PredictJson = "application/json"),
    )),
    responses(
        (status = 200, description = "The answer", body = PredictResponse),
        (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
        (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
        crate::routes::openapi::UploadErrors,
    )
)]
pub async fn predict_version(
    path: web::Path<VersionPath>,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let model = predictor.resolve(Some(&path.name), Some(&path.version))?;
    let call = call_of(&req, Route::Pinned, None);
    predict_on((model, call), req, payload, query, predictor, config, metrics).await
}

/// The model is pinned before the body is read: the request finishes on the version it started
/// with, whatever a promotion or rollback does meanwhile.
async fn predict_on(
    (model, call): (Arc<LoadedModel>, Call),
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<PredictQuery>,
    predictor: web::Data<Predictor>,
    config: web::Data<Config>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    metrics.requests.predictions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let top_k = TopK::parse(query.top_k, config.top_k, config.max_top_k)?;
    // The body's memory, held until the answer is built.
    let mut memory = predictor.admission().reservation();
    let upload = extract::predict_upload(req.headers(), payload, config.upload_limits(), &mut memory).await?;
    let work = predict_one(&predictor, &model, &metrics, &upload, &call);
    let mut outcome = unless_client_closed(&req, &metrics, work).await??;
    // Total includes reading the upload.
    outcome.timings.total = started.elapsed().as_secs_f64() * 1e3;
    let mut response = HttpResponse::Ok()
        .insert_header(model_version(&model))
        .insert_header(route_header(call.route))
        .json(PredictResponse::new(&outcome, &upload, top_k, predictor.text_weight()));
    let label = outcome.answer.combined.best().label.clone();
    response.extensions_mut().insert(PredictionLog { cache_hit: outcome.cache_hit, label, timings: outcome.timings });
    Ok(response)
}

/// Runs `work` unless the client hangs up first; then `work` is dropped (its queue places freed,
/// its jobs skipped) and the request counted. Biased towards `work`: what is ready at once (a cache
/// hit) never pays for watching the socket.
pub(super) async fn unless_client_closed<T>(
    req: &HttpRequest,
    metrics: &Metrics,
    work: impl Future<Output = T>,
) -> Result<T, ApiError> {
    tokio::select! {
        biased;
        done = work => Ok(done),
        () = peer::closed(req) => {
            metrics.requests.client_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(ApiError::ClientClosed)
        }
    }
}

/// On a request, pins the version (or alias) that answers; on every prediction answer, names the
/// version that did, for a client or a proxy that reads headers only.
pub const MODEL_VERSION: &str = "X-Model-Version";

pub(super) fn model_version(model: &LoadedModel) -> (&'static str, String) {
    (MODEL_VERSION, model.id.version.clone())
}

/// `X-Route` on every prediction answer: why that version answered (pinned, sticky or weighted).
pub(super) fn route_header(route: Route) -> (&'static str, &'static str) {
    ("X-Route", route.as_str())
}

/// Items of one multi-image request (/predict/batch, v2 infer) run at once: enough to preprocess
/// the next ones while the model runs, few enough to leave the queue's places to single requests.
pub(super) fn items_in_flight(config: &Config) -> usize {
    2 * config.inference_threads()
}

/// One prediction (within the service's deadline). Every route's predictions pass here, and so
/// into the metrics.
pub(super) async fn predict_one(
    predictor: &Predictor,
    model: &Arc<LoadedModel>,
    metrics: &Metrics,
    upload: &PredictUpload,
    call: &Call,
) -> Result<Outcome, ApiError> {
    let outcome = predictor.predict(model, upload, call).await?;
    metrics.record_prediction(&outcome);
    Ok(outcome)
}

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
