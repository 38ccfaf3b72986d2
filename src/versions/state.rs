//! What survives a restart: each model's aliases and loaded versions, and which model `/predict`
//! serves. Written whole to a temporary file, synced and renamed over the old one, so a crash leaves
//! the old state or the new one, never a mix.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::traffic::RoutingPolicy;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    pub default_model: Option<String>,
    pub models: BTreeMap<String, SavedModel>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedModel {
    pub aliases: BTreeMap<String, String>,
    pub loaded: Vec<String>,
    /// Each version's fingerprint when it was first loaded: a version whose files changed since
    /// is refused (versions are immutable).
    #[serde(default)]
    pub fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    pub routing: Option<RoutingPolicy>,
}

/// None when there is no state file yet.
pub fn read(path: &Path) -> Result<Option<SavedState>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("not a valid state file: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

pub fn write(path: &Path, state: &SavedState) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
