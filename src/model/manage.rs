//! What changes the table: start-up (the repository, the saved state, the drop-in folder), load,
//! unload, aliases, rollback and reload. Every change made for a caller is in the deployment log.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::audit::AuditLog;
use super::loader::Loader;
use super::repository::{self, valid_name, Repository};
use super::state;
use super::table::{Action, ManageError, ModelEntry, ModelTable, ResolveError, Snapshot, TableSettings, VersionEntry};
use super::table::{VersionState, PREVIOUS, STABLE};
use super::{Fingerprint, LoadError, LoadedModel, ModelPaths, ReloadRecord, MANIFEST_FILE};

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
            to_load.entry(name.clone()).or_default().extend(model.loaded.iter().cloned());
        }
        snapshot.default_model = saved.default_model.clone().unwrap_or_default();
        let table = Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            repository,
            drop_in: settings.drop_in,
            state_file,
            audit: AuditLog::open(&settings.data_dir.join("deployments.jsonl")),
            max_loaded: settings.max_loaded_versions.max(2),
            device: settings.device,
            layout: settings.layout,
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
        // A model without `stable` serves its newest version by name.
        let snapshot = self.snapshot();
        for (name, entry) in &snapshot.models {
            if !entry.aliases.contains_key(STABLE) {
                if let Some(last) = entry.versions.keys().next_back() {
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

    /// POST .../load: loads and warms a version. Idempotent: a ready version is left as it is.
    pub async fn load(&self, name: &str, version: &str, by: &str) -> Result<Arc<LoadedModel>, ManageError> {
        let started = Instant::now();
        let result = self.load_for(name, version).await;
        let what = Action { by, action: "load", model: name, version: Some(version), alias: None, from: None };
        self.record(what, started, &result);
        result
    }

    async fn load_for(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, ManageError> {
        let _one_load = self.loads.lock().await;
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
            .any(|m| m.versions.iter().any(|(v, e)| e.model.is_some() && m.aliases_of(v).is_empty()));
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
    async fn load_version(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, LoadError> {
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
        match self.load_from(self.repository.paths(name, version), name, version).await {
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

    async fn load_from(&self, paths: ModelPaths, name: &str, version: &str) -> Result<LoadedModel, LoadError> {
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
            let entry = s.models.get_mut(name).ok_or_else(|| unknown_model(name, &[]))?;
            let aliases = entry.aliases_of(version).iter().map(|a| a.to_string()).collect::<Vec<_>>();
            if !aliases.is_empty() {
                return Err(ManageError::Conflict(format!(
                    "alias {} points at {version}: move it first (PUT or DELETE /models/{name}/aliases/<alias>)",
                    aliases.join(", ")
                )));
            }
            let slot = version_mut(s, name, version)?;
            if slot.state == VersionState::Loading {
                return Err(ManageError::Conflict(format!("{version} is loading; unload it once it is ready")));
            }
            self.take_model(slot);
            Ok(())
        });
        let what = Action { by, action: "unload", model: name, version: Some(version), alias: None, from: None };
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
        let what = Action { by, action: "alias", model: name, version: Some(version), alias: Some(alias), from };
        self.record(what, started, &result);
        result
    }

    /// DELETE .../aliases/{alias}: any alias but `stable`, which `/predict` needs. Idempotent.
    pub fn remove_alias(&self, name: &str, alias: &str, by: &str) -> Result<Option<String>, ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let known: Vec<String> = s.models.keys().cloned().collect();
            let entry = s.models.get_mut(name).ok_or_else(|| unknown_model(name, &known))?;
            if alias == STABLE {
                return Err(ManageError::Conflict(format!("{name} needs `stable`: point it elsewhere instead")));
            }
            Ok(entry.aliases.remove(alias))
        });
        let from = result.as_ref().ok().cloned().flatten();
        let what = Action { by, action: "unalias", model: name, version: None, alias: Some(alias), from };
        self.record(what, started, &result);
        result
    }

    /// POST /models/{name}/rollback: `stable` and `previous` swap in one step.
    pub fn rollback(&self, name: &str, by: &str) -> Result<(String, String), ManageError> {
        let started = Instant::now();
        let result = self.change(|s| {
            let entry =
                s.models.get(name).ok_or_else(|| unknown_model(name, &s.models.keys().cloned().collect::<Vec<_>>()))?;
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
        let what = Action { by, action: "rollback", model: name, version, alias: Some(STABLE), from };
        self.record(what, started, &result);
        result
    }

    /// POST /reload_model: the drop-in folder becomes a version (the one with the same content, or
    /// a new one), is loaded afresh, and is made `stable`. Concurrent requests coalesce: a load that
    /// started after a request arrived read the files as they were then or later, so its outcome is
    /// that request's too. A burst costs two loads at most.
    pub async fn reload(&self, by: &str) -> Result<Arc<LoadedModel>, LoadError> {
        let request = self.reload_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.reload_lock.lock().await;
        if let Some((covered, outcome)) = &*last {
            if *covered >= request {
                return outcome.clone().and_then(|()| {
                    self.resolve(None, None).map_err(|e| LoadError::new(&self.drop_in.model_dir, e.to_string()))
                });
            }
        }
        let covers = self.reload_requests.load(Ordering::SeqCst);
        let started = Instant::now();
        let outcome = self.reload_once().await;
        let (name, version) = match &outcome {
            Ok(m) => (m.id.name.clone(), Some(m.id.version.clone())),
            Err(_) => (self.snapshot().default_model.clone(), None),
        };
        let result = outcome.clone().map_err(ManageError::Load);
        let what =
            Action { by, action: "reload", model: &name, version: version.as_deref(), alias: Some(STABLE), from: None };
        self.record(what, started, &result);
        self.note_reload(started, &outcome);
        *last = Some((covers, outcome.as_ref().map(|_| ()).map_err(Clone::clone)));
        outcome
    }

    async fn reload_once(&self) -> Result<Arc<LoadedModel>, LoadError> {
        let (name, version, created) = self.import_drop_in().await?;
        // A new version was loaded by its import's check; an existing one is read afresh.
        let model = match self.entry(&name, &version).ok().and_then(|e| e.model).filter(|_| created) {
            Some(model) => model,
            None => {
                let _one_load = self.loads.lock().await;
                self.load_version(&name, &version).await?
            }
        };
        self.change(|s| {
            s.default_model = name.clone();
            Ok(promote(s.models.get_mut(&name).expect("imported"), &version))
        })
        .map_err(internal)?;
        self.evict((&name, &version));
        Ok(model)
    }

    fn note_reload(&self, started: Instant, outcome: &Result<Arc<LoadedModel>, LoadError>) {
        let mut stats = self.reloads.lock().expect("reload stats lock");
        let record = ReloadRecord {
            at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            ok: outcome.is_ok(),
            generation: outcome.as_ref().map_or(0, |m| m.generation),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            error: outcome.as_ref().err().map(ToString::to_string),
        };
        match outcome {
            Ok(_) => stats.succeeded += 1,
            Err(e) => {
                stats.failed += 1;
                tracing::warn!(error = %e, "reload refused, the previous model keeps serving");
            }
        }
        stats.last = Some(record);
    }

    /// The version holding the drop-in folder's content: an existing one with the same fingerprint,
    /// or a new one, copied, checked by a load of the copy, and renamed into place (named as its
    /// manifest says, or with the fingerprint's start appended when that name is taken).
    /// Returns (model, version, whether it is new).
    async fn import_drop_in(&self) -> Result<(String, String, bool), LoadError> {
        let drop_in = self.drop_in.clone();
        let candidates: Vec<(String, String, ModelPaths, Option<Fingerprint>)> = self
            .snapshot()
            .models
            .iter()
            .flat_map(|(n, m)| m.versions.iter().map(move |(v, e)| (n.clone(), v.clone(), e.fingerprint)))
            .map(|(n, v, fp)| (n.clone(), v.clone(), self.repository.paths(&n, &v), fp))
            .collect();
        let found = self
            .loader
            .run(move || -> Result<_, LoadError> {
                let (fingerprint, _) = repository::fingerprint(&drop_in)?;
                for (name, version, paths, known) in candidates {
                    let theirs = match known {
                        Some(fp) => fp,
                        None => match repository::fingerprint(&paths) {
                            Ok((fp, _)) => fp,
                            Err(_) => continue,
                        },
                    };
                    if theirs == fingerprint {
                        return Ok((fingerprint, Some((name, version))));
                    }
                }
                Ok((fingerprint, None))
            })
            .await
            .unwrap_or_else(|| Err(LoadError::new(&self.drop_in.model_dir, "the model loader thread stopped")))?;
        let fingerprint = match found {
            (_, Some((name, version))) => return Ok((name, version, false)),
            (fp, None) => fp,
        };

        let _one_load = self.loads.lock().await;
        let drop_in = self.drop_in.clone();
        let repository_root = self.repository.root().to_path_buf();
        let staged = self
            .loader
            .run(move || Repository::open(&repository_root)?.stage(&drop_in))
            .await
            .unwrap_or_else(|| Err(LoadError::new(&self.drop_in.model_dir, "the model loader thread stopped")))?;
        let checked = self.load_from(staged.paths(), &staged.name, &staged.version).await;
        let mut model = match checked {
            Ok(model) => model,
            Err(mut e) => {
                staged.discard();
                // Name the drop-in file at fault, not its staged copy.
                if let Ok(file) = e.file.strip_prefix(&staged.dir) {
                    e.file = if file == std::path::Path::new(repository::CLASS_MAPPING_FILE) {
                        self.drop_in.class_mapping.clone()
                    } else {
                        self.drop_in.model_dir.join(file)
                    };
                }
                return Err(e);
            }
        };
        let name = staged.name.clone();
        let taken = self.snapshot().models.get(&name).is_some_and(|m| m.versions.contains_key(&staged.version));
        let version = if taken {
            format!("{}-{}", staged.version, &fingerprint.to_string()[..8])
        } else {
            staged.version.clone()
        };
        let dir = self.repository.commit(&staged, &version).inspect_err(|_| staged.discard())?;
        // The checked copy is the version: the loaded model is kept, named by its folder.
        for file in &mut model.files {
            if let Ok(rest) = file.path.strip_prefix(&staged.dir) {
                file.path = dir.join(rest);
            }
        }
        model.id.version = version.clone();
        let model = Arc::new(model);
        self.change(|s| {
            let entry = s.models.entry(name.clone()).or_default();
            let mut slot = VersionEntry::available(dir.clone());
            slot.fingerprint = Some(fingerprint);
            slot.state = VersionState::Ready;
            slot.model = Some(model.clone());
            entry.versions.insert(version.clone(), slot);
            Ok(())
        })
        .map_err(internal)?;
        tracing::info!(model = %name, %version, %fingerprint, "drop-in folder added as a new version");
        Ok((name, version, true))
    }

    fn entry(&self, name: &str, version: &str) -> Result<VersionEntry, ResolveError> {
        let snapshot = self.snapshot();
        let model = snapshot.models.get(name).ok_or_else(|| ResolveError::UnknownModel {
            name: name.into(),
            known: snapshot.models.keys().cloned().collect(),
        })?;
        model
            .versions
            .get(version)
            .cloned()
            .ok_or_else(|| ResolveError::UnknownVersion { name: name.into(), target: version.into() })
    }
}

/// Points `stable` at `version`; the version it pointed at becomes `previous`. Returns that one.
fn promote(entry: &mut ModelEntry, version: &str) -> Option<String> {
    let old = entry.aliases.insert(STABLE.to_string(), version.to_string());
    if let Some(old) = old.as_ref().filter(|old| old.as_str() != version) {
        entry.aliases.insert(PREVIOUS.to_string(), old.clone());
    }
    old
}

fn ready_version(s: &Snapshot, name: &str, version: &str) -> Result<(), ManageError> {
    let entry = s.models.get(name).ok_or_else(|| unknown_model(name, &s.models.keys().cloned().collect::<Vec<_>>()))?;
    let slot = entry
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

fn version_mut<'a>(s: &'a mut Snapshot, name: &str, version: &str) -> Result<&'a mut VersionEntry, ManageError> {
    let known: Vec<String> = s.models.keys().cloned().collect();
    let entry = s.models.get_mut(name).ok_or_else(|| unknown_model(name, &known))?;
    entry
        .versions
        .get_mut(version)
        .ok_or_else(|| ResolveError::UnknownVersion { name: name.into(), target: version.into() }.into())
}

fn unknown_model(name: &str, known: &[String]) -> ManageError {
    ResolveError::UnknownModel { name: name.into(), known: known.to_vec() }.into()
}

fn internal(e: ManageError) -> LoadError {
    LoadError::new(std::path::Path::new("."), e.to_string())
}
