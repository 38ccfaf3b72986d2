//! GET /docs/: Swagger UI on /openapi.json, from files embedded in the binary by utoipa-swagger-ui
//! (no CDN, so it works offline).
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// Swagger UI's settings, written into its `swagger-initializer.js`: our document; the base layout
/// (no top bar inviting to load other documents); and no online validator (Swagger UI may send the
/// document to validator.swagger.io; the page must work offline and send nothing away).
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> =
    LazyLock::new(|| Arc::new(Config::new(["/openapi.json"]).use_base_layout().validator_url("none")));

// The page lives at /docs/, where its relative links (./swagger-ui.css) resolve.
/// Redirects to the Swagger UI page, /docs/.
#[utoipa::path(get, path = "/docs", tag = "docs", responses((status = 308, description = "Redirect to /docs/")))]
pub async fn docs() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/docs/")).finish()
}

/// As the page at `/` (routes/page.rs): this server only, and never in a frame, so that another
/// site cannot frame it and click a token-less server's admin buttons. Swagger UI sets inline
/// styles and draws its icons from `data:` URLs.
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Swagger UI on /openapi.json (this page), served from the binary: it works offline.
#[utoipa::path(get, path = "/docs/", tag = "docs", responses((status = 200, description = "Swagger UI page", content_type = "text/html")))]
pub async fn docs_page(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("no docs file {file:?}; the page is GET /docs/"));
    // Only a format error of our configuration can fail here: a 500 is right.
    let served = utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("Swagger UI: {e}")))?;
    let file = served.ok_or_else(not_found)?;
    // The files are static in the binary (only swagger-initializer.js is written per request): no copy.
    let body = match file.bytes {
        Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        Cow::Owned(bytes) => Bytes::from(bytes),
    };
    Ok(HttpResponse::Ok()
        .content_type(file.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_POLICY))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body))
}
