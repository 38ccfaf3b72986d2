//! The model repository as the management API shows it: every model and version, loaded or only
//! on disk, a version's details, and its statistics. Management endpoints: see `admin`.
use std::path::Path;
use std::time::UNIX_EPOCH;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::target::VersionPath;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::runtime::{LoadedModel, Manifest, MANIFEST_FILE};
use crate::versions::{ModelEntry, ModelTable, ResolveError, VersionEntry};

/// GET /models: every model and version with its state, format, fingerprint, size, load time,
/// memory, aliases and share of the model's traffic over the last five minutes.
#[utoipa::path(get, path = "/models", tag = "models", security(("admin_token" = [])), responses(
    (status = 200, description = "`{default_model, models: [{name, aliases, versions: [...]}]}`", body = Object),
    (status = 401, description = "Token configured and missing or wrong", body = crate::error::ErrorBody),
    (status = 403, description = "Not an admin caller", body = crate::error::ErrorBody),
))]
pub async fn list_models(_admin: Admin, versions: web::Data<ModelTable>) -> HttpResponse {
    let snapshot = versions.snapshot();
    let models: Vec<Value> = snapshot
        .models
        .iter()
        .map(|(name, entry)| {
            let recent = |slot: &VersionEntry| slot.model.as_ref().map_or(0, |m| m.stats.report().last_5_minutes.requests);
            let total: u64 = entry.versions.values().map(recent).sum();
            let versions: Vec<Value> = entry
                .versions
                .iter()
                .map(|(version, slot)| {
                    let mut row = summary(entry, version, slot);
                    row["traffic_share"] = json!((total > 0).then(|| recent(slot) as f64 / total as f64));
                    row
                })
                .collect();
            json!({ "name": name, "aliases": entry.aliases, "serves_predict": *name == snapshot.default_model, "versions": versions })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "default_model": snapshot.default_model, "models": models }))
}

/// One version's line in the listing.
fn summary(entry: &ModelEntry, version: &str, slot: &VersionEntry) -> Value {
    let manifest = read_manifest(&slot.dir);
    let size_bytes: u64 = std::fs::read_dir(&slot.dir)
        .map(|files| files.filter_map(Result::ok).filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let loaded = slot.model.as_deref();
    json!({
        "version": version,
        "state": slot.shown_state(),
        "failure": slot.failure,
        "format": manifest.as_ref().map(|m| m.format),
        "input_size": manifest.as_ref().map(|m| m.input_size),
        "fingerprint": slot.fingerprint,
        "size_bytes": size_bytes,
        "load_ms": loaded.map(|m| m.load_ms),
        "loaded_at_unix": loaded.map(|m| m.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        // The weights' tensors are held as read: their files' size is the model's memory, give or
        // take the runtime's own buffers.
        "memory_bytes": loaded.map(|m| m.files.iter().map(|f| f.bytes).sum::<usize>()),
        "generation": loaded.map(|m| m.generation),
        "aliases": entry.aliases_of(version),
    })
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    Manifest::from_bytes(&path, &std::fs::read(&path).ok()?).ok()
}

/// GET /models/{name}/versions/{version}: the manifest, the files with their hashes, and the
/// validation and warm-up report of its load. `{version}` may be an alias.
#[utoipa::path(get, path = "/models/{name}/versions/{version}", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "`{name, version, state, manifest, files, validation}`", body = Object),
    (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
))]
pub async fn version_details(
    _admin: Admin,
    path: web::Path<VersionPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let (entry, version, slot) = find(&versions, &path)?;
    let mut body = summary(&entry, &version, &slot);
    body["name"] = json!(path.name);
    body["manifest"] = json!(read_manifest(&slot.dir));
    body["validation"] = match slot.model.as_deref() {
        Some(model) => validation(model),
        None => json!({ "passed": slot.failure.is_none().then_some(false), "failure": slot.failure }),
    };
    body["files"] = match slot.model.as_deref() {
        Some(model) => json!(model.files),
        // Not loaded: hash the files now, off the async workers.
        None => {
            let paths = versions.paths(&path.name, &version);
            let files =
                web::block(move || crate::versions::fingerprint_files(&paths)).await.map_err(anyhow::Error::from)?;
            match files {
                Ok((fingerprint, files)) => {
                    body["fingerprint"] = json!(fingerprint);
                    json!(files)
                }
                Err(e) => json!({ "error": e.to_string() }),
            }
        }
    };
    Ok(HttpResponse::Ok().json(body))
}

fn validation(model: &LoadedModel) -> Value {
    json!({
        "passed": true,
        "checks": [
            "every file read and hashed",
            "manifest valid, weights load on the runtime it names",
            "class mapping within num_outputs",
            "text encoder embeds every label, finite, of the declared width",
            "warm-up: synthetic images give finite outputs of width num_outputs on every inference slot",
        ],
        "num_outputs": model.manifest.num_outputs,
        "classes": model.classes.len(),
        "input_size": model.manifest.input_size,
        "format": model.backend(),
        "load_ms": model.load_ms,
        "alone_pays": model.alone_pays,
    })
}

/// GET /models/{name}/versions/{version}/stats: requests, errors, cache hits, latency quantiles
/// since load and over the last 5 minutes, label distribution and mean confidence.
#[utoipa::path(get, path = "/models/{name}/versions/{version}/stats", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "Statistics since the version's load", body = crate::runtime::StatsReport),
    (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
    (status = 409, description = "The version is not loaded", body = crate::error::ErrorBody),
))]
pub async fn version_stats(
    _admin: Admin,
    path: web::Path<VersionPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let (_, version, slot) = find(&versions, &path)?;
    let model = slot.model.clone().ok_or_else(|| ResolveError::NotReady {
        name: path.name.clone(),
        version: version.clone(),
        state: slot.shown_state(),
    })?;
    let mut body = json!(model.stats.report());
    body["name"] = json!(path.name);
    body["version"] = json!(version);
    body["loaded_at_unix"] = json!(model.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    Ok(HttpResponse::Ok().json(body))
}

/// The model entry, the version an alias resolves to, and its slot.
pub(super) fn find(versions: &ModelTable, path: &VersionPath) -> Result<(ModelEntry, String, VersionEntry), ApiError> {
    let entry = versions.snapshot().model(&path.name)?.clone();
    let version = entry.version_of(&path.version).to_string();
    let slot = entry
        .versions
        .get(&version)
        .cloned()
        .ok_or_else(|| ResolveError::UnknownVersion { name: path.name.clone(), target: path.version.clone() })?;
    Ok((entry, version, slot))
}
