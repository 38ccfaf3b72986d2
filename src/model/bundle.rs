//! A version as a `.tar.gz` bundle: its files at the top level, nothing else. Unpacking treats the
//! archive as hostile: only regular files with plain names, no paths, links or devices, a bounded
//! number of entries and bytes, and no more than `MAX_RATIO` times the archive's size once
//! unpacked (a bomb). Packing is deterministic (sorted names, no times or owners), so a version's
//! bundle, and its SHA-256, are the same every time.
use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use super::repository::valid_name;

pub const MAX_ENTRIES: usize = 16;
/// Weights hardly compress (about 1.1x); text files do (about 4x): 20x is no model.
const MAX_RATIO: u64 = 20;

/// Unpacks `bundle` (`packed_bytes` long) into the empty folder `into`, at most `max_bytes` in all.
/// On error the caller removes `into`.
pub fn unpack(bundle: &Path, packed_bytes: u64, into: &Path, max_bytes: u64) -> Result<u64, String> {
    let file = std::fs::File::open(bundle).map_err(|e| format!("cannot read the bundle: {e}"))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let (mut entries, mut total) = (0usize, 0u64);
    let allowed = max_bytes.min(packed_bytes.saturating_mul(MAX_RATIO).max(1 << 20));
    for entry in archive.entries().map_err(|e| format!("not a tar.gz bundle: {e}"))? {
        let mut entry = entry.map_err(|e| format!("not a tar.gz bundle: {e}"))?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(|e| format!("an entry's name is not valid: {e}"))?.into_owned();
        let shown = path.display().to_string();
        // "./" and "./file": the folder tar itself writes; everything else must be a plain file name.
        let name = match path.strip_prefix(".").unwrap_or(&path).to_str() {
            Some("") if kind.is_dir() => continue,
            Some(name) if valid_name(name) => name.to_string(),
            _ => return Err(format!("{shown:?}: only plain file names at the top level (no paths, no '..')")),
        };
        if !kind.is_file() {
            return Err(format!("{shown:?}: only regular files (no links, folders or devices)"));
        }
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} files"));
        }
        let target = into.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| format!("{name}: {e} (named twice?)"))?;
        // Counted as written, whatever the header claims.
        let copied = std::io::copy(&mut (&mut entry).take(allowed - total + 1), &mut out)
            .map_err(|e| format!("{name}: cannot unpack: {e}"))?;
        total += copied;
        if total > allowed {
            return Err(if allowed < max_bytes {
                format!("unpacks to more than {MAX_RATIO}x its {packed_bytes} bytes: refused as a compression bomb")
            } else {
                format!("unpacks to more than --max-bundle-mb ({max_bytes} bytes)")
            });
        }
    }
    if entries == 0 {
        return Err("the bundle holds no file".into());
    }
    Ok(total)
}

/// Packs the files of `dir` (sorted, top level only) into `out`; returns the bundle's SHA-256.
pub fn pack(dir: &Path, out: &Path) -> std::io::Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let file = std::fs::File::create(out)?;
    let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    builder.mode(tar::HeaderMode::Deterministic);
    for name in &names {
        builder.append_path_with_name(dir.join(name), name)?;
    }
    builder.into_inner()?.finish()?.flush()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(out)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle with one entry written by hand, for entries `tar::Builder` would refuse to make.
    fn bundle_with(dir: &Path, name: &str, kind: tar::EntryType, data: &[u8]) -> std::path::PathBuf {
        let path = dir.join("b.tar.gz");
        let mut builder = tar::Builder::new(GzEncoder::new(std::fs::File::create(&path).unwrap(), Compression::best()));
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    fn try_unpack(name: &str, kind: tar::EntryType, data: &[u8]) -> Result<u64, String> {
        let dir = tempfile::tempdir().unwrap();
        let bundle = bundle_with(dir.path(), name, kind, data);
        let into = dir.path().join("out");
        std::fs::create_dir(&into).unwrap();
        let packed = std::fs::metadata(&bundle).unwrap().len();
        let result = unpack(&bundle, packed, &into, 1 << 30);
        assert!(!dir.path().join("evil").exists() && !Path::new("/tmp/evil-food-api").exists());
        result
    }

    #[test]
    fn hostile_entries_are_refused() {
        use tar::EntryType::*;
        for (name, kind) in [
            ("../evil", Regular),
            ("/tmp/evil-food-api", Regular),
            ("a/b", Regular),
            ("link", Symlink),
            ("hard", Link),
            ("dev", Char),
            ("fifo", Fifo),
        ] {
            assert!(try_unpack(name, kind, b"x").is_err(), "{name} {kind:?}");
        }
        assert_eq!(try_unpack("manifest.json", Regular, b"{}"), Ok(2));
        let bomb = try_unpack("weights.pt", Regular, &vec![0u8; 64 << 20]).unwrap_err();
        assert!(bomb.contains("bomb"), "{bomb}");
    }

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("v");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("manifest.json"), b"{}").unwrap();
        std::fs::write(src.join("weights.pt"), vec![7u8; 1000]).unwrap();
        let (a, b) = (dir.path().join("a.tar.gz"), dir.path().join("b.tar.gz"));
        assert_eq!(pack(&src, &a).unwrap(), pack(&src, &b).unwrap());
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        assert_eq!(unpack(&a, std::fs::metadata(&a).unwrap().len(), &out, 1 << 20), Ok(1002));
        assert_eq!(std::fs::read(out.join("weights.pt")).unwrap(), vec![7u8; 1000]);
    }
}
