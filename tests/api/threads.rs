//! Each inference thread and its libtorch (OpenMP) team bound to cores of their own. What that
//! binding does to a forward pass, and which thread count a fused model runs with, is tested on
//! its own in tests/threads.rs (it measures CPU time, which other tests' load would blur).
use crate::helpers::{spawn_app, spawn_app_with, test_config};

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
