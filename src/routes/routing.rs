//! A model's routing policy: `GET` it (its generation is the `ETag`), `PUT` a new one (with that
//! generation in `If-Match`, a write based on a policy someone else replaced meanwhile is a 412).
//! Management endpoints: see `admin`.
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::traffic::RoutingPolicy;
use crate::versions::ModelTable;

/// GET /models/{name}/routing: the policy (everything to `stable` until one is set).
#[utoipa::path(get, path = "/models/{name}/routing", tag = "models", params(("name" = String, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "The policy; `ETag` is its generation", body = RoutingPolicy),
    (status = 404, description = "No such model", body = crate::error::ErrorBody),
))]
pub async fn get_routing(
    _admin: Admin,
    path: web::Path<String>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let policy = versions.snapshot().model(&path)?.policy();
    Ok(HttpResponse::Ok().insert_header(etag(&policy)).json(policy))
}

/// PUT /models/{name}/routing: replaces the policy atomically. `split` weights sum to 100 and name
/// ready versions or aliases; `sticky_header` (default `X-User-Id`) keeps a user on one version.
#[utoipa::path(put, path = "/models/{name}/routing", tag = "models", params(("name" = String, Path)), request_body = RoutingPolicy, security(("admin_token" = [])), responses(
    (status = 200, description = "The policy as stored, with its new generation (also the `ETag`)", body = RoutingPolicy),
    (status = 400, description = "Weights do not sum to 100, a bad name, or a malformed body", body = crate::error::ErrorBody),
    (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
    (status = 409, description = "A target is not ready", body = crate::error::ErrorBody),
    (status = 412, description = "`If-Match` names an older generation", body = crate::error::ErrorBody),
))]
pub async fn put_routing(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let policy: RoutingPolicy = serde_json::from_slice(&body).map_err(|e| {
        ApiError::Validation(format!(
            "the body must be {{\"split\": [{{\"target\": ..., \"weight\": ...}}], \"sticky_header\": ...}}: {e}"
        ))
    })?;
    let if_match = match req.headers().get(header::IF_MATCH) {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim().trim_start_matches("W/").trim_matches('"');
            Some(text.parse::<u64>().map_err(|_| {
                ApiError::Validation(format!("If-Match must be a generation from GET /models/{path}/routing, as \"3\""))
            })?)
        }
    };
    let stored = versions.set_routing(&path, policy, if_match, &admin.by)?;
    Ok(HttpResponse::Ok().insert_header(etag(&stored)).json(json!(stored)))
}

fn etag(policy: &RoutingPolicy) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{}\"", policy.generation))
}

/// DELETE /models/{name}/routing: no policy any more, everything to `stable`. Idempotent.
#[utoipa::path(delete, path = "/models/{name}/routing", tag = "models", params(("name" = String, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "`{name, routing: null}`", body = RoutingCleared),
    (status = 404, description = "No such model", body = crate::error::ErrorBody),
))]
pub async fn delete_routing(
    admin: Admin,
    path: web::Path<String>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    versions.clear_routing(&path, &admin.by)?;
    Ok(HttpResponse::Ok().json(RoutingCleared { name: &path, routing: None }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RoutingCleared<'a> {
    name: &'a str,
    /// Always null: no policy, everything to `stable`.
    routing: Option<RoutingPolicy>,
}
