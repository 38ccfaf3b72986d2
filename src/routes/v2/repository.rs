//! The Open Inference Protocol's repository and statistics extensions, in the shapes Triton
//! documents: `POST /v2/repository/index`, `POST /v2/repository/models/{name}/load|unload` (admin
//! only, as every change of what is served), and `GET /v2/models[/{name}[/versions/{v}]]/stats`.
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::ModelPath;
use crate::domain::STABLE;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::runtime::ProtocolTotals;
use crate::versions::{ModelTable, VersionEntry};

#[derive(Deserialize, Default)]
struct IndexRequest {
    /// Only versions that are ready.
    #[serde(default)]
    ready: bool,
}

/// Every version of every model: `[{name, version, state, reason}]`, the state in Triton's words
/// (READY, UNAVAILABLE, LOADING, UNLOADING).
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2", security(("admin_token" = [])), responses(
    (status = 200, description = "Every version of every model, with its state", body = Vec<IndexRow>),
    (status = 400, description = "Malformed body", body = crate::error::ErrorBody),
))]
pub async fn index(_admin: Admin, body: web::Bytes, versions: web::Data<ModelTable>) -> Result<HttpResponse, ApiError> {
    let request: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Validation(format!("the body must be {{\"ready\": bool}}: {e}")))?
    };
    Ok(HttpResponse::Ok().json(index_rows(&versions, request.ready)))
}

/// A version in the repository index, over HTTP or gRPC.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct IndexRow {
    pub name: String,
    pub version: String,
    /// READY, UNAVAILABLE, LOADING or UNLOADING
    #[schema(value_type = String)]
    pub state: &'static str,
    /// Why a version is UNAVAILABLE; empty otherwise
    pub reason: String,
}

/// Every version of every model (only the ready ones if `ready_only`).
pub fn index_rows(versions: &ModelTable, ready_only: bool) -> Vec<IndexRow> {
    let snapshot = versions.snapshot();
    snapshot
        .models
        .iter()
        .flat_map(|(name, entry)| entry.versions.iter().map(move |(version, slot)| (name, version, slot)))
        .filter(|(_, _, slot)| !ready_only || slot.model.is_some())
        .map(|(name, version, slot)| {
            let (state, reason) = protocol_state(slot);
            IndexRow { name: name.clone(), version: version.clone(), state, reason }
        })
        .collect()
}

fn protocol_state(slot: &VersionEntry) -> (&'static str, String) {
    match slot.shown_state() {
        "ready" => ("READY", String::new()),
        "loading" => ("LOADING", String::new()),
        "unloading" => ("UNLOADING", String::new()),
        "failed" => ("UNAVAILABLE", slot.failure.clone().unwrap_or_default()),
        _ => ("UNAVAILABLE", "unloaded".into()),
    }
}

/// Loads the model's `stable` version (and every version an alias names), as Triton loads a model.
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "v2", params(("name" = String, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "Loaded: an empty object", body = Empty),
    (status = 404, description = "No such model", body = crate::error::ErrorBody),
    (status = 422, description = "A version's files are not a valid model", body = crate::error::ErrorBody),
))]
pub async fn load(
    admin: Admin,
    path: web::Path<String>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let entry = model_entry(&versions, &path)?;
    let mut targets: Vec<&String> = entry.aliases.values().collect();
    targets.sort();
    targets.dedup();
    for version in targets {
        versions.load(&path, version, &admin.by).await?;
    }
    Ok(HttpResponse::Ok().json(Empty {}))
}

/// Unloads the model's versions that no alias names. Versions an alias names stay (`stable` is what
/// `/predict` serves): if any do, the answer is 409 naming them, after the others were unloaded.
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", tag = "v2", params(("name" = String, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "Every version unloaded: an empty object", body = Empty),
    (status = 404, description = "No such model", body = crate::error::ErrorBody),
    (status = 409, description = "Aliases still name loaded versions (the message names them)", body = crate::error::ErrorBody),
))]
pub async fn unload(
    admin: Admin,
    path: web::Path<String>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let entry = model_entry(&versions, &path)?;
    let mut kept = Vec::new();
    for (version, _) in entry.versions.iter().filter(|(_, slot)| slot.model.is_some()) {
        let aliases = entry.aliases_of(version);
        if aliases.is_empty() {
            versions.unload(&path, version, &admin.by).await?;
        } else {
            kept.push(format!("{version} ({})", aliases.join(", ")));
        }
    }
    if !kept.is_empty() {
        return Err(ApiError::Conflict(format!(
            "{} stay loaded: aliases name them ({STABLE} is what /predict serves); move or delete the aliases first",
            kept.join(", ")
        )));
    }
    Ok(HttpResponse::Ok().json(Empty {}))
}

/// What Triton answers to a repository load or unload.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Empty {}

fn model_entry(versions: &ModelTable, name: &str) -> Result<crate::versions::ModelEntry, ApiError> {
    Ok(versions.snapshot().model(name)?.clone())
}

/// The statistics extension: every loaded version's counts and summed durations.
#[utoipa::path(get, path = "/v2/models/stats", tag = "v2", security(("admin_token" = [])), responses((status = 200, description = "`{model_stats: [...]}`", body = ModelStats)))]
pub async fn all_stats(_admin: Admin, versions: web::Data<ModelTable>) -> HttpResponse {
    HttpResponse::Ok().json(ModelStats { model_stats: stats_rows(&versions, None, None) })
}

/// The statistics extension for one model, or one of its versions (or an alias).
#[utoipa::path(get, path = "/v2/models/{name}/stats", tag = "v2", params(("name" = String, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "`{model_stats: [...]}`", body = ModelStats),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
))]
pub async fn model_stats(
    _admin: Admin,
    path: web::Path<ModelPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let version = match &path.version {
        Some(target) => Some(versions.resolve(Some(&path.name), Some(target))?.id.version.clone()),
        None => {
            model_entry(&versions, &path.name)?;
            None
        }
    };
    Ok(HttpResponse::Ok().json(ModelStats { model_stats: stats_rows(&versions, Some(&path.name), version.as_deref()) }))
}

/// The statistics extension's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ModelStats {
    model_stats: Vec<ModelStatsRow>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ModelStatsRow {
    name: String,
    version: String,
    /// Milliseconds since the Unix epoch; 0 before the first.
    last_inference: u64,
    inference_count: u64,
    /// Every image runs through its own forward pass: no batching merges executions.
    execution_count: u64,
    inference_stats: ProtocolTotals,
    /// Always empty: no batching.
    batch_stats: [u64; 0],
}

fn stats_rows(versions: &ModelTable, name: Option<&str>, version: Option<&str>) -> Vec<ModelStatsRow> {
    stats_of(versions, name, version)
        .into_iter()
        .map(|row| ModelStatsRow {
            name: row.name,
            version: row.version,
            last_inference: row.last_inference,
            inference_count: row.totals.success.count,
            execution_count: row.totals.compute_infer.count,
            inference_stats: row.totals,
            batch_stats: [],
        })
        .collect()
}

/// A loaded version's statistics, over HTTP or gRPC.
pub struct StatsRow {
    pub name: String,
    pub version: String,
    pub last_inference: u64,
    pub totals: ProtocolTotals,
}

/// The loaded versions' statistics: every model's, or one model's, or one version's.
pub fn stats_of(versions: &ModelTable, name: Option<&str>, version: Option<&str>) -> Vec<StatsRow> {
    let snapshot = versions.snapshot();
    let mut rows = Vec::new();
    for (model_name, entry) in snapshot.models.iter().filter(|(n, _)| name.is_none_or(|name| name == *n)) {
        for (v, slot) in entry.versions.iter().filter(|(v, _)| version.is_none_or(|version| version == *v)) {
            let Some(model) = &slot.model else { continue };
            let (totals, last_inference) = model.stats.protocol_totals();
            rows.push(StatsRow { name: model_name.clone(), version: v.clone(), last_inference, totals });
        }
    }
    rows
}

#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/stats", tag = "v2", params(("name" = String, Path), ("version" = String, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "`{model_stats: [...]}`", body = ModelStats),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
    (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
))]
pub async fn version_stats(
    admin: Admin,
    path: web::Path<ModelPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    model_stats(admin, path, versions).await
}
