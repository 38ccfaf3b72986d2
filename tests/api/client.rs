//! The callers' clients against the real server made to answer 503 (a queue of one):
//! tests/client/check_client.py drives the clients/python package (sync and asyncio) and
//! examples/client.rs (which `cargo test` builds) and checks retries, Retry-After, the hard
//! deadline, the typed errors, versions and routing, the admin client and the warm-up. And the
//! package installs with pip into a fresh virtual environment, as a user installs it.
use std::time::Duration;

use crate::helpers::{python_check, repo_path, spawn_app, spawn_app_with, test_config};

const TOKEN: &str = "client-admin-token";

#[tokio::test]
async fn the_clients_retry_overload_honour_retry_after_and_keep_their_deadline() {
    // cargo test builds the examples beside the test binaries' folder (target/release/examples under scripts/test.sh).
    let example = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/client");
    assert!(example.exists(), "{} is missing: `cargo test` builds it (or cargo build --examples)", example.display());
    let mut config = test_config();
    config.queue_capacity = 1;
    config.admin_token = Some(TOKEN.parse().unwrap());
    let app = spawn_app_with(config).await;

    let (photo, text_file) = (repo_path("sample/fruits.jpg"), repo_path("Cargo.toml"));
    let args = [app.address.as_ref(), photo.as_os_str(), text_file.as_os_str(), example.as_os_str(), TOKEN.as_ref()];
    let stdout = python_check("tests/client/check_client.py", &args, Duration::from_secs(300)).await;
    assert!(!stdout.contains("FAIL") && stdout.matches("ok   ").count() >= 18, "{stdout}");
}

/// `pip install clients/python` into a new virtual environment (its dependency, httpx, from PyPI
/// or pip's cache), then a prediction from that environment's Python.
#[tokio::test]
async fn the_python_client_installs_with_pip_into_a_fresh_venv_and_answers() {
    let app = spawn_app().await;
    let venv = tempfile::tempdir().unwrap();
    let run = |program: std::path::PathBuf, args: Vec<std::ffi::OsString>| async move {
        let output = tokio::process::Command::new(&program).args(&args).kill_on_drop(true).output();
        let output = tokio::time::timeout(Duration::from_secs(300), output).await.expect("within 5 min").unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{} {args:?}: {}\n{stdout}\n{stderr}", program.display(), output.status);
        stdout.into_owned()
    };
    run(repo_path(".venv/bin/python"), vec!["-m".into(), "venv".into(), venv.path().join("env").into()]).await;
    // From a copy: setuptools builds in the package's folder (build/, *.egg-info).
    let source = venv.path().join("food-api-client");
    run("cp".into(), vec!["-r".into(), repo_path("clients/python").into(), source.clone().into()]).await;
    let pip = venv.path().join("env/bin/pip");
    run(pip.clone(), vec!["install".into(), "--quiet".into(), source.into()]).await;
    let listed = run(pip, vec!["show".into(), "food-api-client".into()]).await;
    assert!(listed.contains("Version: 0.2.0"), "{listed}");
    let script = format!(
        "import food_client, sys\nassert 'clients' not in food_client.__file__, food_client.__file__\n\
         with food_client.FoodClient({:?}, deadline=60) as c:\n    a = c.predict(open({:?}, 'rb').read())\n\
         print(a.label, a.model_version, food_client.__version__)",
        app.address,
        repo_path("sample/fruits.jpg").display().to_string()
    );
    let out = run(venv.path().join("env/bin/python"), vec!["-c".into(), script.into()]).await;
    assert!(out.starts_with("lemon ") && out.trim_end().ends_with(" 0.2.0"), "{out}");
}
