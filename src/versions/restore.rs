//! Start-up: the repository scanned, the saved aliases and loaded versions restored, and the
//! drop-in folder added as a version, all loaded and warmed before the server says ready.
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::audit::AuditLog;
use super::manage::{internal, promote};
use super::repository::Repository;
use super::state;
use super::table::{Action, ModelTable, Snapshot, TableSettings, VersionEntry};
use crate::domain::STABLE;
use crate::runtime::Loader;
use crate::runtime::{LoadError, MANIFEST_FILE};

impl ModelTable {
    /// Scans the repository, restores the saved aliases, adds the drop-in folder as a version (made
    /// `stable` if its content is new), and loads and warms every version an alias points at or
    /// that was loaded before the restart. Fails if the default model's `stable` cannot load.
    pub async fn start(settings: TableSettings) -> Result<Self, LoadError> {
        let repository = Repository::open(&settings.repository)?;
        let state_file = settings.data_dir.join("models-state.json");
        let saved = state::read(&state_file).map_err(|reason| {
            LoadError::new(&state_file, format!("{reason}; fix it or remove it to start from the repository alone"))
        })?;
        let loader = Loader::spawn(settings.layout.torch.shared)
            .map_err(|e| LoadError::new(&settings.repository, format!("cannot start the loader thread: {e}")))?;
        let mut snapshot = Snapshot::default();
        for found in repository.scan() {
            let entry = snapshot.models.entry(found.name).or_default();
            entry.versions.insert(found.version, VersionEntry::available(found.dir));
        }
        let saved = saved.unwrap_or_default();
        let mut to_load: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, model) in &saved.models {
            let Some(entry) = snapshot.models.get_mut(name) else { continue };
            for (alias, version) in &model.aliases {
                if entry.versions.contains_key(version) {
                    entry.aliases.insert(alias.clone(), version.clone());
                } else {
                    tracing::warn!(model = %name, %alias, %version, "the saved alias names a version no longer in the repository; dropped");
                }
            }
            for (version, fingerprint) in &model.fingerprints {
                if let (Some(slot), Ok(fingerprint)) = (entry.versions.get_mut(version), fingerprint.parse()) {
                    slot.fingerprint = Some(fingerprint);
                }
            }
            entry.routing = model.routing.clone();
            to_load.entry(name.clone()).or_default().extend(model.loaded.iter().cloned());
        }
        snapshot.default_model = saved.default_model.clone().unwrap_or_default();
        let table = Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            repository,
            drop_in: settings.drop_in,
            state_file,
            audit: AuditLog::open(&settings.data_dir.join("deployments.jsonl"), settings.audit_sink),
            max_loaded: settings.max_loaded_versions.max(2),
            stable_version: settings.stable_version,
            device: settings.device,
            layout: settings.layout,
            validator: settings.validator,
            loader,
            loads: tokio::sync::Mutex::new(()),
            changes: Mutex::new(()),
            generation: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(None),
            reload_requests: AtomicU64::new(0),
            reloads: Mutex::new(Default::default()),
        };
        table.restore(to_load).await?;
        Ok(table)
    }

    async fn restore(&self, mut to_load: BTreeMap<String, Vec<String>>) -> Result<(), LoadError> {
        let started = Instant::now();
        if self.drop_in.model_dir.join(MANIFEST_FILE).is_file() {
            let (name, version, created) = self.import_drop_in().await?;
            let snapshot = self.snapshot();
            let has_stable = snapshot.models.get(&name).is_some_and(|m| m.aliases.contains_key(STABLE));
            if created || !has_stable {
                self.change(|s| {
                    s.default_model = name.clone();
                    Ok(promote(s.models.entry(name.clone()).or_default(), &version))
                })
                .map_err(internal)?;
                let what = Action {
                    by: "server",
                    action: "import",
                    model: &name,
                    version: Some(&version),
                    alias: Some(STABLE),
                    from: None,
                    reason: Some("the drop-in folder holds new content".into()),
                };
                self.record::<()>(what, started, &Ok(()));
            }
        }
        // Without a drop-in folder or a saved choice: the only model, or the first by name.
        let snapshot = self.snapshot();
        if !snapshot.models.contains_key(&snapshot.default_model) {
            let first = snapshot.models.keys().next().cloned().ok_or_else(|| {
                LoadError::new(
                    &self.drop_in.model_dir.join(MANIFEST_FILE),
                    format!("not found, and the repository {} holds no model either", self.repository.root().display()),
                )
            })?;
            self.change(|s| {
                s.default_model = first;
                Ok(())
            })
            .map_err(internal)?;
        }
        // A model without `stable` serves its newest version by name, or the default model the
        // version --stable-version names.
        let snapshot = self.snapshot();
        for (name, entry) in &snapshot.models {
            if !entry.aliases.contains_key(STABLE) {
                let chosen = self.stable_version.as_ref().filter(|_| *name == snapshot.default_model);
                if let Some(version) = chosen.filter(|v| !entry.versions.contains_key(*v)) {
                    return Err(LoadError::new(
                        &self.repository.root().join(name),
                        format!(
                            "--stable-version {version}: no such version of {name} (it has {})",
                            entry.versions.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if let Some(last) = chosen.or(entry.versions.keys().next_back()) {
                    let last = last.clone();
                    self.change(|s| Ok(promote(s.models.get_mut(name).expect("a scanned model"), &last)))
                        .map_err(internal)?;
                }
            }
        }
        let snapshot = self.snapshot();
        for (name, entry) in &snapshot.models {
            let wanted = to_load.entry(name.clone()).or_default();
            wanted.extend(entry.aliases.values().cloned());
            wanted.sort();
            wanted.dedup();
        }
        // The default model's stable first: it must load; the rest are logged if they fail.
        let default = snapshot.default_model.clone();
        let stable = snapshot.models[&default].aliases[STABLE].clone();
        let loaded = |name: &str, version: &str| self.entry(name, version).is_ok_and(|e| e.model.is_some());
        if !loaded(&default, &stable) {
            self.load_version(&default, &stable).await?;
        }
        for (name, versions) in to_load {
            for version in versions.iter().filter(|v| !loaded(&name, v)) {
                if let Err(e) = self.load_version(&name, version).await {
                    tracing::error!(model = %name, %version, error = %e, "a saved version did not load");
                }
            }
        }
        Ok(())
    }
}
