//! The prediction service: everything one prediction does between a parsed request and its answer,
//! whichever protocol asked (REST, batch, Open Inference v2 over HTTP or gRPC).
//!
//! - `predictor.rs`: the service's handle and its one entry, `predict` (and `many.rs`: the items of
//!   one request, a few at once), with the deadline and every side effect;
//! - `pipeline.rs`: caches, decode and resize, the inference thread, the text, the combination;
//! - `outcome.rs`, `answer.rs`: what comes back (and its encoding in the shared cache);
//! - `record.rs`: the history's row of a prediction; `mirrors.rs` and `shadow.rs`: shadow traffic;
//! - `compare.rs`: versions compared on labelled photos, through the same pipeline.
mod answer;
pub mod compare;
mod many;
mod mirrors;
mod outcome;
mod pipeline;
mod predictor;
mod record;
mod shadow;

pub use answer::{Answer, TextMatch};
pub use many::Items;
pub use mirrors::{MirrorCounts, Mirrors};
pub use outcome::{CacheLevel, Outcome, PredictError, Timings};
pub use predictor::{Predictor, PredictorSettings, TextEncoding};
pub use record::{sha256_hex, Asked, Call, Recorder};
