//! A model's files as read: their path, size and SHA-256 (what a version's fingerprint is made of),
//! and the first line of a runtime's error (libtorch's carry a C++ backtrace after it).
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::LoadError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelFile {
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub bytes: usize,
    pub sha256: String,
}

pub fn hashed(path: &Path) -> Result<(ModelFile, Vec<u8>), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
    let file = ModelFile { path: path.to_path_buf(), bytes: bytes.len(), sha256: hex::encode(Sha256::digest(&bytes)) };
    Ok((file, bytes))
}

/// libtorch errors carry a C++ backtrace after the first line; clients and logs need the first.
pub fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
