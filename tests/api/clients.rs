//! The Open Inference Protocol's clients from PyPI against this server: tests/clients/triton_http.py
//! drives tritonclient.http (with its defaults, the binary data extension, and in JSON mode) and
//! KServe's InferenceRESTClient.
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{repo_path, spawn_app};

#[tokio::test]
async fn tritonclient_http_and_kserves_rest_client_work_with_their_defaults() {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)", python.display());
    let app = spawn_app().await;
    let check = Command::new(&python)
        .arg(repo_path("tests/clients/triton_http.py"))
        .arg(app.address.trim_start_matches("http://"))
        .arg(repo_path("sample/fruits.jpg"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), check)
        .await
        .expect("the client checks finished within 180 s")
        .expect("the client checks start");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "the protocol's clients failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(!stdout.contains("FAIL") && stdout.contains("ok   kserve InferenceRESTClient infer"), "{stdout}");
}
