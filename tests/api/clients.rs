//! The Open Inference Protocol's clients from PyPI against this server: tests/clients/triton_http.py
//! drives tritonclient.http (with its defaults, the binary data extension, and in JSON mode) and
//! KServe's InferenceRESTClient.
use std::time::Duration;

use crate::helpers::{python_check, repo_path, spawn_app};

#[tokio::test]
async fn tritonclient_http_and_kserves_rest_client_work_with_their_defaults() {
    let app = spawn_app().await;
    let photo = repo_path("sample/fruits.jpg");
    let args = [app.address.trim_start_matches("http://").as_ref(), photo.as_os_str()];
    let stdout = python_check("tests/clients/triton_http.py", &args, Duration::from_secs(180)).await;
    assert!(!stdout.contains("FAIL") && stdout.contains("ok   kserve InferenceRESTClient infer"), "{stdout}");
}
