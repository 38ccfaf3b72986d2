//! The page to try the classifier in a browser (`GET /`): HTML, CSS and a little JavaScript from
//! web/, built into the binary (no CDN, no build step). It calls this server only, and its
//! Content-Security-Policy says so to the browser.
use actix_web::http::header;
use actix_web::HttpResponse;

/// Same-origin only: scripts, styles, requests; images also from the page's own `blob:` previews
/// (and `data:`, for the empty icon that spares a request for /favicon.ico).
const POLICY: &str =
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; style-src 'self'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn file(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        // Small and built in: a new binary may change them, so browsers ask again after a minute.
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(body)
}

/// A page to try the classifier: pick, take, drop or paste a photo, optionally add a text, see the
/// top answers as a bar chart; with several versions loaded, pick one or compare two.
#[utoipa::path(get, path = "/", tag = "page", responses((status = 200, description = "The try-it page", content_type = "text/html")))]
pub async fn page() -> HttpResponse {
    file("text/html; charset=utf-8", include_str!("../../web/index.html"))
}

/// The page's script.
#[utoipa::path(get, path = "/app.js", tag = "page", responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
pub async fn script() -> HttpResponse {
    file("text/javascript; charset=utf-8", include_str!("../../web/app.js"))
}

/// The page's style sheet.
#[utoipa::path(get, path = "/app.css", tag = "page", responses((status = 200, description = "CSS", content_type = "text/css")))]
pub async fn style() -> HttpResponse {
    file("text/css; charset=utf-8", include_str!("../../web/app.css"))
}
