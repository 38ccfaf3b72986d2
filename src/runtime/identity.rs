//! A model's identity is its content: the name and version its manifest gives, and a fingerprint,
//! SHA-256 over the names and hashes of the files it was loaded from. A restart or another
//! replica computes the same fingerprint from the same files, so caches keyed by it can be shared
//! and survive a reload of identical files, and two different models never share an entry.
use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::ModelFile;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Over each file's name (not its folder: the same files elsewhere are the same model) and
    /// content hash, length-prefixed, in the order the model reads them.
    pub fn of(files: &[ModelFile]) -> Self {
        let mut hasher = Sha256::new();
        for file in files {
            let name = file.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            for field in [name.as_bytes(), file.sha256.as_bytes()] {
                hasher.update((field.len() as u64).to_le_bytes());
                hasher.update(field);
            }
        }
        Self(hasher.finalize().into())
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("not a SHA-256 in hex: {e}"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ModelId {
    pub name: String,
    pub version: String,
    pub fingerprint: Fingerprint,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file(path: &str, sha256: &str) -> ModelFile {
        ModelFile { path: PathBuf::from(path), bytes: 1, sha256: sha256.into() }
    }

    #[test]
    fn the_fingerprint_follows_the_contents_and_names_not_the_folder() {
        let here = [file("/a/manifest.json", "11"), file("/a/weights.pt", "22")];
        let there = [file("/b/manifest.json", "11"), file("/b/weights.pt", "22")];
        assert_eq!(Fingerprint::of(&here), Fingerprint::of(&there));
        let changed = [file("/a/manifest.json", "11"), file("/a/weights.pt", "23")];
        assert_ne!(Fingerprint::of(&here), Fingerprint::of(&changed));
        let renamed = [file("/a/manifest.json", "11"), file("/a/weights2.pt", "22")];
        assert_ne!(Fingerprint::of(&here), Fingerprint::of(&renamed));
        assert_eq!(Fingerprint::of(&here).to_string().len(), 64);
        assert_eq!(Fingerprint::of(&here).to_string().parse(), Ok(Fingerprint::of(&here)));
    }
}
