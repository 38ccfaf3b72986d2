//! The versions control plane: the repository of versions on disk, the table of loaded ones and
//! their aliases, loading, unloading, promotion and rollback, the drop-in folder's reloads,
//! bundles, the saved state and the deployment log. It loads models through `runtime` and routes
//! requests by `traffic`'s policy.
mod audit;
pub mod bundle;
mod dropin;
mod manage;
mod repository;
mod restore;
mod state;
mod table;

pub use audit::{AuditSink, Deployment, KEPT as DEPLOYMENTS_KEPT};
pub use repository::{fingerprint as fingerprint_files, CLASS_MAPPING_FILE};
pub use table::{
    ManageError, ModelEntry, ModelTable, ResolveError, Snapshot, TableSettings, Validator, VersionEntry, VersionState,
};

/// Reloads of the drop-in folder so far.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadStats {
    pub succeeded: u64,
    pub failed: u64,
    pub last: Option<ReloadRecord>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadRecord {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub ok: bool,
    pub generation: u64,
    pub duration_ms: f64,
    pub error: Option<String>,
}
