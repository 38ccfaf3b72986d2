//! A version as a `.tar.gz` bundle: its files at the top level, nothing else. Unpacking treats the
//! archive as hostile: only regular files with plain names, no paths, links or devices, a bounded
//! number of entries and bytes, and no more than `MAX_RATIO` times the archive's size once
//! unpacked (a bomb). The decompressed stream itself is capped, so bytes in entries that are
//! skipped (a folder entry with data) count too, and entries are read raw: a GNU long name or a
//! PAX header is never read whole (the `tar` crate would buffer a 1 GiB one), since a bundle's
//! names fit a plain header. Packing is deterministic (sorted names, no times or owners), so a
//! version's bundle, and its SHA-256, are the same every time.
use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::domain::valid_name;
use crate::runtime::shorten;

pub const MAX_ENTRIES: usize = 16;
/// Weights hardly compress (about 1.1x); text files do (about 4x): 20x is no model.
const MAX_RATIO: u64 = 20;
/// A PAX header (GNU tar's posix format writes one per file, with times) is read up to this size.
const MAX_PAX_BYTES: u64 = 64 * 1024;
/// Headers, PAX records and padding on top of the files' bytes.
const OVERHEAD_BYTES: u64 = 4 << 20;

/// A reader that fails once more than `left` bytes came through: the decompressed stream's cap.
/// `hit` says so afterwards (the `tar` crate's errors keep only their own description).
struct Capped<R> {
    inner: R,
    left: u64,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(std::io::Error::other("the decompressed stream is over its limit"));
        }
        let wanted = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..wanted])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Unpacks `bundle` (`packed_bytes` long) into the empty folder `into`, at most `max_bytes` in all.
/// On error the caller removes `into`.
pub fn unpack(bundle: &Path, packed_bytes: u64, into: &Path, max_bytes: u64) -> Result<u64, String> {
    let file = std::fs::File::open(bundle).map_err(|e| format!("cannot read the bundle: {e}"))?;
    let allowed = max_bytes.min(packed_bytes.saturating_mul(MAX_RATIO).max(1 << 20));
    let too_big = || {
        if allowed < max_bytes {
            format!("unpacks to more than {MAX_RATIO}x its {packed_bytes} bytes: refused as a compression bomb")
        } else {
            format!("unpacks to more than --max-bundle-mb ({max_bytes} bytes)")
        }
    };
    let hit = std::rc::Rc::default();
    let left = allowed.saturating_add(OVERHEAD_BYTES);
    let mut archive = tar::Archive::new(Capped { inner: GzDecoder::new(file), left, hit: std::rc::Rc::clone(&hit) });
    let not_tar = |e: std::io::Error| match hit.get() {
        true => too_big(),
        false => format!("not a tar.gz bundle: {e}"),
    };
    let (mut entries, mut total) = (0usize, 0u64);
    for entry in archive.entries().map_err(not_tar)?.raw(true) {
        let mut entry = entry.map_err(not_tar)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            pax_without_names(&mut entry).map_err(|e| e.unwrap_or_else(&not_tar))?;
            continue;
        }
        if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            return Err("a GNU long name: a bundle's file names are plain and short (64 characters at most)".into());
        }
        let path = entry.path().map_err(|e| format!("an entry's name is not valid: {e}"))?.into_owned();
        let shown = shorten(&path.display().to_string());
        // "./" and "./file": the folder tar itself writes; everything else must be a plain file name.
        let name = match path.strip_prefix(".").unwrap_or(&path).to_str() {
            Some("") if kind.is_dir() => continue,
            Some(name) if valid_name(name) => name.to_string(),
            _ => return Err(format!("{shown}: only plain file names at the top level (no paths, no '..')")),
        };
        if !kind.is_file() {
            return Err(format!("{shown}: only regular files (no links, folders or devices)"));
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
        let copied = std::io::copy(&mut (&mut entry).take(allowed - total + 1), &mut out).map_err(not_tar)?;
        total += copied;
        if total > allowed {
            return Err(too_big());
        }
    }
    if entries == 0 {
        return Err("the bundle holds no file".into());
    }
    Ok(total)
}

/// Reads a PAX header of at most `MAX_PAX_BYTES` and refuses one that renames, resizes or links
/// the next entry (its times and owners are ignored, as everything but the bytes is).
/// `Err(Ok(reason))`: refused; `Err(Err(e))`: the stream failed.
fn pax_without_names(entry: &mut impl Read) -> Result<(), Result<String, std::io::Error>> {
    let mut records = Vec::new();
    entry.take(MAX_PAX_BYTES + 1).read_to_end(&mut records).map_err(Err)?;
    if records.len() as u64 > MAX_PAX_BYTES {
        return Err(Ok(format!("a PAX header over {MAX_PAX_BYTES} bytes: refused")));
    }
    for record in tar::PaxExtensions::new(&records) {
        let key = record.map_err(Err)?.key().unwrap_or("").to_string();
        if ["path", "linkpath", "size"].contains(&key.as_str()) || key.starts_with("GNU.sparse") {
            return Err(Ok(format!(
                "a PAX header sets {}: a bundle's entries are plain files with short names",
                shorten(&key)
            )));
        }
    }
    Ok(())
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
    fn header_entries_and_skipped_entries_cannot_carry_a_bomb() {
        use tar::EntryType::*;
        // 64 MiB of zeros packs to about 64 KB: each would have been read whole, or skipped uncounted.
        let zeros = vec![0u8; 64 << 20];
        let long_name = try_unpack("././@LongLink", GNULongName, &zeros).unwrap_err();
        assert!(long_name.contains("GNU long name"), "{long_name}");
        let pax = try_unpack("PaxHeaders/x", XHeader, &zeros).unwrap_err();
        assert!(pax.contains("PAX header over"), "{pax}");
        let folder = try_unpack("./", Directory, &zeros).unwrap_err();
        assert!(folder.contains("bomb"), "a folder entry's data counts: {folder}");
        let renamed = try_unpack("PaxHeaders/x", XHeader, b"19 path=../../evil\n").unwrap_err();
        assert!(renamed.contains("sets \"path\""), "{renamed}");
    }

    #[test]
    fn a_pax_header_with_times_is_read_and_a_long_name_is_shortened_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        let mut builder = tar::Builder::new(GzEncoder::new(std::fs::File::create(&path).unwrap(), Compression::fast()));
        builder.append_pax_extensions([("mtime", b"1.5".as_slice()), ("atime", b"1.5".as_slice())]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("manifest.json").unwrap();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, b"{}".as_slice()).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let into = dir.path().join("out");
        std::fs::create_dir(&into).unwrap();
        assert_eq!(unpack(&path, std::fs::metadata(&path).unwrap().len(), &into, 1 << 20), Ok(2));

        let long = "a".repeat(99);
        let error = try_unpack(&long, tar::EntryType::Regular, b"x").unwrap_err();
        assert!(error.len() < 200 && error.contains("99 bytes"), "{error}");
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
