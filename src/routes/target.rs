//! Which version answers a prediction request, decided before its body is read: the version the
//! path names (`/models/{name}/versions/{version}/...`, `/v2/models/{name}/versions/{version}/...`),
//! else the request's `X-Model-Version` pin, else the model's routing policy (by its sticky header,
//! or at random with the weights). The answer names the version in the same header, and why in
//! `X-Route`. One extractor for every prediction route, REST and v2 alike.
use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Deserialize;
use tracing_actix_web::RequestId;

use crate::error::ApiError;
use crate::runtime::LoadedModel;
use crate::service::{sha256_hex, Call, Predictor};
use crate::traffic::Route;

/// On a request, pins the version (or alias) that answers; on every prediction answer, names the
/// version that did, for a client or a proxy that reads headers only.
pub const MODEL_VERSION: &str = "X-Model-Version";

/// The version a prediction request runs on, pinned for the whole request (every item of a batch
/// too, whatever a promotion or rollback does meanwhile), and the request as the history records it.
pub struct Target {
    pub model: Arc<LoadedModel>,
    pub call: Call,
}

impl FromRequest for Target {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(target_of(req))
    }
}

fn target_of(req: &HttpRequest) -> Result<Target, ApiError> {
    let predictor = req
        .app_data::<web::Data<Predictor>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the prediction service is not registered")))?;
    let name = req.match_info().get("name");
    if let Some(version) = req.match_info().get("version") {
        let model = predictor.resolve(name, Some(version))?;
        return Ok(Target { model, call: call_of(req, Route::Pinned, None) });
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (model, route, key) = route_by(predictor, name, header)?;
    Ok(Target { model, call: call_of(req, route, key.as_deref()) })
}

/// The version for a request whose headers (HTTP's, or gRPC's metadata) `header` reads: its
/// `X-Model-Version` pin, else the routing policy; with the sticky key the policy used, if any.
pub fn route_by(
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
fn call_of(req: &HttpRequest, route: Route, sticky_key: Option<&str>) -> Call {
    Call {
        request_id: req.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default(),
        endpoint: req.match_pattern().unwrap_or_default(),
        route,
        sticky_key_sha256: sticky_key.map(|key| sha256_hex(key.as_bytes())),
        item: None,
    }
}

impl Target {
    /// A 200 naming the version that answered (`X-Model-Version`) and why (`X-Route`): every
    /// prediction answer starts here.
    pub fn answered(&self) -> HttpResponseBuilder {
        let mut response = HttpResponse::Ok();
        response.insert_header((MODEL_VERSION, self.model.id.version.as_str()));
        response.insert_header(("X-Route", self.call.route.as_str()));
        response
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
