//! One file per endpoint.
mod classes;
mod door;
pub mod extract;
mod health;
mod metrics;
pub mod openapi;
mod predict;
mod predict_batch;
mod reload;
mod system_status;
pub mod v2;

pub use classes::classes;
pub use door::at_the_door;
pub use health::health;
pub use metrics::metrics;
pub use openapi::{docs, docs_page, openapi_json};
pub use predict::predict;
pub use predict_batch::predict_batch;
pub use reload::reload_model;
pub use system_status::system_status;

use serde::Serialize;

use crate::model::LoadedModel;

/// Which model answered: every response that depends on the model names it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelRef<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// SHA-256 over the model's files (their names and hashes): the same files, the same value.
    #[schema(value_type = String)]
    pub fingerprint: crate::model::Fingerprint,
    /// 1 at start, one more per successful reload (display only).
    pub generation: u64,
}

impl<'a> From<&'a LoadedModel> for ModelRef<'a> {
    fn from(model: &'a LoadedModel) -> Self {
        Self {
            name: &model.id.name,
            version: &model.id.version,
            fingerprint: model.id.fingerprint,
            generation: model.generation,
        }
    }
}
