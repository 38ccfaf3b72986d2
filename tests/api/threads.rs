//! Each inference thread and its libtorch (OpenMP) team bound to cores of their own. What that
//! binding does to a forward pass, and which thread count a fused model runs with, is tested on
//! its own in tests/threads.rs (it measures CPU time, which other tests' load would blur).
use std::io::{BufRead, BufReader};
use std::process::Command;

use crate::helpers::{server_command, spawn_app, spawn_app_with, test_config, Server};

#[tokio::test]
async fn each_inference_thread_is_bound_to_a_core_unless_told_not_to() {
    let app = spawn_app().await;
    let status = app.get_json("/system_status").await;
    assert_eq!(
        status["queue"]["threads_bound_to_cores"], status["model"]["inference_threads"],
        "every inference thread bound (this process may use every CPU it counts; a container's CPU quota below the machine's would turn binding off): {}",
        status["queue"]
    );

    let mut config = test_config();
    config.no_thread_binding = true;
    let app = spawn_app_with(config).await;
    let status = app.get_json("/system_status").await;
    assert_eq!(status["queue"]["threads_bound_to_cores"], 0);
}

/// OMP_PROC_BIND=true (PyTorch's CPU tuning guides recommend it) makes libgomp, loaded with
/// libtorch, pin the process's first thread to one CPU before `main`, and every later thread
/// inherits that: the server counted one core and served on it, at half the throughput, silently.
/// Only a process of its own can show it: the variable is read when the binary starts.
#[tokio::test]
async fn openmp_binding_in_the_environment_does_not_confine_the_server_to_one_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(cores >= 2, "this test needs 2 CPUs to tell one core from all; this machine has {cores}");
    let dirs = tempfile::tempdir().unwrap();
    let mut server =
        Server(server_command(dirs.path()).args(["--workers", "1"]).env("OMP_PROC_BIND", "true").spawn().unwrap());
    // A watchdog, not a wait: should the server never get ready, it is killed and the test fails.
    let pid = server.0.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    });
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines().map(Result::unwrap);
    let mut log = Vec::new();
    let ready = loop {
        let line = lines.next().unwrap_or_else(|| panic!("the server stopped before it was ready: {log:#?}"));
        if line.contains(" ready ") {
            break line;
        }
        log.push(line);
    };
    let port = ready.split("port=").nth(1).unwrap().split_whitespace().next().unwrap();
    let status: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{port}/system_status")).await.unwrap().json().await.unwrap();

    assert_eq!(status["model"]["inference_threads"], cores, "one inference thread per core: {}", status["model"]);
    assert_eq!(status["queue"]["threads_bound_to_cores"], cores, "{}", status["queue"]);
    let warned = log.iter().any(|l| l.contains("WARN") && l.contains("OMP_PROC_BIND=true") && l.contains("widened"));
    assert!(warned, "a warning names the variable and what was done: {log:#?}");
}
