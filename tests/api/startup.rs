use std::process::Command;

use food_api::startup::Application;

use crate::helpers::test_config;

#[test]
fn the_binary_exits_non_zero_naming_the_missing_file_and_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_food-api"))
        .args(["--port", "0", "--model-dir"])
        .arg(empty.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("manifest.json") && lines[0].contains("not found"), "{stderr}");
    assert!(lines[0].contains("scripts/setup.sh"), "{stderr}");
}

#[tokio::test]
async fn start_up_with_a_corrupt_class_mapping_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("class_mapping.json");
    std::fs::write(&mapping, "{not json").unwrap();
    let mut config = test_config();
    config.class_mapping = mapping;
    let err = Application::build(config).await.err().expect("start-up fails");
    let message = format!("{err:#}");
    assert!(message.contains("class_mapping.json") && message.contains("JSON object"), "{message}");
}
