use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use food_api::config::Config;
use food_api::startup::Application;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tempfile::TempDir;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A private copy of the model files, for tests that change them; None serves the repo's.
    pub model_dir: Option<TempDir>,
    /// The app's own model repository and data folder, unless the test chose them.
    pub dirs: Option<TempDir>,
    /// The gRPC port, when the config set one.
    pub grpc_port: Option<u16>,
}

/// The versions set-up exported (scripts/export_model.py): (version, input size), Lite0 first.
pub fn exported_versions() -> Vec<(String, u64)> {
    let mut versions: Vec<(String, u64)> = std::fs::read_dir(repo_path("models/food"))
        .expect("models/food: run scripts/setup.sh")
        .filter_map(Result::ok)
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|v| !v.starts_with('.'))
        .map(|v| {
            let manifest: Value = serde_json::from_slice(
                &std::fs::read(repo_path("models/food").join(&v).join("manifest.json")).unwrap(),
            )
            .unwrap();
            let size = manifest["input_size"].as_u64().unwrap();
            (v, size)
        })
        .collect();
    versions.sort_by_key(|(_, size)| *size);
    assert!(versions.len() >= 2, "set-up exports two versions of food: {versions:?}");
    versions
}

/// The Lite0 version (what checkpoints/ holds) and the Lite2 one.
pub fn lite0() -> String {
    exported_versions().into_iter().find(|(_, size)| *size == 224).expect("a 224 version").0
}

pub fn lite2() -> String {
    exported_versions().into_iter().find(|(_, size)| *size == 260).expect("a 260 version").0
}

/// A model repository holding the exported versions, as hard links (immutable files: nothing is
/// copied), under `root/models`.
pub fn repository_in(root: &Path) -> PathBuf {
    let repository = root.join("models");
    for (version, _) in exported_versions() {
        link_version(&repo_path("models/food").join(&version), &repository.join("food").join(&version));
    }
    repository
}

/// The server's binary on port 0, with a repository and data folder of its own under `root` (the
/// checkout's are the developer's), run from the checkout, logging at info to a piped stderr; the
/// caller adds its flags and environment.
pub fn server_command(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_food-api"));
    command
        .args(["--port", "0", "--model-repository"])
        .arg(repository_in(root))
        .arg("--data-dir")
        .arg(root.join("data"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    command
}

/// A server process, killed and reaped however the test ends: a failed assertion leaves nothing
/// running.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Puts the version folder `from` at `to`: hard links where the file system allows (version files
/// are immutable), else copies.
pub fn link_version(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(file.file_name());
        if std::fs::hard_link(file.path(), &target).is_err() {
            std::fs::copy(file.path(), &target).unwrap();
        }
    }
}

pub fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The SHA-256 of `bytes` in lowercase hex, as the server and sha256sum write it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("sample").join(name)).unwrap_or_else(|e| panic!("sample/{name}: {e}"))
}

pub fn test_config() -> Config {
    let mut config = Config::defaults();
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.workers = 2;
    config.torch_threads = 1;
    // Replicas that share Redis share its signing secret, as the compose cluster's do.
    config.cache_secret = Some("the test replicas' shared cache secret".parse().unwrap());
    // The validator is the server's own binary (the test binary would run its tests instead).
    config.validate_with = Some(env!("CARGO_BIN_EXE_food-api").into());
    config
}

/// Settings whose repository and state live in `dirs`, so that a second app (a restart, a
/// replica) can start on the same ones.
pub fn config_in(dirs: &Path) -> Config {
    let mut config = test_config();
    config.model_repository = repository_in(dirs);
    config.data_dir = dirs.join("data");
    config
}

/// The app on the repo's model, with the default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// Unless the test chose them, the app gets its own repository (the exported versions) and data
/// folder, so that tests running at once never share state.
pub async fn spawn_app_with(mut config: Config) -> TestApp {
    let defaults = Config::defaults();
    let dirs =
        (config.model_repository == defaults.model_repository && config.data_dir == defaults.data_dir).then(|| {
            let dirs = tempfile::tempdir().unwrap();
            config.model_repository = repository_in(dirs.path());
            config.data_dir = dirs.path().join("data");
            dirs
        });
    let app = Application::build(config).await.expect("the app builds");
    let (address, grpc_port) = (format!("http://127.0.0.1:{}", app.port()), app.grpc_port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), model_dir: None, dirs, grpc_port }
}

fn copy_model_files(dir: &Path) {
    for file in [
        "manifest.json",
        "efficientnet_lite0.pt",
        "efficientnet_lite0.onnx",
        "minilm_l6_v2.pt",
        "minilm_l6_v2.onnx",
        "tokenizer.json",
    ] {
        std::fs::copy(repo_path("checkpoints").join(file), dir.join(file)).unwrap();
    }
    std::fs::copy(repo_path("class_mapping.json"), dir.join("class_mapping.json")).unwrap();
}

/// The app on a copy of the model files, which the test may then break or replace.
pub async fn spawn_app_on_model_copy() -> TestApp {
    spawn_app_on_model_copy_with(test_config(), |_| ()).await
}

/// The same, with `prepare` run on the copy before the app starts.
pub async fn spawn_app_on_model_copy_with(mut config: Config, prepare: impl FnOnce(&Path)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    copy_model_files(dir.path());
    prepare(dir.path());
    config.model_dir = dir.path().to_path_buf();
    config.class_mapping = dir.path().join("class_mapping.json");
    let mut app = spawn_app_with(config).await;
    app.model_dir = Some(dir);
    app
}

/// Points the manifest in `dir` at the ONNX export of the same image model.
pub fn use_onnx_image(dir: &Path) {
    edit_manifest(dir, |manifest| {
        manifest["format"] = "onnx".into();
        manifest["weights"] = "efficientnet_lite0.onnx".into();
    });
}

/// The image model and the text encoder both ONNX: what the build without libtorch serves.
pub fn use_onnx(dir: &Path) {
    use_onnx_image(dir);
    edit_manifest(dir, |manifest| {
        manifest["text_encoder"]["format"] = "onnx".into();
        manifest["text_encoder"]["weights"] = "minilm_l6_v2.onnx".into();
    });
}

pub fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

impl TestApp {
    /// Puts the repo's model files back into this app's copy.
    pub fn restore_model_files(&self) {
        copy_model_files(self.model_dir.as_ref().expect("spawned on a model copy").path());
    }

    pub fn model_file(&self, name: &str) -> PathBuf {
        self.model_dir.as_ref().expect("spawned on a model copy").path().join(name)
    }

    /// The app's own data folder (where its state, logs and SQLite history live).
    pub fn data_dir(&self) -> PathBuf {
        self.dirs.as_ref().expect("spawned with its own folders").path().join("data")
    }

    pub async fn post_predict(&self, image: &[u8], text: Option<&str>) -> reqwest::Response {
        let mut form = Form::new().part("image", Part::bytes(image.to_vec()).file_name("upload"));
        if let Some(text) = text {
            form = form.text("text", text.to_string());
        }
        self.post_form("/predict", form).await
    }

    pub async fn post_form(&self, path: &str, form: Form) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.address)).multipart(form).send().await.expect("request sent")
    }

    /// A prediction that must succeed, as JSON.
    pub async fn predict_ok(&self, image: &[u8], text: Option<&str>) -> Value {
        let response = self.post_predict(image, text).await;
        assert_eq!(response.status(), 200, "predict failed: {}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn post_reload(&self) -> reqwest::Response {
        self.client.post(format!("{}/reload_model", self.address)).send().await.expect("request sent")
    }
}

/// Status and JSON body of an error answer, which must carry `error` and `error_type`.
pub async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    let error = body["error"].as_str().expect("error message").to_string();
    let kind = body["error_type"].as_str().expect("error_type").to_string();
    (status, kind, error)
}

/// Runs one of the tests' Python checks (tests/<folder>/<script>.py) with the venv set-up made,
/// within `limit`; its stdout (printed) once it exits 0, else the test fails with both outputs. A
/// check that hangs fails the test instead of holding CI until its limit.
pub async fn python_check(script: &str, args: &[&std::ffi::OsStr], limit: std::time::Duration) -> String {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)", python.display());
    let run = tokio::process::Command::new(&python).arg(repo_path(script)).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{script} does not start: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout.into_owned()
}
