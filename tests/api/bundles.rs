//! Versions as bundles: download, upload (off by default), and what an upload may not do: bring
//! files that do not match their hash, paths, links, a compression bomb, or weights that hang the
//! loader (validated in a child process with a time limit: the server keeps answering). Nothing
//! of a refused upload is left behind.
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{error_of, lite2, repo_path, sample, spawn_app, spawn_app_with, test_config, TestApp};

pub fn upload_config() -> food_api::config::Config {
    let mut config = test_config();
    config.enable_model_upload = true;
    // Tests run inside the test binary: the validator is the server's own binary.
    config.validate_with = Some(env!("CARGO_BIN_EXE_food-api").into());
    config.validate_timeout_seconds = 20;
    config
}

impl TestApp {
    pub async fn upload(&self, bundle: &[u8], digest: Option<&str>, version: &str) -> reqwest::Response {
        let sha = hex::encode(Sha256::digest(bundle));
        let url = format!("{}/models/food/versions?version={version}", self.address);
        let request = self.client.post(url).header("Content-Type", "application/gzip").body(bundle.to_vec());
        request.header("X-Bundle-SHA256", digest.unwrap_or(&sha)).send().await.expect("request sent")
    }

    /// Folders under the app's repository/food: versions and anything left over.
    fn repository_entries(&self) -> Vec<String> {
        let dir = self.dirs.as_ref().unwrap().path().join("models/food");
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }
}

/// A bundle of the given files (name, bytes), plus a symlink when asked.
pub fn bundle(files: &[(&str, Vec<u8>)], symlink: Option<&str>) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    if let Some(name) = symlink {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, name, "/etc/passwd").unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

pub fn version_files(version: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo_path("models/food").join(version);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|name| (name.clone(), std::fs::read(dir.join(&name)).unwrap()))
        .collect();
    files.sort();
    files
}

pub fn as_refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<u8>)> {
    files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect()
}

#[tokio::test]
async fn upload_is_off_unless_enabled() {
    let app = spawn_app().await;
    let (status, _, error) = error_of(app.upload(b"whatever", None, "v9").await).await;
    assert_eq!(status, 403);
    assert!(error.contains("--enable-model-upload"), "{error}");
}

#[tokio::test]
async fn a_downloaded_version_uploads_as_a_new_version_that_loads_and_answers_alike() {
    let app = spawn_app_with(upload_config()).await;
    let v2 = lite2();
    let response = app.get(&format!("/models/food/versions/{v2}/download")).await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let bundle = response.bytes().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(&bundle))), "the ETag is the bundle's SHA-256");
    let again =
        app.client.get(format!("{}/models/food/versions/{v2}/download", app.address)).header("If-None-Match", &etag);
    assert_eq!(again.send().await.unwrap().status(), 304);

    let response = app.upload(&bundle, None, "lite2-copy").await;
    assert_eq!(response.status(), 201);
    // Checked in the sandboxed child, with the server's settings: fusion on (the default), and fused.
    let validation = response.json::<Value>().await.unwrap()["validation"].clone();
    assert_eq!(
        (&validation["sandbox"], &validation["fusion"]),
        (&"landlock+seccomp".into(), &true.into()),
        "{validation}"
    );
    assert!(validation["fused_graphs"].as_u64() > Some(0), "the fused path ran in the validator: {validation}");
    let state = app.version_state("lite2-copy").await;
    assert_eq!(state["state"], "available");
    let original = app.get_json(&format!("/models/food/versions/{v2}")).await;
    assert_eq!(state["fingerprint"], original["fingerprint"], "the same files: the same model");
    app.load_version("lite2-copy").await;
    let coffee = sample("coffee.png");
    app.load_version(&v2).await;
    let (copy, theirs) = (app.predict_on("lite2-copy", &coffee).await.1, app.predict_on(&v2, &coffee).await.1);
    assert_eq!((&copy["label"], &copy["confidence"]), (&theirs["label"], &theirs["confidence"]));
    let (status, _, _) = error_of(app.upload(&bundle, None, "lite2-copy").await).await;
    assert_eq!(status, 409, "versions are immutable");
}

#[tokio::test]
async fn hostile_or_broken_bundles_are_refused_and_leave_nothing_behind() {
    let app = spawn_app_with(upload_config()).await;
    let before = app.repository_entries();
    let files = version_files(&lite2());
    let good = bundle(&as_refs(&files), None);

    let (status, _, error) = error_of(app.upload(&good, Some(&"0".repeat(64)), "x1").await).await;
    assert!(status == 400 && error.contains("SHA-256"), "{status} {error}");
    let (status, _, _) = error_of(app.upload(&good, Some("not-a-hash"), "x1").await).await;
    assert_eq!(status, 400);

    let mut traversal = as_refs(&files);
    traversal.push(("../../evil.sh", b"echo owned".to_vec()));
    let symlinked = bundle(&as_refs(&files), Some("passwd"));
    let bomb = bundle(&[("manifest.json", vec![b' '; 40 << 20])], None);
    for (what, body) in [("a path", bundle(&traversal, None)), ("a symlink", symlinked), ("a bomb", bomb)] {
        let (status, kind, error) = error_of(app.upload(&body, None, "x2").await).await;
        assert_eq!((status, kind.as_str()), (422, "invalid_model"), "{what}: {error}");
    }
    // A bundle without the text encoder is not a model: the validator says which file is missing.
    let partial: Vec<(&str, Vec<u8>)> = as_refs(&files).into_iter().filter(|(n, _)| !n.starts_with("minilm")).collect();
    let (status, _, error) = error_of(app.upload(&bundle(&partial, None), None, "x3").await).await;
    assert!(status == 422 && error.contains("file not found"), "{status} {error}");

    assert_eq!(app.repository_entries(), before, "no version and no leftover folder");
    assert!(!Path::new("/evil.sh").exists() && !repo_path("evil.sh").exists());
    assert_eq!(app.get("/health").await.status(), 200);
}

/// Runs `script` (Python, with the weights' path as its argument) to make a TorchScript file.
pub fn make_weights(script: &str, dir: &Path, name: &str) -> std::path::PathBuf {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh", python.display());
    // TorchScript reads the module's source: it must be in a file.
    let source = dir.join(format!("{name}.py"));
    std::fs::write(&source, script).unwrap();
    let weights = dir.join(name);
    let made = std::process::Command::new(python).arg(&source).arg(&weights).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    weights
}

/// Lite2's bundle with its image weights replaced by `weights`.
pub fn bundle_with_weights(weights: &Path) -> Vec<u8> {
    let name = weights.file_name().unwrap().to_str().unwrap().to_string();
    let mut files = version_files(&lite2());
    let manifest = files.iter_mut().find(|(n, _)| n == "manifest.json").unwrap();
    let mut json: Value = serde_json::from_slice(&manifest.1).unwrap();
    json["weights"] = name.clone().into();
    manifest.1 = serde_json::to_vec(&json).unwrap();
    files.retain(|(n, _)| !n.starts_with("efficientnet"));
    files.push((name, std::fs::read(weights).unwrap()));
    bundle(&as_refs(&files), None)
}

#[tokio::test]
async fn weights_that_hang_the_loader_are_refused_at_the_time_limit_while_the_server_answers() {
    // A real TorchScript module whose forward never returns: the warm-up in the validator hangs.
    let dir = tempfile::tempdir().unwrap();
    let script = "import sys, torch\n\
        class Hang(torch.nn.Module):\n    def forward(self, x):\n        i = 0\n        while i >= 0:\n            i = i + 1\n        return x\n\
        torch.jit.script(Hang()).save(sys.argv[1])\n";
    let body = bundle_with_weights(&make_weights(script, dir.path(), "hang.pt"));
    let mut config = upload_config();
    config.validate_timeout_seconds = 3;
    let app = spawn_app_with(config).await;
    let before = app.repository_entries();

    let started = std::time::Instant::now();
    let upload = app.upload(&body, None, "hang");
    let meanwhile = async { app.post_predict(&sample("coffee.png"), None).await.status() };
    let (response, during) = tokio::join!(upload, meanwhile);
    assert_eq!(during, 200, "the server answers while the validator hangs");
    let (status, _, error) = error_of(response).await;
    assert!(status == 422 && error.contains("did not finish within 3 s"), "{status} {error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(app.repository_entries(), before);
}

#[tokio::test]
async fn weights_that_crash_libtorch_are_refused_and_the_server_keeps_serving() {
    // A TorchScript archive whose code nests 100,000 parentheses: libtorch's parser recurses until
    // the stack runs out and the process dies (checked: `torch.jit.load` in Python dies of SIGSEGV).
    // Loaded in the server, it would take the server down.
    let dir = tempfile::tempdir().unwrap();
    let script = "import sys, zipfile, torch\n\
        class M(torch.nn.Module):\n    def forward(self, x):\n        return x + 1\n\
        base = sys.argv[1] + '.base'\n\
        torch.jit.script(M()).save(base)\n\
        zin = zipfile.ZipFile(base)\n\
        with zipfile.ZipFile(sys.argv[1], 'w') as zout:\n\
        \x20   for name in zin.namelist():\n\
        \x20       data = zin.read(name)\n\
        \x20       if name.endswith('code/__torch__.py'):\n\
        \x20           data = data.replace(b'torch.add(x, 1)', b'torch.add(' + b'(' * 100000 + b'x' + b')' * 100000 + b', 1)')\n\
        \x20       if not name.endswith('.debug_pkl'):\n\
        \x20           zout.writestr(zipfile.ZipInfo(name), data)\n";
    let body = bundle_with_weights(&make_weights(script, dir.path(), "crash.pt"));
    let app = spawn_app_with(upload_config()).await;
    let before = app.repository_entries();
    let (status, kind, error) = error_of(app.upload(&body, None, "crash").await).await;
    assert_eq!((status, kind.as_str()), (422, "invalid_model"), "{error}");
    // SIGSEGV in Python; in Rust the stack guard turns the overflow into an abort (SIGABRT).
    assert!(error.starts_with("bundle: these files crashed the validator (signal "), "{error}");
    assert_eq!(app.repository_entries(), before);
    app.predict_ok(&sample("coffee.png"), None).await;
}
