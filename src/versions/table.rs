//! The model table: every model and version the repository holds, their states, the loaded ones,
//! and each model's aliases. Requests read an immutable snapshot (an `ArcSwap`, one atomic load per
//! request) and pin the `Arc<LoadedModel>` their alias resolves to, so a change never reaches a
//! request in flight, and a request or a batch never mixes versions. Changes clone the snapshot,
//! edit the copy, store it and save the state file, one at a time.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::runtime::Device;
use arc_swap::ArcSwap;
use serde::Serialize;

use super::audit::{AuditLog, Deployment};
use super::repository::Repository;
use super::state::{self, SavedModel, SavedState};
use super::ReloadStats;
use crate::domain::{PREVIOUS, STABLE};
use crate::runtime::Loader;
use crate::runtime::Window;
use crate::runtime::{Fingerprint, LoadError, LoadedModel, ModelPaths, ThreadLayout};
use crate::traffic::{CanaryAbort, Route, RoutingPolicy, Share};

#[derive(Clone, Default)]
pub struct Snapshot {
    pub default_model: String,
    pub models: BTreeMap<String, ModelEntry>,
}

#[derive(Clone, Default)]
pub struct ModelEntry {
    pub versions: BTreeMap<String, VersionEntry>,
    /// alias -> version
    pub aliases: BTreeMap<String, String>,
    /// None: everything to `stable`.
    pub routing: Option<RoutingPolicy>,
}

#[derive(Clone)]
pub struct VersionEntry {
    pub dir: PathBuf,
    pub state: VersionState,
    pub model: Option<Arc<LoadedModel>>,
    /// An unloaded model that requests in flight still hold: the version is `unloading` until they finish.
    pub draining: Option<Weak<LoadedModel>>,
    /// Known once the version was loaded or compared with a drop-in folder.
    pub fingerprint: Option<Fingerprint>,
    /// Why its last load failed.
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    Available,
    Loading,
    Ready,
    Failed,
}

impl VersionEntry {
    pub fn available(dir: PathBuf) -> Self {
        Self { dir, state: VersionState::Available, model: None, draining: None, fingerprint: None, failure: None }
    }

    /// The state as the API shows it: `unloading` while an unloaded model is still held.
    pub fn shown_state(&self) -> &'static str {
        match self.state {
            VersionState::Available if self.draining.as_ref().is_some_and(|w| w.strong_count() > 0) => "unloading",
            VersionState::Available => "available",
            VersionState::Loading => "loading",
            VersionState::Ready => "ready",
            VersionState::Failed => "failed",
        }
    }
}

impl Snapshot {
    /// The model named `name`, or why not (naming the models there are).
    pub fn model(&self, name: &str) -> Result<&ModelEntry, ResolveError> {
        self.models.get(name).ok_or_else(|| self.unknown(name))
    }

    pub fn model_mut(&mut self, name: &str) -> Result<&mut ModelEntry, ResolveError> {
        let unknown = self.unknown(name);
        self.models.get_mut(name).ok_or(unknown)
    }

    fn unknown(&self, name: &str) -> ResolveError {
        ResolveError::UnknownModel { name: name.to_string(), known: self.models.keys().cloned().collect() }
    }
}

impl ModelEntry {
    /// Whether `name` is, or may become, an alias's (`stable`, `previous`, or one the model has):
    /// a version of that name would shadow it, and `stable` could never be moved again.
    pub fn alias_name(entry: Option<&Self>, name: &str) -> bool {
        [STABLE, PREVIOUS].contains(&name) || entry.is_some_and(|m| m.aliases.contains_key(name))
    }

    /// The version `target` names: the one an alias of that name points at, or `target` itself.
    pub fn version_of<'a>(&'a self, target: &'a str) -> &'a str {
        self.aliases.get(target).map_or(target, String::as_str)
    }

    /// The aliases that point at `version`.
    pub fn aliases_of(&self, version: &str) -> Vec<&str> {
        self.aliases.iter().filter(|(_, v)| v.as_str() == version).map(|(a, _)| a.as_str()).collect()
    }

    /// What keeps `version` loaded: the aliases that point at it, and "routing" if the policy
    /// names it.
    pub fn holds(&self, version: &str) -> Vec<&str> {
        let mut holders = self.aliases_of(version);
        if self.routing.as_ref().is_some_and(|p| p.targets().any(|t| t == version)) {
            holders.push("routing");
        }
        holders
    }

    pub fn policy(&self) -> RoutingPolicy {
        self.routing.clone().unwrap_or_else(RoutingPolicy::implicit)
    }
}

/// Why a model or version cannot serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("no model named {name:?}; this server has {known:?}")]
    UnknownModel { name: String, known: Vec<String> },
    #[error("model {name:?} has no version or alias {target:?}")]
    UnknownVersion { name: String, target: String },
    #[error(
        "version {version:?} of {name:?} is {state}, not ready: POST /models/{name}/versions/{version}/load first"
    )]
    NotReady { name: String, version: String, state: &'static str },
}

/// Why a management action was refused; `error.rs` maps each to its status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// An `If-Match` that names another generation than the current one.
    #[error("{0}")]
    Stale(String),
    #[error(transparent)]
    Load(#[from] LoadError),
}

pub struct TableSettings {
    pub repository: PathBuf,
    pub drop_in: ModelPaths,
    pub data_dir: PathBuf,
    pub max_loaded_versions: usize,
    /// What `stable` names at a first start when nothing chose it (--stable-version).
    pub stable_version: Option<String>,
    pub device: Device,
    pub layout: ThreadLayout,
    /// Each deployment log entry also goes here (the history store).
    pub audit_sink: Option<super::audit::AuditSink>,
    /// Checks a folder of new files before the server loads them (the sandboxed child of
    /// src/validate.rs, given by startup); None: the server's own checks only.
    pub validator: Option<Validator>,
}

/// A folder of model files in, its fingerprint out, or why it cannot be served. Blocking.
pub type Validator =
    std::sync::Arc<dyn Fn(&std::path::Path) -> Result<crate::runtime::Fingerprint, LoadError> + Send + Sync>;

pub struct ModelTable {
    pub(super) snapshot: ArcSwap<Snapshot>,
    pub(super) repository: Repository,
    pub(super) drop_in: ModelPaths,
    pub(super) state_file: PathBuf,
    pub(super) audit: AuditLog,
    pub(super) max_loaded: usize,
    pub(super) stable_version: Option<String>,
    pub(super) device: Device,
    pub(super) layout: ThreadLayout,
    pub(super) validator: Option<Validator>,
    pub(super) loader: Loader,
    /// Serialises loads (one loader thread runs them anyway); held across a load, never by a request.
    pub(super) loads: tokio::sync::Mutex<()>,
    /// Serialises edits of the snapshot; held for microseconds, so an alias change never waits for a load.
    pub(super) changes: Mutex<()>,
    /// Loads so far: each loaded model's display `generation`.
    pub(super) generation: AtomicU64,
    /// Reloads: see `reload`.
    pub(super) reload_lock: tokio::sync::Mutex<Option<(u64, Result<(), LoadError>)>>,
    pub(super) reload_requests: AtomicU64,
    pub(super) reloads: Mutex<ReloadStats>,
}

impl ModelTable {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Where a version's files are.
    pub fn paths(&self, name: &str, version: &str) -> ModelPaths {
        self.repository.paths(name, version)
    }

    /// The loaded model behind `target` (a version or an alias; `stable` when None) of model `name`
    /// (the default model when None). Holding the `Arc` keeps it alive across any change.
    pub fn resolve(&self, name: Option<&str>, target: Option<&str>) -> Result<Arc<LoadedModel>, ResolveError> {
        resolve_in(&self.snapshot.load(), name, target)
    }

    /// The version that answers a request of model `name` (the default model when None): the
    /// pinned version or alias if the request names one, else the routing policy's pick, by the
    /// value of its sticky header (`header` reads a request header) or at random.
    pub fn route(
        &self,
        name: Option<&str>,
        pin: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<(Arc<LoadedModel>, Route), ResolveError> {
        let snapshot = self.snapshot.load();
        if let Some(pin) = pin {
            return Ok((resolve_in(&snapshot, name, Some(pin))?, Route::Pinned));
        }
        let model = name.unwrap_or(&snapshot.default_model);
        let policy = snapshot.models.get(model).and_then(|m| m.routing.as_ref());
        let Some(policy) = policy else {
            let route = if header(&RoutingPolicy::implicit().sticky_header).is_some() {
                Route::Sticky
            } else {
                Route::Weighted
            };
            return Ok((resolve_in(&snapshot, Some(model), None)?, route));
        };
        let key = header(&policy.sticky_header);
        let (target, route) = policy.pick(model, key.as_deref());
        Ok((resolve_in(&snapshot, Some(model), Some(target))?, route))
    }
}

impl ModelTable {
    /// After a prediction or a comparison on `model`: if it is on trial in its model's policy (a
    /// weighted share other than `stable`, or the shadow) and its latest window passes one of the
    /// policy's abort thresholds, its traffic goes (weight to `stable`, shadow off), in the log.
    pub fn check_canary(&self, model: &LoadedModel) {
        let snapshot = self.snapshot.load();
        let (name, version) = (&model.id.name, &model.id.version);
        let Some(entry) = snapshot.models.get(name) else { return };
        let Some(policy) = &entry.routing else { return };
        let Some(abort) = &policy.canary_abort else { return };
        let is_this = |target: &str| entry.version_of(target) == version.as_str();
        if is_this(STABLE) || !policy.canaries().any(is_this) {
            return;
        }
        let Some(reason) = judge(abort, &model.stats.window(abort.window)) else { return };
        drop(snapshot);
        let started = Instant::now();
        let changed = self.change(|s| {
            let entry = s.models.get_mut(name).ok_or_else(|| ManageError::Conflict("gone".into()))?;
            let aliases = entry.aliases.clone();
            let is_this = |target: &str| aliases.get(target).map_or(target, String::as_str) == version.as_str();
            let Some(policy) = entry.routing.as_mut() else { return Ok(false) };
            let freed: u32 =
                policy.split.iter_mut().filter(|s| is_this(&s.target)).map(|s| std::mem::take(&mut s.weight)).sum();
            let shadowed = policy.shadow.as_ref().is_some_and(|s| is_this(&s.target));
            if freed == 0 && !shadowed {
                return Ok(false); // another request's check got there first
            }
            if shadowed {
                policy.shadow = None;
            }
            match policy.split.iter_mut().find(|s| s.target == STABLE) {
                Some(stable) => stable.weight += freed,
                None => policy.split.push(Share { target: STABLE.into(), weight: freed }),
            }
            policy.generation += 1;
            Ok(true)
        });
        if changed.unwrap_or(false) {
            tracing::warn!(model = %name, %version, %reason, "canary aborted");
            let what = Action {
                by: "server",
                action: "canary_abort",
                model: name,
                version: Some(version),
                alias: None,
                from: None,
                reason: Some(reason),
            };
            self.record::<()>(what, started, &Ok(()));
        }
    }

    /// Where to mirror a request that `model` answered, if its model's policy draws it: another
    /// ready version than `model`.
    pub fn shadow_for(&self, model: &LoadedModel) -> Option<Arc<LoadedModel>> {
        let snapshot = self.snapshot.load();
        let target = snapshot.models.get(&model.id.name)?.routing.as_ref()?.mirror()?;
        let shadow = resolve_in(&snapshot, Some(&model.id.name), Some(target)).ok()?;
        (shadow.id.version != model.id.version).then_some(shadow)
    }
}

/// Which threshold, if any, a canary's window passes.
fn judge(abort: &CanaryAbort, window: &Window) -> Option<String> {
    let size = abort.window;
    if let Some((errors, p95)) = window.predictions {
        if let Some(max) = abort.max_error_rate.filter(|max| errors > *max) {
            return Some(format!(
                "error rate {:.1}% over its last {size} predictions, above {:.1}%",
                errors * 100.0,
                max * 100.0
            ));
        }
        if let Some(max) = abort.max_p95_ms.filter(|max| p95 > *max) {
            return Some(format!("p95 latency {p95:.1} ms over its last {size} predictions, above {max} ms"));
        }
    }
    let agreement = window.agreement?;
    let min = abort.min_agreement.filter(|min| agreement < *min)?;
    Some(format!(
        "top-1 agreement {:.1}% over its last {size} shadow comparisons, below {:.1}%",
        agreement * 100.0,
        min * 100.0
    ))
}

/// `target` (a version or an alias; `stable` when None) of model `name` (the default when None).
fn resolve_in(snapshot: &Snapshot, name: Option<&str>, target: Option<&str>) -> Result<Arc<LoadedModel>, ResolveError> {
    {
        let name = name.unwrap_or(&snapshot.default_model);
        let entry = snapshot.model(name)?;
        let target = target.unwrap_or(STABLE);
        let version = entry.version_of(target);
        let unknown = || ResolveError::UnknownVersion { name: name.to_string(), target: target.to_string() };
        let slot = entry.versions.get(version).ok_or_else(unknown)?;
        match &slot.model {
            Some(model) => {
                model.touch();
                Ok(model.clone())
            }
            None => Err(ResolveError::NotReady {
                name: name.to_string(),
                version: version.to_string(),
                state: slot.shown_state(),
            }),
        }
    }
}

impl ModelTable {
    pub fn reload_stats(&self) -> ReloadStats {
        self.reloads.lock().expect("reload stats lock").clone()
    }

    pub fn deployments(&self, limit: usize) -> Vec<Deployment> {
        self.audit.newest(limit)
    }

    /// Applies `edit` to a copy of the snapshot and, if it succeeds, publishes the copy and saves
    /// the state file. Brief: runs on the caller's thread.
    pub(super) fn change<T>(
        &self,
        edit: impl FnOnce(&mut Snapshot) -> Result<T, ManageError>,
    ) -> Result<T, ManageError> {
        let _one_at_a_time = self.changes.lock().expect("changes lock");
        let mut next = Snapshot::clone(&self.snapshot.load());
        let result = edit(&mut next)?;
        self.snapshot.store(Arc::new(next));
        self.save_state();
        Ok(result)
    }

    fn save_state(&self) {
        let snapshot = self.snapshot.load();
        let models = snapshot.models.iter().map(|(name, entry)| {
            let loaded = entry.versions.iter().filter(|(_, v)| v.model.is_some()).map(|(v, _)| v.clone()).collect();
            let fingerprints =
                entry.versions.iter().filter_map(|(v, e)| Some((v.clone(), e.fingerprint?.to_string()))).collect();
            let routing = entry.routing.clone();
            (name.clone(), SavedModel { aliases: entry.aliases.clone(), loaded, fingerprints, routing })
        });
        let saved = SavedState { default_model: Some(snapshot.default_model.clone()), models: models.collect() };
        if let Err(e) = state::write(&self.state_file, &saved) {
            tracing::error!(file = %self.state_file.display(), error = %e, "cannot save the model state");
        }
    }

    /// Records a management action in the deployment log.
    pub(super) fn record<T>(&self, what: Action, started: Instant, result: &Result<T, ManageError>) {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.audit.record(Deployment {
            at_ms,
            by: what.by.to_string(),
            action: what.action.to_string(),
            model: what.model.to_string(),
            version: what.version.map(str::to_string),
            alias: what.alias.map(str::to_string),
            from: what.from,
            reason: what.reason,
            ok: result.is_ok(),
            error: result.as_ref().err().map(ToString::to_string),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
        });
    }

    /// Unloads the least recently used versions that no alias points at (never `keep`) while more
    /// than `--max-loaded-versions` are loaded. Returns what it unloaded.
    pub(super) fn evict(&self, keep: (&str, &str)) -> Vec<(String, String)> {
        let started = Instant::now();
        let evicted = self.change(|snapshot| {
            let mut evicted = Vec::new();
            loop {
                let loaded: usize =
                    snapshot.models.values().map(|m| m.versions.values().filter(|v| v.model.is_some()).count()).sum();
                if loaded <= self.max_loaded {
                    break;
                }
                let coldest = snapshot
                    .models
                    .iter()
                    .flat_map(|(name, m)| m.versions.iter().map(move |(v, e)| (name, v, e, m)))
                    .filter(|(name, v, e, m)| {
                        e.model.is_some() && m.holds(v).is_empty() && (name.as_str(), v.as_str()) != keep
                    })
                    .min_by_key(|(_, _, e, _)| e.model.as_ref().map_or(0, |m| m.last_used_ms()))
                    .map(|(name, v, _, _)| (name.clone(), v.clone()));
                let Some((name, version)) = coldest else { break };
                let entry = snapshot.models.get_mut(&name).and_then(|m| m.versions.get_mut(&version));
                if let Some(entry) = entry {
                    self.take_model(entry);
                }
                evicted.push((name, version));
            }
            Ok(evicted)
        });
        let evicted = evicted.unwrap_or_default();
        for (name, version) in &evicted {
            let what = Action {
                by: "server",
                action: "evict",
                model: name,
                version: Some(version),
                alias: None,
                from: None,
                reason: None,
            };
            self.record::<()>(what, started, &Ok(()));
        }
        evicted
    }

    /// Marks a version unloaded; its model is freed on the loader thread once no request holds it.
    pub(super) fn take_model(&self, entry: &mut VersionEntry) {
        if let Some(model) = entry.model.take() {
            entry.draining = Some(Arc::downgrade(&model));
            self.loader.drop_later(model);
        }
        entry.state = VersionState::Available;
    }

    pub(super) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// What a deployment log entry is about.
pub(super) struct Action<'a> {
    pub by: &'a str,
    pub action: &'a str,
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub alias: Option<&'a str>,
    pub from: Option<String>,
    /// Why the server acted on its own.
    pub reason: Option<String>,
}
