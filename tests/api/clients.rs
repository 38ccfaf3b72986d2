//! The Open Inference Protocol's clients from PyPI against this server: tests/clients/triton_http.py
//! drives tritonclient.http (with its defaults, the binary data extension, and in JSON mode) and
//! KServe's InferenceRESTClient; tests/clients/triton_grpc.py drives tritonclient.grpc.
use std::time::Duration;

use crate::helpers::{python_check, repo_path, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn tritonclient_http_and_kserves_rest_client_work_with_their_defaults() {
    let app = spawn_app().await;
    let photo = repo_path("sample/fruits.jpg");
    let args = [app.address.trim_start_matches("http://").as_ref(), photo.as_os_str()];
    let stdout = python_check("tests/clients/triton_http.py", &args, Duration::from_secs(180)).await;
    assert!(!stdout.contains("FAIL") && stdout.contains("ok   kserve InferenceRESTClient infer"), "{stdout}");
}

/// tests/clients/triton_grpc.py drives tritonclient.grpc: health, metadata, the repository index,
/// infer (raw image bytes, an optional text, classification, a version), statistics and errors.
#[tokio::test]
async fn tritonclient_grpc_works_against_the_grpc_port() {
    let mut config = test_config();
    config.grpc_port = Some(0);
    let app = spawn_app_with(config).await;
    let grpc = format!("127.0.0.1:{}", app.grpc_port.expect("a gRPC port"));
    let photo = repo_path("sample/fruits.jpg");
    let args = [grpc.as_ref(), photo.as_os_str()];
    let stdout = python_check("tests/clients/triton_grpc.py", &args, Duration::from_secs(180)).await;
    assert!(!stdout.contains("FAIL") && stdout.contains("ok   statistics"), "{stdout}");
}
