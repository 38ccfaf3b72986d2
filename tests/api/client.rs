//! The callers' clients against the real server made to answer 503 (a queue of one):
//! tests/client/check_client.py drives clients/python/food_client.py and examples/client.rs
//! (which `cargo test` builds) and checks retries, Retry-After, the deadline and the warm-up.
use std::time::Duration;

use crate::helpers::{python_check, repo_path, spawn_app_with, test_config};

#[tokio::test]
async fn the_clients_retry_overload_honour_retry_after_and_keep_their_deadline() {
    // cargo test builds the examples beside the test binaries' folder (target/release/examples under scripts/test.sh).
    let example = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/client");
    assert!(example.exists(), "{} is missing: `cargo test` builds it (or cargo build --examples)", example.display());
    let mut config = test_config();
    config.queue_capacity = 1;
    let app = spawn_app_with(config).await;

    let (photo, text_file) = (repo_path("sample/fruits.jpg"), repo_path("Cargo.toml"));
    let args = [app.address.as_ref(), photo.as_os_str(), text_file.as_os_str(), example.as_os_str()];
    let stdout = python_check("tests/client/check_client.py", &args, Duration::from_secs(300)).await;
    assert!(!stdout.contains("FAIL") && stdout.matches("ok   ").count() >= 9, "{stdout}");
}
