//! What changes the table for a caller: load, unload, aliases and rollback. Each is in the
//! deployment log.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::table::VersionState;
use super::table::{Action, ManageError, ModelEntry, ModelTable, ResolveError, Snapshot, VersionEntry};
use crate::domain::{valid_name, PREVIOUS, STABLE};
use crate::runtime::{Fingerprint, LoadError, LoadedModel, ModelPaths};
use crate::traffic::RoutingPolicy;

/// Upload folders are unique within the process (and by pid across processes).
static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ModelTable {
    /// A version folder written into the repository since the start (scripts/import_model.py
    /// --repository writes one while the server runs) is found by its first load: checked in the
    /// sandboxed validator, as new files from outside always are, then added as available. A name
    /// that is no plain path component or names an alias is left to the lookup, which refuses it.
    async fn discover(&self, name: &str, version: &str) -> Result<(), ManageError> {
        let snapshot = self.snapshot();
        let known = snapshot.models.get(name).is_some_and(|m| m.versions.contains_key(version));
        let dir = self.repository.paths(name, version).model_dir;
        if known
            || !valid_name(name)
            || !valid_name(version)
            || ModelEntry::alias_name(snapshot.models.get(name), version)
            || !dir.join(crate::runtime::MANIFEST_FILE).is_file()
        {
            return Ok(());
        }
        self.validate(&dir).await.map_err(ManageError::Load)?;
        self.change(|s| {
            let entry = s.models.entry(name.to_string()).or_default();
            entry.versions.entry(version.to_string()).or_insert_with(|| VersionEntry::available(dir.clone()));
            Ok(())
        })
        .map_err(internal)?;
        tracing::info!(model = %name, %version, "a version folder new in the repository was found by its load");
        Ok(())
    }

    /// POST .../load: loads and warms a version. Idempotent: a ready version is left as it is.
    pub async fn load(&self, name: &str, version: &str, by: &str) -> Result<Arc<LoadedModel>, ManageError> {
        let started = Instant::now();
        let result = self.load_for(name, version).await;
        let what =
            Action { by, action: "load", model: name, version: Some(version), alias: None, from: None, reason: None };
        self.record(what, started, &result);
        result
    }

    async fn load_for(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, ManageError> {
        let _one_load = self.loads.lock().await;
        self.discover(name, version).await?;
        let entry = self.entry(name, version)?;
        if let Some(model) = entry.model {
            return Ok(model);
        }
        // Room for one more, or a version that can make room.
        let snapshot = self.snapshot();
        let loaded: usize =
            snapshot.models.values().map(|m| m.versions.values().filter(|v| v.model.is_some()).count()).sum();
        let evictable = snapshot
            .models
            .values()
            .any(|m| m.versions.iter().any(|(v, e)| e.model.is_some() && m.holds(v).is_empty()));
        if loaded >= self.max_loaded && !evictable {
            return Err(ManageError::Conflict(format!(
                "{loaded} versions are loaded (--max-loaded-versions {}) and aliases point at each of them: unload one or move an alias first",
                self.max_loaded
            )));
        }
        let model = self.load_version(name, version).await?;
        self.evict((name, version));
        Ok(model)
    }

    /// Loads a version on the loader thread and publishes it (replacing a loaded copy: a reload).
    pub(super) async fn load_version(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, LoadError> {
        let set_state = |state: VersionState, model: Option<Arc<LoadedModel>>, failure: Option<String>| {
            self.change(|s| {
                let entry = version_mut(s, name, version)?;
                if let Some(model) = &model {
                    entry.fingerprint = Some(model.id.fingerprint);
                    if let Some(old) = entry.model.replace(model.clone()) {
                        self.loader.drop_later(old);
                    }
                }
                // A loaded copy keeps serving when its reload fails.
                if entry.model.is_none() || state == VersionState::Ready {
                    (entry.state, entry.failure) = (state, failure);
                }
                Ok(())
            })
        };
        set_state(VersionState::Loading, None, None).map_err(internal)?;
        let known = self.entry(name, version).ok().and_then(|e| e.fingerprint);
        let loaded = self.load_from(self.repository.paths(name, version), name, version).await.and_then(|model| {
            match known.filter(|known| *known != model.id.fingerprint) {
                // Someone changed the files of a version in place.
                Some(known) => {
                    let reason = format!(
                        "the files changed since this version was first loaded (fingerprint {known} -> {}); versions are immutable: add changed files as a new version",
                        model.id.fingerprint
                    );
                    self.loader.drop_later(model);
                    Err(LoadError::new(&self.repository.paths(name, version).model_dir, reason))
                }
                None => Ok(model),
            }
        });
        match loaded {
            Ok(model) => {
                let model = Arc::new(model);
                set_state(VersionState::Ready, Some(model.clone()), None).map_err(internal)?;
                tracing::info!(model = %name, %version, generation = model.generation, format = model.backend(), load_ms = model.load_ms, "version loaded");
                Ok(model)
            }
            Err(e) => {
                let _ = set_state(VersionState::Failed, None, Some(e.to_string()));
                Err(e)
            }
        }
    }

    pub(super) async fn load_from(
        &self,
        paths: ModelPaths,
        name: &str,
        version: &str,
    ) -> Result<LoadedModel, LoadError> {
        let (device, layout, generation) = (self.device, self.layout, self.next_generation());
        let dir = paths.model_dir.clone();
        let (name, version) = (name.to_string(), version.to_string());
        let loaded = self
            .loader
            .run(move || {
                let mut model = LoadedModel::load(&paths, device, layout, generation)?;
                // The folder names the version; the manifest's own fields describe how it was built.
                (model.id.name, model.id.version) = (name, version);
                Ok(model)
            })
            .await;
        loaded.unwrap_or_else(|| Err(LoadError::new(&dir, "the model loader thread stopped")))
    }

    /// POST .../unload. Idempotent; refused while an alias points at the version.
    pub async fn unload(&self, name: &str, version: &str, by: &str) -> Result<(), ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let entry = s.model_mut(name)?;
            let holders = entry.holds(version).iter().map(|a| a.to_string()).collect::<Vec<_>>();
            if !holders.is_empty() {
                return Err(ManageError::Conflict(format!(
                    "{} points at {version}: move it first (PUT or DELETE /models/{name}/aliases/<alias>, PUT /models/{name}/routing)",
                    holders.join(", ")
                )));
            }
            let slot = version_mut(s, name, version)?;
            if slot.state == VersionState::Loading {
                return Err(ManageError::Conflict(format!("{version} is loading; unload it once it is ready")));
            }
            self.take_model(slot);
            Ok(())
        });
        let what =
            Action { by, action: "unload", model: name, version: Some(version), alias: None, from: None, reason: None };
        self.record(what, started, &result);
        result
    }

    /// PUT .../aliases/{alias}: points an alias at a ready version in one step. Moving `stable`
    /// leaves the version it pointed at as `previous`.
    pub fn set_alias(&self, name: &str, alias: &str, version: &str, by: &str) -> Result<Option<String>, ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            if !valid_name(alias) || s.models.get(name).is_some_and(|m| m.versions.contains_key(alias)) {
                return Err(ManageError::Invalid(format!(
                    "{alias:?} cannot be an alias: it must be a plain name and not a version's"
                )));
            }
            ready_version(s, name, version)?;
            let entry = s.models.get_mut(name).expect("checked by ready_version");
            if alias == STABLE {
                Ok(promote(entry, version))
            } else {
                Ok(entry.aliases.insert(alias.to_string(), version.to_string()))
            }
        });
        let from = result.as_ref().ok().cloned().flatten();
        let what =
            Action { by, action: "alias", model: name, version: Some(version), alias: Some(alias), from, reason: None };
        self.record(what, started, &result);
        result
    }

    /// A folder for an upload of model `name` to be written into and checked in.
    pub fn upload_folder(&self, name: &str) -> Result<PathBuf, ManageError> {
        if !valid_name(name) {
            return Err(ManageError::Invalid(format!("{name:?} cannot be a model name")));
        }
        let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.repository.root().join(name).join(format!(".staging-upload-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ManageError::Conflict(format!("cannot create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Names a checked upload (`files`, a folder of an `upload_folder`) `version` of model `name`:
    /// renamed into place, `available`, never over an existing version.
    pub fn add_uploaded(
        &self,
        name: &str,
        version: &str,
        files: &std::path::Path,
        fingerprint: Fingerprint,
        by: &str,
    ) -> Result<(), ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            if !valid_name(version) {
                return Err(ManageError::Invalid(format!("{version:?} cannot be a version name")));
            }
            if ModelEntry::alias_name(s.models.get(name), version) {
                return Err(ManageError::Invalid(format!(
                    "{version:?} is an alias's name ({STABLE}, {PREVIOUS} and the model's aliases are reserved): choose another version name"
                )));
            }
            let target = self.repository.root().join(name).join(version);
            if target.exists() || s.models.get(name).is_some_and(|m| m.versions.contains_key(version)) {
                return Err(ManageError::Conflict(format!(
                    "{name} has a version {version} already: versions are immutable"
                )));
            }
            std::fs::rename(files, &target)
                .map_err(|e| ManageError::Conflict(format!("cannot rename into place: {e}")))?;
            let mut slot = VersionEntry::available(target);
            slot.fingerprint = Some(fingerprint);
            s.models.entry(name.to_string()).or_default().versions.insert(version.to_string(), slot);
            Ok(())
        });
        let what =
            Action { by, action: "upload", model: name, version: Some(version), alias: None, from: None, reason: None };
        self.record(what, started, &result);
        result
    }

    /// DELETE .../aliases/{alias}: any alias but `stable`, which `/predict` needs. Idempotent.
    pub fn remove_alias(&self, name: &str, alias: &str, by: &str) -> Result<Option<String>, ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let entry = s.model_mut(name)?;
            if alias == STABLE {
                return Err(ManageError::Conflict(format!("{name} needs `stable`: point it elsewhere instead")));
            }
            Ok(entry.aliases.remove(alias))
        });
        let from = result.as_ref().ok().cloned().flatten();
        let what = Action { by, action: "unalias", model: name, version: None, alias: Some(alias), from, reason: None };
        self.record(what, started, &result);
        result
    }

    /// PUT /models/{name}/routing: replaces the policy in one step, if `if_match` (when given) names
    /// the current generation. Every target must be a ready version or an alias.
    pub fn set_routing(
        &self,
        name: &str,
        mut policy: RoutingPolicy,
        if_match: Option<u64>,
        by: &str,
    ) -> Result<RoutingPolicy, ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let entry = s.model(name)?;
            let current = entry.policy().generation;
            if let Some(expected) = if_match.filter(|g| *g != current) {
                return Err(ManageError::Stale(format!(
                    "the policy is at generation {current}, not {expected}: GET it again and retry"
                )));
            }
            policy.validate().map_err(ManageError::Invalid)?;
            for target in policy.targets() {
                ready_version(s, name, entry.version_of(target))?;
            }
            policy.generation = current + 1;
            s.models.get_mut(name).expect("checked above").routing = Some(policy.clone());
            Ok(policy)
        });
        let from = result.as_ref().ok().map(|p| format!("generation {}", p.generation - 1));
        let what = Action { by, action: "routing", model: name, version: None, alias: None, from, reason: None };
        self.record(what, started, &result);
        result
    }

    /// DELETE /models/{name}/routing: back to everything on `stable`. Idempotent. The generation
    /// still moves on, so that an `If-Match` read before never matches again.
    pub fn clear_routing(&self, name: &str, by: &str) -> Result<(), ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let entry = s.model_mut(name)?;
            let generation = entry.policy().generation + 1;
            entry.routing = Some(RoutingPolicy { generation, ..RoutingPolicy::implicit() });
            Ok(())
        });
        let what = Action { by, action: "routing", model: name, version: None, alias: None, from: None, reason: None };
        self.record(what, started, &result);
        result
    }

    /// POST /models/{name}/rollback: `stable` and `previous` swap in one step.
    pub fn rollback(&self, name: &str, by: &str) -> Result<(String, String), ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let entry = s.model(name)?;
            let previous =
                entry.aliases.get(PREVIOUS).cloned().ok_or_else(|| {
                    ManageError::Conflict(format!("{name} has no `previous` version to roll back to"))
                })?;
            ready_version(s, name, &previous)?;
            let entry = s.models.get_mut(name).expect("checked above");
            let stable = promote(entry, &previous).unwrap_or_default();
            Ok((stable, previous))
        });
        let (version, from) = match &result {
            Ok((from, to)) => (Some(to.as_str()), Some(from.clone())),
            Err(_) => (None, None),
        };
        let what = Action { by, action: "rollback", model: name, version, alias: Some(STABLE), from, reason: None };
        self.record(what, started, &result);
        result
    }

    /// A version's slot, as the snapshot has it now.
    pub(super) fn entry(&self, name: &str, version: &str) -> Result<VersionEntry, ResolveError> {
        let snapshot = self.snapshot();
        snapshot
            .model(name)?
            .versions
            .get(version)
            .cloned()
            .ok_or_else(|| ResolveError::UnknownVersion { name: name.into(), target: version.into() })
    }
}

/// Points `stable` at `version`; the version it pointed at becomes `previous`. Returns that one.
pub(super) fn promote(entry: &mut ModelEntry, version: &str) -> Option<String> {
    let old = entry.aliases.insert(STABLE.to_string(), version.to_string());
    if let Some(old) = old.as_ref().filter(|old| old.as_str() != version) {
        entry.aliases.insert(PREVIOUS.to_string(), old.clone());
    }
    old
}

fn ready_version(s: &Snapshot, name: &str, version: &str) -> Result<(), ManageError> {
    let slot = s
        .model(name)?
        .versions
        .get(version)
        .ok_or_else(|| ResolveError::UnknownVersion { name: name.into(), target: version.into() })?;
    if slot.model.is_none() {
        return Err(ManageError::Conflict(format!(
            "version {version} of {name} is {}, not ready: POST /models/{name}/versions/{version}/load first",
            slot.shown_state()
        )));
    }
    Ok(())
}

pub(super) fn version_mut<'a>(
    s: &'a mut Snapshot,
    name: &str,
    version: &str,
) -> Result<&'a mut VersionEntry, ManageError> {
    s.model_mut(name)?
        .versions
        .get_mut(version)
        .ok_or_else(|| ResolveError::UnknownVersion { name: name.into(), target: version.into() }.into())
}

pub(super) fn internal(e: ManageError) -> LoadError {
    LoadError::new(std::path::Path::new("."), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_keeps_the_replaced_stable_as_previous_and_a_repeat_changes_nothing() {
        let mut entry = ModelEntry::default();
        assert_eq!(promote(&mut entry, "a"), None);
        assert_eq!(entry.aliases.get(PREVIOUS), None, "nothing to go back to yet");
        assert_eq!(promote(&mut entry, "b"), Some("a".into()));
        assert_eq!((entry.aliases[STABLE].as_str(), entry.aliases[PREVIOUS].as_str()), ("b", "a"));
        promote(&mut entry, "b");
        assert_eq!(entry.aliases[PREVIOUS], "a", "promoting the stable version again keeps previous");
    }
}
