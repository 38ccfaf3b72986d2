//! The model repository on disk: `<root>/<name>/<version>/` folders, each holding one version's
//! manifest, weights, class mapping (`class_mapping.json`) and text encoder. A version is immutable
//! once it has its name: new content is copied into a `.staging-*` folder beside it, checked there,
//! and renamed into place (a rename within one folder is atomic), so no reader ever sees half a
//! version and no version changes under a server that serves it.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::valid_name;
use crate::runtime::{hashed, Fingerprint, LoadError, Manifest, ModelFile, ModelPaths, MANIFEST_FILE};

/// The class mapping's name inside a version folder.
pub const CLASS_MAPPING_FILE: &str = "class_mapping.json";

pub struct Repository {
    root: PathBuf,
}

/// A version folder found on disk.
#[derive(Debug, Clone)]
pub struct VersionDir {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
}

/// Staging folders are unique within the process (and by pid across processes).
static STAGED: AtomicU64 = AtomicU64::new(0);

impl Repository {
    pub fn open(root: &Path) -> Result<Self, LoadError> {
        std::fs::create_dir_all(root)
            .map_err(|e| LoadError::new(root, format!("cannot create the repository: {e}")))?;
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every `<name>/<version>/` with a manifest, in name order; staging leftovers are removed.
    pub fn scan(&self) -> Vec<VersionDir> {
        let mut found = Vec::new();
        for (name, model_dir) in subfolders(&self.root) {
            for (version, dir) in subfolders(&model_dir) {
                if version.starts_with(".staging-") {
                    // A copy that a stopped process never finished: not a version.
                    let _ = std::fs::remove_dir_all(&dir);
                } else if valid_name(&name) && valid_name(&version) && dir.join(MANIFEST_FILE).is_file() {
                    found.push(VersionDir { name: name.clone(), version, dir });
                }
            }
        }
        found
    }

    pub fn paths(&self, name: &str, version: &str) -> ModelPaths {
        let model_dir = self.root.join(name).join(version);
        ModelPaths { class_mapping: model_dir.join(CLASS_MAPPING_FILE), model_dir }
    }

    /// Copies the files a drop-in folder's manifest names (and its class mapping, as
    /// `class_mapping.json`) into a new staging folder of the model the manifest names.
    /// Blocking I/O: call it off the async workers.
    pub fn stage(&self, from: &ModelPaths) -> Result<Staged, LoadError> {
        let manifest = read_manifest(&from.model_dir)?;
        if !valid_name(&manifest.name) || !valid_name(&manifest.version) {
            return Err(LoadError::new(
                &from.model_dir.join(MANIFEST_FILE),
                "name and version must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'",
            ));
        }
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(&manifest.name).join(format!(".staging-{}-{n}", std::process::id()));
        let staged = Staged { dir, name: manifest.name.clone(), version: manifest.version.clone() };
        std::fs::create_dir_all(&staged.dir).map_err(|e| LoadError::new(&staged.dir, format!("cannot create: {e}")))?;
        let text = &manifest.text_encoder;
        let mut copies: Vec<(PathBuf, &str)> = [MANIFEST_FILE, &manifest.weights, &text.weights, &text.tokenizer]
            .into_iter()
            .map(|file| (from.model_dir.join(file), file))
            .collect();
        copies.push((from.class_mapping.clone(), CLASS_MAPPING_FILE));
        for (source, file) in copies {
            std::fs::copy(&source, staged.dir.join(file)).map_err(|e| LoadError::io(&source, e))?;
        }
        Ok(staged)
    }

    /// Names a staged copy `version`: renamed into place, never over an existing version.
    pub fn commit(&self, staged: &Staged, version: &str) -> Result<PathBuf, LoadError> {
        let target = self.root.join(&staged.name).join(version);
        if target.exists() {
            return Err(LoadError::new(&target, "this version exists already; versions are immutable"));
        }
        std::fs::rename(&staged.dir, &target)
            .map_err(|e| LoadError::new(&target, format!("cannot rename into place: {e}")))?;
        Ok(target)
    }
}

/// A copy being checked, removed unless committed.
pub struct Staged {
    pub dir: PathBuf,
    /// What the manifest calls it.
    pub name: String,
    pub version: String,
}

impl Staged {
    pub fn paths(&self) -> ModelPaths {
        ModelPaths { model_dir: self.dir.clone(), class_mapping: self.dir.join(CLASS_MAPPING_FILE) }
    }

    pub fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fingerprint of a model folder without loading it (the same as the loaded model's: the
/// files in the order `LoadedModel::load` reads them), and the files. Reads every file.
pub fn fingerprint(paths: &ModelPaths) -> Result<(Fingerprint, Vec<ModelFile>), LoadError> {
    let manifest = read_manifest(&paths.model_dir)?;
    let dir = &paths.model_dir;
    let text = &manifest.text_encoder;
    let mut files = Vec::new();
    for path in [dir.join(MANIFEST_FILE), dir.join(&manifest.weights), paths.class_mapping.clone()]
        .into_iter()
        .chain([dir.join(&text.weights), dir.join(&text.tokenizer)])
    {
        let (mut file, _) = hashed(&path)?;
        // Named as in a version folder, so a drop-in compares equal to its stored copy.
        if path == paths.class_mapping {
            file.path = dir.join(CLASS_MAPPING_FILE);
        }
        files.push(file);
    }
    Ok((Fingerprint::of(&files), files))
}

fn read_manifest(dir: &Path) -> Result<Manifest, LoadError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| LoadError::io(&path, e))?;
    Manifest::from_bytes(&path, &bytes)
}

fn subfolders(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_path_components() {
        for good in ["food", "lite0-1a2b3c4d", "v1.2_rc"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".", "..", ".staging-1", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
