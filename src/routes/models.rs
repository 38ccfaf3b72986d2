//! The model repository as the management API shows it: every model and version, loaded or only
//! on disk, a version's details, and its statistics. Management endpoints: see `admin`.
use std::path::Path;
use std::time::UNIX_EPOCH;

use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;

use serde::Serialize;

use super::target::VersionPath;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::runtime::{Fingerprint, LoadedModel, Manifest, ModelFile, ModelFormat, StatsReport, MANIFEST_FILE};
use crate::versions::{ModelEntry, ModelTable, ResolveError, VersionEntry};

/// GET /models: every model and version with its state, format, fingerprint, size, load time,
/// memory, aliases and share of the model's traffic over the last five minutes.
#[utoipa::path(get, path = "/models", tag = "models", security(("admin_token" = [])), responses(
    (status = 200, description = "Every model and its versions", body = ModelList),
    (status = 401, description = "Token configured and missing or wrong", body = crate::error::ErrorBody),
    (status = 403, description = "Not an admin caller", body = crate::error::ErrorBody),
))]
pub async fn list_models(_admin: Admin, versions: web::Data<ModelTable>) -> HttpResponse {
    let snapshot = versions.snapshot();
    let models = snapshot
        .models
        .iter()
        .map(|(name, entry)| {
            let recent =
                |slot: &VersionEntry| slot.model.as_ref().map_or(0, |m| m.stats.report().last_5_minutes.requests);
            let total: u64 = entry.versions.values().map(recent).sum();
            let versions = entry
                .versions
                .iter()
                .map(|(version, slot)| ListedVersion {
                    summary: summary(entry, version, slot),
                    traffic_share: (total > 0).then(|| recent(slot) as f64 / total as f64),
                })
                .collect();
            ListedModel {
                name: name.clone(),
                aliases: entry.aliases.clone(),
                serves_predict: *name == snapshot.default_model,
                versions,
            }
        })
        .collect();
    HttpResponse::Ok().json(ModelList { default_model: snapshot.default_model.clone(), models })
}

/// One version's line in the listing.
fn summary(entry: &ModelEntry, version: &str, slot: &VersionEntry) -> VersionSummary {
    let manifest = read_manifest(&slot.dir);
    let size_bytes: u64 = std::fs::read_dir(&slot.dir)
        .map(|files| files.filter_map(Result::ok).filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let loaded = slot.model.as_deref();
    VersionSummary {
        version: version.to_string(),
        state: slot.shown_state(),
        failure: slot.failure.clone(),
        format: manifest.as_ref().map(|m| m.format),
        input_size: manifest.as_ref().map(|m| m.input_size),
        fingerprint: slot.fingerprint,
        size_bytes,
        load_ms: loaded.map(|m| m.load_ms),
        loaded_at_unix: loaded.map(|m| m.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        // The weights' tensors are held as read: their files' size is the model's memory, give or
        // take the runtime's own buffers.
        memory_bytes: loaded.map(|m| m.files.iter().map(|f| f.bytes).sum::<usize>()),
        generation: loaded.map(|m| m.generation),
        aliases: entry.aliases_of(version).into_iter().map(str::to_string).collect(),
    }
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    Manifest::from_bytes(&path, &std::fs::read(&path).ok()?).ok()
}

/// GET /models/{name}/versions/{version}: the manifest, the files with their hashes, and the
/// validation and warm-up report of its load. `{version}` may be an alias.
#[utoipa::path(get, path = "/models/{name}/versions/{version}", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "The version's line in `GET /models`, its manifest, files and validation", body = VersionDetails),
    (status = 404, description = "No such model, version or alias", body = crate::error::ErrorBody),
))]
pub async fn version_details(
    _admin: Admin,
    path: web::Path<VersionPath>,
    versions: web::Data<ModelTable>,
) -> Result<HttpResponse, ApiError> {
    let (entry, version, slot) = find(&versions, &path)?;
    let mut summary = summary(&entry, &version, &slot);
    let validation = match slot.model.as_deref() {
        Some(model) => validation(model),
        // A failed load says false; a version never loaded in this process was not checked yet.
        None => LoadValidation {
            passed: slot.failure.is_some().then_some(false),
            failure: slot.failure.clone(),
            ..LoadValidation::default()
        },
    };
    let files = match slot.model.as_deref() {
        Some(model) => VersionFiles::Listed(model.files.clone()),
        // Not loaded: hash the files now, off the async workers.
        None => {
            let paths = versions.paths(&path.name, &version);
            let files =
                web::block(move || crate::versions::fingerprint_files(&paths)).await.map_err(anyhow::Error::from)?;
            match files {
                Ok((fingerprint, files)) => {
                    summary.fingerprint = Some(fingerprint);
                    VersionFiles::Listed(files)
                }
                Err(e) => VersionFiles::Unreadable { error: e.to_string() },
            }
        }
    };
    let manifest = read_manifest(&slot.dir);
    Ok(HttpResponse::Ok().json(VersionDetails { name: path.into_inner().name, summary, manifest, validation, files }))
}

fn validation(model: &LoadedModel) -> LoadValidation {
    LoadValidation {
        passed: Some(true),
        failure: None,
        checks: Some(&[
            "every file read and hashed",
            "manifest valid, weights load on the runtime it names",
            "class mapping within num_outputs",
            "text encoder embeds every label, finite, of the declared width",
            "warm-up: synthetic images give finite outputs of width num_outputs on every inference slot",
        ]),
        num_outputs: Some(model.manifest.num_outputs),
        classes: Some(model.classes.len()),
        input_size: Some(model.manifest.input_size),
        format: Some(model.backend()),
        load_ms: Some(model.load_ms),
        alone_pays: Some(model.alone_pays),
    }
}

/// GET /models/{name}/versions/{version}/stats: requests, errors, cache hits, latency quantiles
/// since load and over the last 5 minutes, label distribution and mean confidence.
#[utoipa::path(get, path = "/models/{name}/versions/{version}/stats", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "Statistics since the version's load", body = VersionReport),
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
    let loaded_at_unix = model.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let report = model.stats.report();
    Ok(HttpResponse::Ok().json(VersionReport { name: path.into_inner().name, version, loaded_at_unix, report }))
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

/// The answer of `GET /models`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// The model `POST /predict` serves.
    default_model: String,
    models: Vec<ListedModel>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ListedModel {
    name: String,
    /// Alias -> version.
    aliases: BTreeMap<String, String>,
    serves_predict: bool,
    versions: Vec<ListedVersion>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ListedVersion {
    #[serde(flatten)]
    summary: VersionSummary,
    /// Its share of the model's requests over the last five minutes (null: none at all).
    traffic_share: Option<f64>,
}

/// A version as the listing shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    version: String,
    /// available, loading, ready, failed, unloading
    state: &'static str,
    /// Why its last load failed.
    failure: Option<String>,
    format: Option<ModelFormat>,
    input_size: Option<u32>,
    /// SHA-256 over its files, hex (known once it has been loaded or hashed).
    #[schema(value_type = Option<String>)]
    fingerprint: Option<Fingerprint>,
    size_bytes: u64,
    load_ms: Option<f64>,
    loaded_at_unix: Option<u64>,
    /// The weights' files' size while loaded.
    memory_bytes: Option<usize>,
    generation: Option<u64>,
    aliases: Vec<String>,
}

/// The answer of `GET /models/{name}/versions/{version}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionDetails {
    name: String,
    #[serde(flatten)]
    summary: VersionSummary,
    /// Its manifest.json (null: missing or not valid).
    manifest: Option<Manifest>,
    validation: LoadValidation,
    files: VersionFiles,
}

/// What the load checked, or why it failed.
#[derive(Default, Serialize, utoipa::ToSchema)]
struct LoadValidation {
    /// true: loaded and warmed up; false: its load failed; null: not loaded in this process, so
    /// not checked yet.
    passed: Option<bool>,
    failure: Option<String>,
    /// What the load checked, and what it found (loaded versions only, as are the fields below).
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<&'static [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_outputs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alone_pays: Option<bool>,
}

/// The version's files with their sizes and hashes, or why they could not be read.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum VersionFiles {
    Listed(Vec<ModelFile>),
    Unreadable { error: String },
}

/// The answer of `GET /models/{name}/versions/{version}/stats`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionReport {
    name: String,
    version: String,
    loaded_at_unix: u64,
    #[serde(flatten)]
    report: StatsReport,
}
