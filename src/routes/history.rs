//! The inference history read back: rows with filters and keyset pagination, and statistics over
//! a time window, both from the store (so, with PostgreSQL, from every replica sharing it).
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::error::ApiError;
use crate::history::{now_ms, Cursor, Filter, DEFAULT_LIMIT, MAX_LIMIT};
use crate::routes::admin::Admin;
use crate::service::Predictor;

/// GET /inference/history: predictions newest first (primary and shadow), with the filters given;
/// `next_cursor` fetches the next page, with no row skipped or repeated.
#[utoipa::path(get, path = "/inference/history", tag = "history", params(Filter), security(("admin_token" = [])), responses(
    (status = 200, description = "A page of rows, newest first", body = crate::history::Page),
    (status = 400, description = "A filter, limit or cursor out of range", body = crate::error::ErrorBody),
    (status = 404, description = "The history is off (--history-url off)", body = crate::error::ErrorBody),
    (status = 503, description = "The history store cannot be read now", body = crate::error::ErrorBody),
))]
pub async fn inference_history(
    _admin: Admin,
    query: web::Query<Filter>,
    predictor: web::Data<Predictor>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner();
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!("`limit` must be 1 to {MAX_LIMIT}, not {limit}")));
    }
    let cursor = match filter.cursor.as_deref() {
        None => None,
        Some(text) => Some(Cursor::parse(text).ok_or_else(|| {
            ApiError::Validation("`cursor` is not a cursor this server gave (pass `next_cursor` as it is)".into())
        })?),
    };
    if filter.status.is_some_and(|s| !(100..=599).contains(&s)) {
        return Err(ApiError::Validation("`status` must be an HTTP status, 100 to 599".into()));
    }
    if filter.since_ms.is_some_and(|t| t < 0) || filter.until_ms.is_some_and(|t| t < 0) {
        return Err(ApiError::Validation("`since_ms` and `until_ms` are milliseconds since 1970, not negative".into()));
    }
    let page = predictor.history().page(filter, cursor, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The window's end, in milliseconds since the Unix epoch (default: now)
    #[param(minimum = 0)]
    until_ms: Option<i64>,
    /// The window's start (default: `window_seconds` before its end)
    #[param(minimum = 0)]
    since_ms: Option<i64>,
    /// The window's length when `since_ms` is not given (default 3600, at most a year)
    #[param(minimum = 1, maximum = 31_622_400)]
    window_seconds: Option<i64>,
}

const MAX_WINDOW_SECONDS: i64 = 366 * 86_400;

/// GET /stats: totals and per-version figures (requests, errors, cache hits, latency percentiles,
/// label distribution) over a time window, from every row in the store.
#[utoipa::path(get, path = "/stats", tag = "history", params(StatsQuery), security(("admin_token" = [])), responses(
    (status = 200, description = "Totals, versions and replicas over the window", body = crate::history::Stats),
    (status = 400, description = "A negative time, a `window_seconds` out of range, or an unknown parameter", body = crate::error::ErrorBody),
    (status = 404, description = "The history is off (--history-url off)", body = crate::error::ErrorBody),
    (status = 503, description = "The history store cannot be read now", body = crate::error::ErrorBody),
))]
pub async fn stats(
    _admin: Admin,
    query: web::Query<StatsQuery>,
    predictor: web::Data<Predictor>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window_seconds.unwrap_or(3600);
    if !(1..=MAX_WINDOW_SECONDS).contains(&window) {
        return Err(ApiError::Validation(format!("`window_seconds` must be 1 to {MAX_WINDOW_SECONDS}")));
    }
    if query.since_ms.is_some_and(|t| t < 0) || query.until_ms.is_some_and(|t| t < 0) {
        return Err(ApiError::Validation("`since_ms` and `until_ms` are milliseconds since 1970, not negative".into()));
    }
    // One past now: a row written this millisecond is inside the default window.
    let until = query.until_ms.unwrap_or(now_ms() as i64 + 1);
    // A window that ends before it starts holds no rows: its figures are all zero (a query, not
    // a mistake to refuse: the document cannot state the order of two parameters).
    let since = query.since_ms.unwrap_or(until.saturating_sub(window * 1000).max(0));
    let stats = predictor.history().stats(since, until).await?;
    Ok(HttpResponse::Ok().json(stats))
}
