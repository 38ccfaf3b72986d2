//! One file per endpoint.
pub mod admin;
mod bundles;
mod classes;
mod compare;
mod deploy;
mod docs;
mod door;
mod endpoint;
pub mod extract;
pub mod grpc;
mod health;
mod history;
mod metrics;
mod models;
pub mod openapi;
mod openapi_limits;
mod page;
mod predict;
mod predict_batch;
mod reload;
mod routing;
pub mod schemas;
mod system_status;
pub mod target;
pub mod v2;

pub use bundles::{download, upload, BundleSettings};
pub use classes::classes;
pub use compare::{compare, compare_result, CompareSettings};
pub use deploy::{deployments, load, remove_alias, rollback, set_alias, unload};
pub use docs::{docs, docs_page};
pub use door::at_the_door;
pub use endpoint::Endpoint;
pub use health::health;
pub use history::{inference_history, stats};
pub use metrics::metrics;
pub use models::{list_models, version_details, version_stats};
pub use openapi::openapi_json;
pub use page::{page, script, style};
pub use predict::predict;
pub use predict_batch::predict_batch;
pub use reload::reload_model;
pub use routing::{delete_routing, get_routing, put_routing};
pub use system_status::{system_status, StatusSettings};

use serde::Serialize;

use crate::runtime::LoadedModel;

/// Which model answered: every response that depends on the model names it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelRef<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// SHA-256 over the model's files (their names and hashes): the same files, the same value.
    #[schema(value_type = String)]
    pub fingerprint: crate::runtime::Fingerprint,
    /// The number of model loads in this process when this one was loaded (display only).
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
