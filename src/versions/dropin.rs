//! The simple path: files dropped into the drop-in folder (`--model-dir`, `checkpoints/`) become a
//! version of the repository (the existing one with the same content, or a new one) and, on
//! `POST /reload_model`, the model's `stable`, the version it replaced kept as `previous`.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::manage::{internal, promote};
use super::repository::{self, Repository};
use super::table::{Action, ManageError, ModelEntry, ModelTable, VersionEntry, VersionState};
use super::ReloadRecord;
use crate::domain::STABLE;
use crate::runtime::{Fingerprint, LoadError, LoadedModel, ModelPaths};

impl ModelTable {
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
        let what = Action {
            by,
            action: "reload",
            model: &name,
            version: version.as_deref(),
            alias: Some(STABLE),
            from: None,
            reason: None,
        };
        self.record(what, started, &result);
        self.note_reload(started, &outcome);
        *last = Some((covers, outcome.as_ref().map(|_| ()).map_err(Clone::clone)));
        outcome
    }

    async fn reload_once(&self) -> Result<Arc<LoadedModel>, LoadError> {
        // File system reads (the folder, a zip's directory): on the loader thread, as every drop-in read.
        let drop_in = self.drop_in.clone();
        self.loader
            .run(move || unimported_checkpoint(&drop_in))
            .await
            .unwrap_or_else(|| Err(LoadError::new(&self.drop_in.model_dir, "the model loader thread stopped")))?;
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

    /// New files from outside are checked in the sandboxed child first, as an upload is.
    pub(super) async fn validate(&self, dir: &std::path::Path) -> Result<(), LoadError> {
        let Some(validate) = self.validator.clone() else { return Ok(()) };
        let folder = dir.to_path_buf();
        tokio::task::spawn_blocking(move || validate(&folder).map(drop))
            .await
            .unwrap_or_else(|e| Err(LoadError::new(dir, format!("the validation failed: {e}"))))
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
    pub(super) async fn import_drop_in(&self) -> Result<(String, String, bool), LoadError> {
        let drop_in = self.drop_in.clone();
        let mut candidates: Vec<(String, String, ModelPaths, Option<Fingerprint>)> = self
            .snapshot()
            .models
            .iter()
            .flat_map(|(n, m)| m.versions.iter().map(move |(v, e)| (n.clone(), v.clone(), e.fingerprint)))
            .map(|(n, v, fp)| (n.clone(), v.clone(), self.repository.paths(&n, &v), fp))
            .collect();
        // Versions whose fingerprint is known first: comparing with them costs nothing.
        candidates.sort_by_key(|(_, _, _, known)| known.is_none());
        let found = self
            .loader
            .run(move || -> Result<_, LoadError> {
                let (fingerprint, _) = repository::fingerprint(&drop_in)?;
                let mut computed = Vec::new();
                for (name, version, paths, known) in candidates {
                    let theirs = match known {
                        Some(fp) => fp,
                        None => match repository::fingerprint(&paths) {
                            Ok((fp, _)) => {
                                computed.push((name.clone(), version.clone(), fp));
                                fp
                            }
                            Err(_) => continue,
                        },
                    };
                    if theirs == fingerprint {
                        return Ok((fingerprint, Some((name, version)), computed));
                    }
                }
                Ok((fingerprint, None, computed))
            })
            .await
            .unwrap_or_else(|| Err(LoadError::new(&self.drop_in.model_dir, "the model loader thread stopped")))?;
        // Remembered (and saved with the state): the next comparison need not read those files again.
        let (fingerprint, matched, computed) = found;
        if !computed.is_empty() {
            let _ = self.change(|s| {
                for (name, version, fp) in &computed {
                    if let Some(slot) = s.models.get_mut(name).and_then(|m| m.versions.get_mut(version)) {
                        slot.fingerprint.get_or_insert(*fp);
                    }
                }
                Ok(())
            });
        }
        if let Some((name, version)) = matched {
            return Ok((name, version, false));
        }

        let _one_load = self.loads.lock().await;
        let drop_in = self.drop_in.clone();
        let repository_root = self.repository.root().to_path_buf();
        let staged = self
            .loader
            .run(move || Repository::open(&repository_root)?.stage(&drop_in))
            .await
            .unwrap_or_else(|| Err(LoadError::new(&self.drop_in.model_dir, "the model loader thread stopped")))?;
        let checked = match self.validate(&staged.dir).await {
            Ok(()) => self.load_from(staged.paths(), &staged.name, &staged.version).await,
            Err(e) => Err(e),
        };
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
        let snapshot = self.snapshot();
        let entry = snapshot.models.get(&name);
        // A name in use, or an alias's (a manifest may say "stable"): the fingerprint's start is added.
        let taken = entry.is_some_and(|m| m.versions.contains_key(&staged.version))
            || ModelEntry::alias_name(entry, &staged.version);
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
}

/// What a training notebook saves, as the seed app's users copy it into the drop-in folder.
const CHECKPOINT_EXTENSIONS: [&str; 6] = ["pth", "pt", "ckpt", "safetensors", "bin", "pkl"];

/// Whether the file is a TorchScript archive (a zip with the module's code and constants), which
/// the folder may hold unnamed (the other format of a model whose manifest switched formats);
/// a `torch.save` state dict is a zip with neither. Reads the zip's directory only.
fn is_torchscript(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let Ok(archive) = zip::ZipArchive::new(std::io::BufReader::new(file)) else { return false };
    let names: Vec<String> = archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect();
    names.iter().any(|n| n.ends_with("/constants.pkl")) && names.iter().any(|n| n.contains("/code/"))
}

/// A checkpoint in the drop-in folder that its manifest does not name (`best_model.pth` copied in
/// as the seed app took it) is refused with the command that imports it: otherwise the reload
/// would serve the old weights under the new class mapping's labels. Without a readable manifest,
/// the load's own error names it.
fn unimported_checkpoint(drop_in: &ModelPaths) -> Result<(), LoadError> {
    let dir = &drop_in.model_dir;
    let Some(manifest) = std::fs::read(dir.join(crate::runtime::MANIFEST_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    else {
        return Ok(());
    };
    let named = [&manifest["weights"], &manifest["text_encoder"]["weights"]];
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut stray: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .filter(|name| {
            let extension = std::path::Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or_default();
            CHECKPOINT_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str())
        })
        .filter(|name| !named.iter().any(|n| n.as_str() == Some(name.as_str())))
        .filter(|name| !is_torchscript(&dir.join(name)))
        .collect();
    stray.sort();
    let Some(file) = stray.first() else { return Ok(()) };
    let path = dir.join(file);
    Err(LoadError::new(
        &path,
        format!(
            "a checkpoint that {} does not name: the server serves TorchScript or ONNX with a manifest, so import it first with `scripts/update_model.sh {} {}` (or `.venv/bin/python scripts/import_model.py {} --classes {} --drop-in {}`); the model served before stays",
            dir.join(crate::runtime::MANIFEST_FILE).display(),
            path.display(),
            drop_in.class_mapping.display(),
            path.display(),
            drop_in.class_mapping.display(),
            dir.display(),
        ),
    ))
}
