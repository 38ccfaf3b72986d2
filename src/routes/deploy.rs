//! What changes the versions being served: load, unload, aliases, rollback, and the deployment
//! log that records each change with its time and caller. Management endpoints: see `admin`.
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::target::VersionPath;
use super::ModelRef;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::service::Predictor;
use crate::versions::ModelTable;

/// POST /models/{name}/versions/{version}/load: loads, validates and warms a version up. Idempotent.
#[utoipa::path(post, path = "/models/{name}/versions/{version}/load", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "Loaded and warmed up", body = Loaded),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "--max-loaded-versions reached and every loaded version has an alias", body = crate::error::ErrorBody),
    (status = 422, description = "The version's files are not a valid model", body = crate::error::ErrorBody),
))]
pub async fn load(
    admin: Admin,
    path: web::Path<VersionPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let model = versions.load(&path.name, &path.version, &admin.by).await?;
    Ok(HttpResponse::Ok().json(Loaded { status: "ready", model: ModelRef::from(&*model), load_ms: model.load_ms }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Loaded<'a> {
    /// Always `ready`.
    status: &'static str,
    model: ModelRef<'a>,
    /// Load, validation and warm-up (0 when it was loaded already).
    load_ms: f64,
}

/// POST /models/{name}/versions/{version}/unload: frees a version once the requests that hold it
/// finish. Idempotent; refused while an alias points at it.
#[utoipa::path(post, path = "/models/{name}/versions/{version}/unload", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "Unloaded (or being freed as its requests finish)", body = Unloaded),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "An alias points at the version (the message names it)", body = crate::error::ErrorBody),
))]
pub async fn unload(
    admin: Admin,
    path: web::Path<VersionPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    versions.unload(&path.name, &path.version, &admin.by).await?;
    Ok(HttpResponse::Ok().json(Unloaded { status: "unloaded", name: &path.name, version: &path.version }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Unloaded<'a> {
    /// Always `unloaded`.
    status: &'static str,
    name: &'a str,
    version: &'a str,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AliasPath {
    /// The model's name
    pub name: String,
    /// `stable` (what /predict serves), `previous`, or a name of your choosing
    pub alias: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    /// A ready version of the model
    pub version: String,
}

/// PUT /models/{name}/aliases/{alias}: points an alias at a ready version, atomically. Moving
/// `stable` promotes: the version it pointed at becomes `previous`.
#[utoipa::path(put, path = "/models/{name}/aliases/{alias}", tag = "models", params(AliasPath), request_body = AliasBody, security(("admin_token" = [])), responses(
    (status = 200, description = "The alias and the version it pointed at before", body = AliasSet),
    (status = 400, description = "Not a valid alias name or body", body = crate::error::ErrorBody),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "The version is not ready", body = crate::error::ErrorBody),
))]
pub async fn set_alias(
    admin: Admin,
    path: web::Path<AliasPath>,
    body: web::Bytes,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let body: AliasBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Validation(format!("the body must be {{\"version\": \"<version>\"}}: {e}")))?;
    let from = versions.set_alias(&path.name, &path.alias, &body.version, &admin.by)?;
    Ok(HttpResponse::Ok().json(AliasSet { name: &path.name, alias: &path.alias, version: &body.version, from }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AliasSet<'a> {
    name: &'a str,
    alias: &'a str,
    version: &'a str,
    /// The version the alias pointed at before; null for a new alias.
    from: Option<String>,
}

/// DELETE /models/{name}/aliases/{alias}: removes an alias (not `stable`), so that the version it
/// pointed at can be unloaded. Idempotent.
#[utoipa::path(delete, path = "/models/{name}/aliases/{alias}", tag = "models", params(AliasPath), security(("admin_token" = [])), responses(
    (status = 200, description = "The alias removed and the version it pointed at", body = AliasRemoved),
    (status = 404, description = "No such model", body = crate::error::ErrorBody),
    (status = 409, description = "`stable` cannot be removed", body = crate::error::ErrorBody),
))]
pub async fn remove_alias(
    admin: Admin,
    path: web::Path<AliasPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let from = versions.remove_alias(&path.name, &path.alias, &admin.by)?;
    Ok(HttpResponse::Ok().json(AliasRemoved { name: &path.name, alias: &path.alias, from }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AliasRemoved<'a> {
    name: &'a str,
    alias: &'a str,
    /// The version it pointed at; null when there was no such alias.
    from: Option<String>,
}

/// POST /models/{name}/rollback: `stable` goes back to `previous` (and `previous` to what `stable`
/// was) in one atomic step; a second rollback undoes the first.
#[utoipa::path(post, path = "/models/{name}/rollback", tag = "models", params(("name" = String, Path, description = "The model's name")), security(("admin_token" = [])), responses(
    (status = 200, description = "`stable` and `previous` after the swap", body = RolledBack),
    (status = 404, description = "No such model", body = crate::error::ErrorBody),
    (status = 409, description = "No `previous`, or it is not ready", body = crate::error::ErrorBody),
))]
pub async fn rollback(
    admin: Admin,
    path: web::Path<String>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = versions.rollback(&path, &admin.by)?;
    Ok(HttpResponse::Ok().json(RolledBack { name: &path, stable: to, previous: from }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RolledBack<'a> {
    name: &'a str,
    /// What `stable` names now (the former `previous`).
    stable: String,
    /// What `previous` names now (the former `stable`).
    previous: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentsQuery {
    /// Entries to return, newest first (default 100, at most 1000)
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `replica`: this server's own log (default); `store`: the history store's copy, where every
    /// replica sharing it writes (each entry names its replica)
    pub scope: Option<Scope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Replica,
    Store,
}

/// GET /deployments: the deployment log, newest first: every load, unload, alias change,
/// rollback, reload and eviction, with its time, caller and outcome.
#[utoipa::path(get, path = "/deployments", tag = "models", params(DeploymentsQuery), security(("admin_token" = [])), responses(
    (status = 200, description = "The log, newest first: this replica's, or every replica's from the store", body = Deployments),
    (status = 400, description = "`limit` out of range, or an unknown `scope`", body = crate::error::ErrorBody),
    (status = 404, description = "`scope=store` while the history is off", body = crate::error::ErrorBody),
    (status = 503, description = "`scope=store` while the history store cannot be read", body = crate::error::ErrorBody),
))]
pub async fn deployments(
    _admin: Admin,
    query: web::Query<DeploymentsQuery>,
    versions: web::Data<ModelTable>,
    predictor: web::Data<Predictor>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Validation(format!("`limit` must be 1 to 1000, not {limit}")));
    }
    let limit = limit.min(crate::versions::DEPLOYMENTS_KEPT);
    Ok(HttpResponse::Ok().json(match query.scope.unwrap_or(Scope::Replica) {
        Scope::Replica => Deployments { deployments: Log::Replica(versions.deployments(limit)) },
        Scope::Store => Deployments { deployments: Log::Store(predictor.history().deployments(limit as i64).await?) },
    }))
}

/// The deployment log, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Deployments {
    /// This replica's own entries (`scope=replica`), or the store's, each naming its replica
    /// (`scope=store`): one shape, `replica` only in the second.
    #[schema(value_type = Vec<crate::history::DeploymentRow>)]
    deployments: Log,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Log {
    Replica(Vec<crate::versions::Deployment>),
    Store(Vec<crate::history::DeploymentRow>),
}
