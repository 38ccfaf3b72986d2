//! What one prediction comes to: the answer with where it came from and how long each stage took,
//! or why it failed. `error.rs` says what each failure means over HTTP; nothing here names a status.
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::answer::Answer;
use crate::preprocess::ImageError;
use crate::runtime::{InferError, LoadedModel};

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
    /// Looking the answer up in the shared cache (Redis); null without one or on a local hit.
    pub cache: Option<f64>,
    pub preprocess: Option<f64>,
    pub queue: Option<f64>,
    pub inference: Option<f64>,
    /// Tokenizing and encoding the text; null when there is none or it came from the text cache.
    pub text: Option<f64>,
    /// The whole request, upload included: set by the route.
    pub total: f64,
}

pub struct Outcome {
    pub model: Arc<LoadedModel>,
    pub answer: Arc<Answer>,
    /// Answered without a forward pass of its own (`cache` says how).
    pub cache_hit: bool,
    pub cache: CacheLevel,
    pub timings: Timings,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheLevel {
    /// Computed for this request.
    Miss,
    /// This server's own cache.
    Local,
    /// The cache the replicas share (Redis).
    Shared,
    /// An identical request was being computed: this one waited for its answer.
    Joined,
}

impl CacheLevel {
    pub(super) fn outcome(self, model: Arc<LoadedModel>, answer: Arc<Answer>, timings: Timings) -> Outcome {
        Outcome { model, answer, cache_hit: self != CacheLevel::Miss, cache: self, timings }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Why a prediction failed; `error.rs` says what each means over HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The text cannot be tokenized.
    #[error("`text` {0}")]
    Text(String),
    #[error("no answer within the deadline of {0} ms; the request was dropped, retry or raise --deadline-ms")]
    Deadline(u64),
    /// The client hung up before the answer was ready: the work was dropped.
    #[error("the client closed the connection before the answer was ready")]
    ClientClosed,
    /// A task of ours failed (a panic on the blocking pool): the join error is the cause.
    #[error("the {what} thread failed")]
    Internal {
        what: &'static str,
        #[source]
        source: Arc<tokio::task::JoinError>,
    },
}

pub(super) fn thread_failed(what: &'static str) -> impl Fn(tokio::task::JoinError) -> PredictError {
    move |e| PredictError::Internal { what, source: Arc::new(e) }
}
