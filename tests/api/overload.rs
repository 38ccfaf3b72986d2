use futures_util::future::join_all;
use food_api::config::OverloadStatus;

use crate::helpers::{sample, spawn_app_with, test_config};

#[tokio::test]
async fn a_full_queue_is_refused_at_once_and_health_stays_up() {
    let mut config = test_config();
    config.queue_capacity = 1;
    config.overload_status = OverloadStatus::TooManyRequests;
    let app = spawn_app_with(config).await;
    let image = sample("orange.jpg");
    // Twelve uncached requests at once, each with a new text: each puts two jobs on a queue of one,
    // while a single forward pass takes 15 ms or more.
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
    assert_eq!(app.get("/health").await.status(), 200);
    app.predict_ok(&image, Some("after the burst")).await;
}
