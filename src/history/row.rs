//! What the history keeps of a prediction, and how it is asked for again.
use serde::{Deserialize, Serialize};

/// One prediction as it is written: never the image, the text only when `--history-store-text`.
#[derive(Debug, Clone)]
pub struct Row {
    pub at_us: i64,
    pub request_id: String,
    pub model: String,
    pub version: String,
    /// The route pattern, e.g. `/predict` or `/v2/models/{name}/infer`.
    pub endpoint: String,
    /// pinned, sticky or weighted: why this version answered.
    pub routing: &'static str,
    pub role: Role,
    /// The item's place in a batch or a v2 request.
    pub item: Option<i64>,
    pub input_sha256: String,
    pub text_length: Option<i64>,
    pub text_sha256: Option<String>,
    pub text: Option<String>,
    pub label: Option<String>,
    pub confidence: Option<f64>,
    /// JSON: `[{label, probability}, ...]`, the five most probable classes.
    pub top_k: Option<String>,
    pub latency_ms: f64,
    pub cache_hit: bool,
    /// The HTTP status the prediction gave (a shadow's: what it would have given).
    pub status: i64,
    pub error: Option<String>,
    pub sticky_key_sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The answer a client got.
    Primary,
    /// A mirrored run on the shadow version; no client saw it.
    Shadow,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Shadow => "shadow",
        }
    }
}

/// A row read back (`GET /inference/history`).
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredRow {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub at_us: i64,
    /// The server that answered (`--replica-name`).
    pub replica: String,
    pub request_id: String,
    pub model: String,
    pub version: String,
    pub endpoint: String,
    pub routing: String,
    pub role: String,
    pub item: Option<i64>,
    pub input_sha256: String,
    pub text_length: Option<i64>,
    pub text_sha256: Option<String>,
    pub text: Option<String>,
    pub label: Option<String>,
    pub confidence: Option<f64>,
    #[serde(skip)]
    pub top_k: Option<String>,
    pub latency_ms: f64,
    pub cache_hit: bool,
    pub status: i64,
    pub error: Option<String>,
    pub sticky_key_sha256: Option<String>,
}

/// What `GET /inference/history` filters on; every field optional.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub model: Option<String>,
    pub version: Option<String>,
    /// The top label
    pub label: Option<String>,
    /// primary or shadow
    pub role: Option<Role>,
    /// The HTTP status, e.g. 200 or 504
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<i64>,
    pub cache_hit: Option<bool>,
    pub replica: Option<String>,
    pub request_id: Option<String>,
    /// From this time on, in milliseconds since the Unix epoch
    #[param(minimum = 0)]
    pub since_ms: Option<i64>,
    /// Before this time, in milliseconds since the Unix epoch
    #[param(minimum = 0)]
    pub until_ms: Option<i64>,
    /// Rows per page, newest first (default 100, at most 1000)
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as it was given
    #[param(pattern = r"^[0-9]{1,18}_[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Where a page ends: the last row's time and id. Rows are ordered by (at_us, id) descending, and
/// ids are unique and never reused, so the next page starts exactly after it: no row is skipped or
/// shown twice, whatever is written meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_us: i64,
    pub id: i64,
}

impl Cursor {
    pub fn encode(self) -> String {
        format!("{}_{}", self.at_us, self.id)
    }

    /// Exactly what `encode` writes (the OpenAPI document's pattern says the same): digits only,
    /// at most 18 of them, so no sign and no overflow of an i64.
    pub fn parse(text: &str) -> Option<Self> {
        let (at, id) = text.split_once('_')?;
        let number = |part: &str| {
            (1..=18).contains(&part.len()).then_some(())?;
            part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
        };
        Some(Self { at_us: number(at)?, id: number(id)? })
    }
}

// What the store's aggregate queries give back, for `GET /stats` (stats.rs).

/// Counts of one (model, version, role) in the window.
#[derive(Debug, sqlx::FromRow)]
pub struct Group {
    pub model: String,
    pub version: String,
    pub role: String,
    pub requests: i64,
    pub errors: i64,
    pub client_errors: i64,
    pub cache_hits: i64,
    pub mean_confidence: Option<f64>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct Percentiles {
    pub model: String,
    pub version: String,
    pub role: String,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct LabelCount {
    pub model: String,
    pub version: String,
    pub role: String,
    pub label: String,
    pub count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_is_refused() {
        let cursor = Cursor { at_us: 1_764_000_000_000_000, id: 42 };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "a_1", "1_b", "1_2_3", "99999999999999999999_1", "-1_2", "+1_2", "1_"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
