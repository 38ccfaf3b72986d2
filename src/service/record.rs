//! What the history records of each prediction: the request (`Call`, filled in by the route),
//! and the row built from it and the outcome, for a client's prediction and for a shadow run.
use std::time::Duration;

use super::outcome::{ms, Outcome, PredictError};
use crate::cache::InputKey;
use crate::domain::PredictUpload;
use crate::history::{History, Role, Row};
use crate::runtime::LoadedModel;
use crate::traffic::Route;

/// Who asked for a prediction, as the history records it; the route fills it in.
#[derive(Debug, Clone)]
pub struct Call {
    pub request_id: String,
    /// The route pattern, e.g. `/predict`.
    pub endpoint: String,
    pub route: Route,
    /// SHA-256 (hex) of the sticky key that chose the version, never the key itself.
    pub sticky_key_sha256: Option<String>,
    /// The item's place in a batch or a v2 request.
    pub item: Option<usize>,
}

/// Where predictions are recorded, and the status a failure answers with (HTTP's business,
/// handed in by the start-up so that this layer knows nothing of HTTP).
pub struct Recorder {
    pub history: History,
    pub status_of: StatusOf,
}

/// A failed prediction's HTTP status (error.rs's `Statuses::of_prediction`).
pub type StatusOf = Box<dyn Fn(&PredictError) -> u16 + Send + Sync>;

/// One prediction's input and who asked for it.
pub struct Asked<'a> {
    pub upload: &'a PredictUpload,
    pub image_sha256: &'a InputKey,
    pub call: &'a Call,
}

/// What the history keeps of a text or a sticky key instead of the value itself.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

impl Recorder {
    /// The history's row for one prediction (primary or shadow): never waits, never the image, the
    /// text only when `--history-store-text`.
    pub fn remember(
        &self,
        model: &LoadedModel,
        asked: &Asked<'_>,
        role: Role,
        outcome: Result<&Outcome, &PredictError>,
        latency: Duration,
    ) {
        let (history, call) = (&self.history, asked.call);
        if !history.is_on() {
            return;
        }
        let text = asked.upload.text.as_ref().map(|t| t.as_str());
        let best = outcome.ok().map(|done| done.answer.combined.best());
        let top_k = outcome.ok().and_then(|done| serde_json::to_string(done.answer.combined.top(5)).ok());
        history.record(Row {
            at_us: crate::history::now_us(),
            request_id: call.request_id.clone(),
            model: model.id.name.clone(),
            version: model.id.version.clone(),
            endpoint: call.endpoint.clone(),
            routing: if role == Role::Shadow { "shadow" } else { call.route.as_str() },
            role,
            item: call.item.map(|i| i as i64),
            input_sha256: hex::encode(asked.image_sha256),
            text_length: text.map(|t| t.chars().count() as i64),
            text_sha256: text.map(|t| sha256_hex(t.as_bytes())),
            text: text.filter(|_| history.stores_text()).map(str::to_string),
            label: best.map(|b| b.label.clone()),
            confidence: best.map(|b| f64::from(b.probability)),
            top_k,
            latency_ms: ms(latency),
            cache_hit: outcome.is_ok_and(|done| done.cache_hit),
            status: outcome.map_or_else(|e| i64::from((self.status_of)(e)), |_| 200),
            error: outcome.err().map(ToString::to_string),
            sticky_key_sha256: call.sticky_key_sha256.clone(),
        });
    }
}
