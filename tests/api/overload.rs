use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use food_api::config::OverloadStatus;
use food_api::runtime::Device;
use food_api::runtime::{InferError, InferenceWorker, Lane, LoadedModel, ModelPaths, ThreadLayout, TorchThreads, Work};
use futures_util::future::join_all;
use futures_util::poll;

use crate::helpers::{repo_path, sample, spawn_app_with, test_config};

#[tokio::test]
async fn a_full_queue_is_refused_at_once_and_health_stays_up() {
    let mut config = test_config();
    config.queue_capacity = 1;
    config.overload_status = OverloadStatus::TooManyRequests;
    // The texts only make each request uncached: with weight 0 none is encoded, so each request
    // needs one place. (With a text, a request needs two places at once, and on a queue of one it
    // may refuse itself: then no request need succeed, and this test failed when another test
    // loaded the CPU.)
    config.text_weight = 0.0;
    let app = spawn_app_with(config).await;
    let image = sample("orange.jpg");
    // Twelve uncached requests at once on a queue of one, while a forward pass takes 15 ms or more:
    // the first always finds the queue empty.
    let responses = join_all((0..12).map(|i| {
        let (app, image) = (&app, &image);
        async move { app.post_predict(image, Some(&format!("fruit number {i}"))).await }
    }))
    .await;
    let (mut ok, mut refused) = (0, 0);
    for response in responses {
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(response.headers().get("retry-after").unwrap(), "1");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error_type"], "overloaded");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0 && ok > 0, "ok {ok}, refused {refused}");
    // The history records what the clients got (Statuses, as the answers).
    let rows = app.rows_when("status=429", refused).await;
    assert_eq!(rows.len(), refused, "one row per refusal");
    assert_eq!(app.history("limit=1000&status=503").await["rows"].as_array().unwrap().len(), 0);
    assert_eq!(app.get("/health").await.status(), 200);
    app.predict_ok(&image, Some("after the burst")).await;
}

/// The repo's model and a worker of one inference thread (one intra-op thread), 4 client places
/// and 1 shadow place.
async fn one_thread_worker() -> (Arc<LoadedModel>, InferenceWorker) {
    let paths = ModelPaths { model_dir: repo_path("checkpoints"), class_mapping: repo_path("class_mapping.json") };
    let layout = ThreadLayout { inference_threads: 1, torch: TorchThreads { shared: 1, alone: 1 }, bind: false };
    let model = Arc::new(
        tokio::task::spawn_blocking(move || LoadedModel::load(&paths, Device::Cpu, layout, 1)).await.unwrap().unwrap(),
    );
    (model, InferenceWorker::spawn(4, 1, layout).unwrap())
}

#[tokio::test]
async fn a_request_that_gives_up_frees_its_place_at_once_and_is_never_run() {
    let (model, worker) = one_thread_worker().await;
    let image = || Work::Image(vec![0.0; 3 * 224 * 224]);

    // Three requests keep the thread busy for tens of milliseconds.
    let mut busy: Vec<_> = (0..3).map(|_| Box::pin(worker.infer(model.clone(), image(), Lane::Primary))).collect();
    for request in &mut busy {
        assert!(poll!(request).is_pending());
    }
    assert_eq!(worker.queued(), 3);
    // A fourth is queued, then gives up (what a deadline or a vanished client does).
    let gave_up = tokio::time::timeout(Duration::ZERO, worker.infer(model.clone(), image(), Lane::Primary)).await;
    assert!(gave_up.is_err());
    assert_eq!(worker.queued(), 3, "its place is free at once, not when the thread gets to it");
    // So a fifth gets in although the fourth's job is still in the channel.
    let admitted = worker.infer(model.clone(), image(), Lane::Primary);
    let (answers, last) = tokio::join!(join_all(busy), admitted);
    assert!(answers.into_iter().chain([last]).all(|answer| answer.is_ok()));
    assert_eq!(worker.stats().completed.load(Ordering::Relaxed), 4);
    assert_eq!(worker.stats().skipped.load(Ordering::Relaxed), 1, "the abandoned job never ran");
    assert_eq!(worker.queued(), 0);
}

#[tokio::test]
async fn past_the_deadline_the_answer_is_504_and_the_server_carries_on() {
    let mut config = test_config();
    config.deadline_ms = 1;
    let app = spawn_app_with(config).await;
    let response = app.post_predict(&sample("coffee.png"), None).await;
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "deadline_exceeded");
    assert!(body["error"].as_str().unwrap().contains("1 ms"), "{body}");
    assert_eq!(app.get("/health").await.status(), 200);
    let status: serde_json::Value = app.get("/system_status").await.json().await.unwrap();
    assert_eq!(status["queue"]["depth"], 0, "{status}");
}

#[tokio::test]
async fn two_inference_threads_answer_concurrent_requests_alike() {
    let mut config = test_config();
    config.inference_threads = 2;
    config.torch_threads = 1;
    let app = spawn_app_with(config).await;
    let orange = sample("orange.jpg");
    let answers = join_all((0..8).map(|i| {
        let (app, orange) = (&app, &orange);
        async move { app.predict_ok(orange, Some(&format!("fruit number {i}"))).await }
    }))
    .await;
    for answer in &answers {
        assert_eq!(answer["image"]["label"], "orange", "{answer}");
        assert_eq!(
            answer["image"]["probability"], answers[0]["image"]["probability"],
            "same image, same answer on either thread"
        );
    }
    let status = app.get_json("/system_status").await;
    assert_eq!(status["queue"]["completed"], 16, "8 images and 8 texts: {status}");
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn mirrored_jobs_take_no_clients_place_and_run_only_when_no_clients_job_waits() {
    let (model, worker) = one_thread_worker().await;
    let image = || Work::Image(vec![0.0; 3 * 224 * 224]);
    let finished = std::sync::Mutex::new(Vec::new());

    let mut running = Box::pin(worker.infer(model.clone(), image(), Lane::Primary));
    assert!(poll!(&mut running).is_pending());
    // A mirror is queued first, a client's job after it.
    let mut mirrored = Box::pin(worker.infer(model.clone(), image(), Lane::Shadow));
    assert!(poll!(&mut mirrored).is_pending());
    let refused = worker.infer(model.clone(), image(), Lane::Shadow).await;
    assert!(matches!(refused, Err(InferError::QueueFull)), "the shadow lane has one place");
    assert_eq!(worker.queued(), 1, "a mirror takes none of the clients' places");
    let client = worker.infer(model.clone(), image(), Lane::Primary);
    let note = |name: &'static str| {
        let finished = &finished;
        move |answer: Result<_, InferError>| {
            assert!(answer.is_ok());
            finished.lock().unwrap().push(name);
        }
    };
    tokio::join!(async { note("running")(running.await) }, async { note("mirror")(mirrored.await) }, async {
        note("client")(client.await)
    });
    assert_eq!(*finished.lock().unwrap(), ["running", "client", "mirror"], "the client's job went first");
}
