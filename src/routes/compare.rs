//! POST /models/{name}/compare: versions compared on labelled photos (sent as base64, or a set on
//! the server), at once for a few photos, as a job (`202`, then `GET` its result) for more.
//! Management endpoints: see `admin`.
use std::path::Path;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::extract::read_json_body;
use crate::config::PredictLimits;
use crate::domain::valid_name;
use crate::domain::{base64_body_limit, decode_base64_image, PredictUpload};
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::runtime::LoadedModel;
use crate::service::compare::{CompareJobs, CompareReport, Sample};
use crate::service::Predictor;

/// Above this many photos, a comparison runs as a job.
const AT_ONCE: usize = 16;
const MAX_SAMPLES: usize = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareBody {
    /// Versions or aliases (default: every ready version of the model)
    versions: Option<Vec<String>>,
    /// Labelled photos, the image as base64
    samples: Option<Vec<LabelledImage>>,
    /// Or a set on the server: a folder of `--compare-sets` with a labels.json ({file: label})
    set: Option<String>,
    /// For top-k accuracy (default 5)
    top_k: Option<usize>,
    /// Run as a job even when small
    #[serde(rename = "async", default)]
    run_async: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Done,
}

/// A comparison started as a job.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobStarted {
    job: u64,
    status: JobStatus,
    /// Where its result will be: `GET` it.
    result: String,
}

/// A comparison job: running, or done with its report.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobState<'a> {
    job: u64,
    status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a CompareReport>,
}

/// What a comparison reads of the settings: the folder of named photo sets it may name
/// (`--compare-sets`) and the prediction routes' limits, which its photos keep.
pub struct CompareSettings {
    pub sets: std::path::PathBuf,
    pub limits: PredictLimits,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelledImage {
    image: String,
    label: String,
}

#[utoipa::path(post, path = "/models/{name}/compare", tag = "models", params(("name" = String, Path)), request_body = CompareBody, security(("admin_token" = [])), responses(
    (status = 200, description = "The comparison", body = CompareReport),
    (status = 202, description = "Started as a job; `Location` names its result", body = JobStarted),
    (status = 400, description = "No photos, a label the model does not know, a bad set name or body", body = crate::error::ErrorBody),
    (status = 404, description = "No such model, version or set", body = crate::error::ErrorBody),
    (status = 409, description = "A version is not loaded", body = crate::error::ErrorBody),
))]
pub async fn compare(
    _admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    predictor: web::Data<Predictor>,
    settings: web::Data<CompareSettings>,
    jobs: web::Data<CompareJobs>,
) -> Result<HttpResponse, ApiError> {
    let limits = &settings.limits;
    let mut memory = predictor.admission().reservation();
    let limit = base64_body_limit(limits.max_batch_upload_bytes);
    let body = read_json_body(req.headers(), payload, limit, limits.upload, &mut memory).await?;
    let body: CompareBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::Validation(format!("not a comparison request: {e}")))?;
    let versions = versions_of(&predictor, &path, body.versions.as_deref())?;
    let samples = match (body.samples, body.set) {
        (Some(samples), None) => inline(samples, limits)?,
        (None, Some(set)) => {
            let root = settings.sets.clone();
            let max_bytes = limits.max_upload_bytes;
            web::block(move || from_set(&root, &set, max_bytes)).await.map_err(anyhow::Error::from)??
        }
        _ => return Err(ApiError::Validation("give either `samples` or `set`".into())),
    };
    if samples.is_empty() || samples.len() > MAX_SAMPLES {
        return Err(ApiError::Validation(format!("a comparison takes 1 to {MAX_SAMPLES} photos")));
    }
    let classes = &versions[0].classes;
    if let Some(unknown) = samples.iter().find(|s| !classes.entries().iter().any(|c| c.label == s.label)) {
        return Err(ApiError::Validation(format!(
            "{:?} ({}) is not a label of this model (GET /classes)",
            unknown.label, unknown.name
        )));
    }
    let top_k = body.top_k.unwrap_or(5).clamp(1, limits.max_top_k);
    if !body.run_async && samples.len() <= AT_ONCE {
        return Ok(HttpResponse::Ok().json(predictor.compare(&versions, &samples, top_k).await));
    }
    // The photos stay in memory while the job runs: held from the budget until it ends.
    let bytes: u64 = samples.iter().map(|s| s.upload.image.bytes().len() as u64).sum();
    let held = predictor.admission().reserve(bytes)?;
    let id = jobs.start();
    let (predictor, jobs) = (predictor.into_inner(), jobs.into_inner());
    tokio::spawn(async move {
        let report = predictor.compare(&versions, &samples, top_k).await;
        jobs.finish(id, report);
        drop(held);
    });
    let location = format!("/models/{path}/compare/{id}");
    Ok(HttpResponse::Accepted().insert_header(("Location", location.clone())).json(JobStarted {
        job: id,
        status: JobStatus::Running,
        result: location,
    }))
}

/// GET /models/{name}/compare/{job}: `{status: "running"}`, or `{status: "done", result}`.
#[utoipa::path(get, path = "/models/{name}/compare/{job}", tag = "models", params(("name" = String, Path), ("job" = u64, Path)), security(("admin_token" = [])), responses(
    (status = 200, description = "Running, or done with its result", body = JobState),
    (status = 404, description = "No such job (only the latest 16 are kept)", body = crate::error::ErrorBody),
))]
pub async fn compare_result(
    _admin: Admin,
    path: web::Path<(String, u64)>,
    jobs: web::Data<CompareJobs>,
) -> Result<HttpResponse, ApiError> {
    match jobs.get(path.1) {
        None => Err(ApiError::NotFound(format!("no comparison job {}", path.1))),
        Some(None) => Ok(HttpResponse::Ok().json(JobState { job: path.1, status: JobStatus::Running, result: None })),
        Some(Some(report)) => {
            Ok(HttpResponse::Ok().json(JobState { job: path.1, status: JobStatus::Done, result: Some(&report) }))
        }
    }
}

fn versions_of(predictor: &Predictor, name: &str, asked: Option<&[String]>) -> Result<Vec<Arc<LoadedModel>>, ApiError> {
    let targets: Vec<String> = match asked {
        Some(targets) => targets.to_vec(),
        None => {
            let snapshot = predictor.table().snapshot();
            snapshot.model(name)?.versions.iter().filter(|(_, v)| v.model.is_some()).map(|(v, _)| v.clone()).collect()
        }
    };
    if targets.is_empty() || targets.len() > 8 {
        return Err(ApiError::Validation("compare 1 to 8 versions".into()));
    }
    let mut versions: Vec<Arc<LoadedModel>> = Vec::new();
    for target in &targets {
        let model = predictor.resolve(Some(name), Some(target))?;
        if !versions.iter().any(|v| v.id.version == model.id.version) {
            versions.push(model);
        }
    }
    Ok(versions)
}

fn inline(samples: Vec<LabelledImage>, limits: &PredictLimits) -> Result<Vec<Sample>, ApiError> {
    samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let bytes = decode_base64_image(&s.image, limits.max_upload_bytes)?;
            let upload = PredictUpload::parse(bytes, None, limits.max_text_chars)?;
            Ok(Sample { name: format!("samples[{i}]"), upload, label: s.label })
        })
        .collect()
}

/// A set on the server: `<root>/<set>/labels.json` maps file names in that folder to labels.
fn from_set(root: &Path, set: &str, max_bytes: usize) -> Result<Vec<Sample>, ApiError> {
    if !valid_name(set) {
        return Err(ApiError::Validation(format!("{set:?} is not a set name")));
    }
    let folder = root.join(set);
    let labels: std::collections::BTreeMap<String, String> = std::fs::read(folder.join("labels.json"))
        .map_err(|_| ApiError::NotFound(format!("no set {set:?} (a folder of --compare-sets with a labels.json)")))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Validation(format!("{set}/labels.json: {e}")))
        })?;
    labels
        .into_iter()
        .map(|(file, label)| {
            if !valid_name(&file) {
                return Err(ApiError::Validation(format!("{set}/labels.json names {file:?}, not a file of the set")));
            }
            let bytes =
                std::fs::read(folder.join(&file)).map_err(|e| ApiError::Validation(format!("{set}/{file}: {e}")))?;
            if bytes.len() > max_bytes {
                return Err(ApiError::Validation(format!("{set}/{file} is over --max-upload-bytes")));
            }
            let upload = PredictUpload::parse(bytes.into(), None, usize::MAX)?;
            Ok(Sample { name: file, upload, label })
        })
        .collect()
}
