//! The callers' clients against the real server made to answer 503 (a queue of one):
//! tests/client/check_client.py drives clients/python/food_client.py and examples/client.rs
//! (which `cargo test` builds) and checks retries, Retry-After, the deadline and the warm-up.
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{repo_path, spawn_app_with, test_config};

#[tokio::test]
async fn the_clients_retry_overload_honour_retry_after_and_keep_their_deadline() {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)", python.display());
    // cargo test builds the examples beside the test binaries' folder (target/debug/examples).
    let example = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/client");
    assert!(example.exists(), "{} is missing: `cargo test` builds it (or cargo build --examples)", example.display());
    let mut config = test_config();
    config.queue_capacity = 1;
    let app = spawn_app_with(config).await;

    let check = Command::new(&python)
        .arg(repo_path("tests/client/check_client.py"))
        .arg(&app.address)
        .arg(repo_path("sample/fruits.jpg"))
        .arg(repo_path("Cargo.toml"))
        .arg(&example)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), check)
        .await
        .expect("the client checks finished within 300 s")
        .expect("the client checks start");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "the clients failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(!stdout.contains("FAIL") && stdout.matches("ok   ").count() >= 9, "{stdout}");
}
