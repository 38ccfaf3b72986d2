//! Versions in and out as `.tar.gz` bundles. Upload (off unless `--enable-model-upload`): the body
//! is streamed to disk under `--max-bundle-mb`, hashed as it arrives and checked against the
//! declared `X-Bundle-SHA256`, unpacked entry by entry (src/versions/bundle.rs refuses paths, links,
//! devices, too many entries or bytes, bombs), loaded and warmed up in a child process with time and
//! memory limits (src/validate.rs), and only then renamed into the repository as `available`.
//! Nothing is ever fetched from a URL. Download: the version's deterministic bundle, with its
//! SHA-256 as the `ETag`. Management endpoints: see `admin`.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::target::VersionPath;
use crate::config::Config;
use crate::domain::valid_name;
use crate::error::ApiError;
use crate::routes::admin::Admin;
use crate::runtime::{LoadError, Manifest, MANIFEST_FILE};
use crate::validate::ValidationLimits;
use crate::versions::{bundle, ModelTable};

const DIGEST_HEADER: &str = "X-Bundle-SHA256";
/// Bundles are packed once, by one writer (a second would race it to the same file), each under a
/// temporary name of its own.
static PACKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
static PACKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The new version's name (default: the bundle manifest's `version`)
    version: Option<String>,
}

/// What the bundle routes read of the configuration.
pub struct BundleSettings {
    /// `--enable-model-upload`.
    pub upload: bool,
    pub max_bytes: u64,
    /// How long an upload's body may take to arrive (20 x --request-timeout-seconds).
    pub upload_timeout: std::time::Duration,
    /// The sandboxed check an uploaded version passes before it lands.
    pub validation: ValidationLimits,
    /// Where downloads' bundles are packed and kept.
    pub packed: PathBuf,
}

impl BundleSettings {
    pub fn of(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            upload: config.enable_model_upload,
            max_bytes: config.max_bundle_mb << 20,
            upload_timeout: std::time::Duration::from_secs(config.request_timeout_seconds.saturating_mul(20)),
            validation: config.validation_limits()?,
            packed: config.data_dir.join("bundles"),
        })
    }
}

/// Removes an upload's folder however the request ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// POST /models/{name}/versions: a new version from a `.tar.gz` bundle (manifest.json, weights,
/// class_mapping.json and the text encoder's files at its top level) and its SHA-256.
#[utoipa::path(post, path = "/models/{name}/versions", tag = "models", params(("name" = String, Path), UploadQuery,
    ("X-Bundle-SHA256" = String, Header, description = "SHA-256 of the body, hex")),
    request_body(content = Vec<u8>, content_type = "application/gzip"), security(("admin_token" = [])), responses(
    (status = 201, description = "The new version, `available` (not loaded); Location names it", body = Uploaded),
    (status = 400, description = "No or malformed X-Bundle-SHA256, a body that does not match it, a bad name", body = crate::error::ErrorBody),
    (status = 403, description = "Upload is off (--enable-model-upload), or not an admin caller", body = crate::error::ErrorBody),
    (status = 409, description = "The version exists already", body = crate::error::ErrorBody),
    (status = 413, description = "Over --max-bundle-mb", body = crate::error::ErrorBody),
    (status = 422, description = "Not a safe bundle, or not a model (the file and the reason; crashes and hangs of the validator included)", body = crate::error::ErrorBody),
))]
pub async fn upload(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<UploadQuery>,
    mut payload: web::Payload,
    versions: web::Data<ModelTable>,
    settings: web::Data<BundleSettings>,
) -> Result<HttpResponse, ApiError> {
    if !settings.upload {
        return Err(ApiError::Forbidden("model upload is off: start the server with --enable-model-upload".into()));
    }
    let declared = req
        .headers()
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ApiError::Validation(format!("{DIGEST_HEADER}: the bundle's SHA-256 in hex is required")))?;
    let folder = versions.upload_folder(&path)?;
    let _cleanup = Cleanup(folder.clone());
    let max_bytes = settings.max_bytes;
    let bundle_path = folder.join("bundle.tar.gz");
    let mut file = std::fs::File::create(&bundle_path).map_err(anyhow::Error::from)?;
    let (mut hasher, mut received) = (Sha256::new(), 0u64);
    let limit = settings.upload_timeout;
    let read = tokio::time::timeout(limit, async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::Validation(format!("cannot read the body: {e}")))?;
            received += chunk.len() as u64;
            if received > max_bytes {
                return Err(ApiError::PayloadTooLarge { limit: max_bytes as usize });
            }
            hasher.update(&chunk);
            // A chunk is at most a few tens of KB: written where it arrives.
            file.write_all(&chunk).map_err(anyhow::Error::from)?;
        }
        Ok(())
    });
    read.await.map_err(|_| ApiError::RequestTimeout(limit.as_secs()))??;
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if actual != declared {
        return Err(ApiError::Validation(format!(
            "the body's SHA-256 is {actual}, not the declared {declared}: refused"
        )));
    }

    let files = folder.join("files");
    let (unpack_into, bundle) = (files.clone(), bundle_path.clone());
    let unpacked = web::block(move || {
        std::fs::create_dir(&unpack_into).map_err(|e| e.to_string())?;
        bundle::unpack(&bundle, received, &unpack_into, max_bytes)
    })
    .await
    .map_err(anyhow::Error::from)?;
    let unpacked = unpacked.map_err(|reason| ApiError::InvalidModel(LoadError::new(Path::new("bundle"), reason)))?;
    let version = match &query.version {
        Some(version) => version.clone(),
        None => manifest_version(&files)?,
    };
    if !valid_name(&version) {
        return Err(ApiError::Validation(format!("{version:?} cannot be a version name")));
    }
    let limits = settings.validation.clone();
    let checked = files.clone();
    let validated = web::block(move || crate::validate::in_child(&checked, &limits))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|mut e| {
            // Name the file as the bundle does, not where it was unpacked.
            let inside = e.file.strip_prefix(&files).ok().filter(|f| !f.as_os_str().is_empty());
            e.file = inside.map_or_else(|| PathBuf::from("bundle"), Path::to_path_buf);
            ApiError::InvalidModel(e)
        })?;
    let fingerprint = validated.fingerprint;
    versions.add_uploaded(&path, &version, &folder.join("files"), fingerprint, &admin.by)?;
    Ok(HttpResponse::Created().insert_header((header::LOCATION, format!("/models/{path}/versions/{version}"))).json(
        Uploaded {
            name: path.into_inner(),
            version,
            state: "available",
            fingerprint,
            bytes: unpacked,
            validation: validated,
        },
    ))
}

/// A bundle taken in: the version it became and what its sandboxed check found.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    name: String,
    version: String,
    /// Always `available`: on disk and checked, not loaded (`POST .../load` loads it).
    state: &'static str,
    /// SHA-256 over the version's files, hex
    #[schema(value_type = String)]
    fingerprint: crate::runtime::Fingerprint,
    /// The unpacked files' bytes.
    bytes: u64,
    validation: crate::validate::Validated,
}

fn manifest_version(files: &Path) -> Result<String, ApiError> {
    let path = files.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|_| {
        ApiError::InvalidModel(LoadError::new(Path::new(MANIFEST_FILE), "the bundle has no manifest.json"))
    })?;
    let manifest = Manifest::from_bytes(Path::new(MANIFEST_FILE), &bytes).map_err(ApiError::InvalidModel)?;
    Ok(manifest.version)
}

/// GET /models/{name}/versions/{version}/download: the version as a `.tar.gz` bundle (what upload
/// takes), streamed, with its SHA-256 as `ETag` and `X-Bundle-SHA256`.
#[utoipa::path(get, path = "/models/{name}/versions/{version}/download", tag = "models", params(VersionPath), security(("admin_token" = [])), responses(
    (status = 200, description = "The bundle (application/gzip)", body = Vec<u8>, content_type = "application/gzip"),
    (status = 304, description = "If-None-Match names this bundle"),
    (status = 404, description = "No such model or version", body = crate::error::ErrorBody),
))]
pub async fn download(
    _admin: Admin,
    req: HttpRequest,
    path: web::Path<VersionPath>,
    versions: web::Data<ModelTable>,
    settings: web::Data<BundleSettings>,
) -> Result<HttpResponse, ApiError> {
    let (_, version, slot) = super::models::find(&versions, &path)?;
    // Versions are immutable: their bundle is made once and kept.
    let bundle = settings.packed.join(&path.name).join(format!("{version}.tar.gz"));
    let (dir, out) = (slot.dir.clone(), bundle.clone());
    let sha = web::block(move || -> std::io::Result<String> {
        let sidecar = out.with_extension("sha256");
        if let (true, Ok(sha)) = (out.is_file(), std::fs::read_to_string(&sidecar)) {
            return Ok(sha.trim().to_string());
        }
        // One writer: concurrent first downloads wait for it and then take its bundle.
        let _writer = PACKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (true, Ok(sha)) = (out.is_file(), std::fs::read_to_string(&sidecar)) {
            return Ok(sha.trim().to_string());
        }
        std::fs::create_dir_all(out.parent().expect("a folder"))?;
        let n = PACKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = out.with_extension(format!("tmp-{}-{n}", std::process::id()));
        let sha = bundle::pack(&dir, &tmp)?;
        // The digest first: a reader that finds the bundle finds its whole digest beside it.
        std::fs::write(&sidecar, &sha)?;
        std::fs::rename(&tmp, &out)?;
        Ok(sha)
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(anyhow::Error::from)?;
    let etag = format!("\"{sha}\"");
    if req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok(HttpResponse::NotModified().insert_header((header::ETAG, etag)).finish());
    }
    let length = std::fs::metadata(&bundle).map_err(anyhow::Error::from)?.len();
    let file = std::fs::File::open(&bundle).map_err(anyhow::Error::from)?;
    // Read in 256 KB pieces on the blocking pool, one at a time as the client takes them.
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = web::block(move || {
            let mut chunk = vec![0u8; 256 * 1024];
            let n = file.read(&mut chunk)?;
            chunk.truncate(n);
            Ok::<_, std::io::Error>((chunk, file))
        })
        .await;
        match read {
            Ok(Ok((chunk, _))) if chunk.is_empty() => None,
            Ok(Ok((chunk, file))) => Some((Ok::<_, std::io::Error>(web::Bytes::from(chunk)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/gzip")
        .insert_header((header::ETAG, etag))
        .insert_header((DIGEST_HEADER, sha))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}-{version}.tar.gz\"", path.name),
        ))
        .body(actix_web::body::SizedStream::new(length, chunks)))
}
