use std::process::Command;

use food_api::startup::Application;

use crate::helpers::{config_in, server_command};

#[test]
fn the_binary_exits_non_zero_naming_the_missing_file_and_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_food-api"))
        .args(["--port", "0", "--model-dir"])
        .arg(empty.path())
        .arg("--model-repository")
        .arg(empty.path().join("models"))
        .arg("--data-dir")
        .arg(empty.path().join("data"))
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
    let mut config = config_in(dir.path());
    config.class_mapping = mapping;
    let err = Application::build(config).await.err().expect("start-up fails");
    let message = format!("{err:#}");
    assert!(message.contains("class_mapping.json") && message.contains("JSON object"), "{message}");
}

#[test]
fn sigterm_stops_the_server_cleanly_with_exit_code_0() {
    use std::io::{BufRead, BufReader};

    // Its own repository and data folder: the repo's are the developer's (and other tests read them).
    let dirs = tempfile::tempdir().unwrap();
    let mut child = server_command(dirs.path())
        .args(["--workers", "1", "--torch-threads", "1", "--shutdown-grace-seconds", "5"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines.by_ref().map(|l| l.unwrap()).find(|l| l.contains(" ready ")).expect("a ready line");
    let port: u16 = ready.split("port=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let health = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(health.is_ok(), "listening on {port}");

    // A watchdog, not a wait: should the server never stop, it is killed and the test fails.
    let pid = child.id().to_string();
    std::thread::spawn({
        let pid = pid.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_secs(60));
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}; log: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopping") && l.contains("SIGTERM")), "{rest:?}");
    assert!(rest.iter().any(|l| l.ends_with(" stopped")), "{rest:?}");
}
