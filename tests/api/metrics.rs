//! GET /metrics after traffic: each counter moved by what the traffic did. Every app has its own
//! registry, so the counts are exact.
use std::collections::HashMap;

use crate::helpers::{sample, spawn_app_on_model_copy, TestApp};

/// `name{labels}` -> value, for every sample line.
pub async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    *metrics.get(series).unwrap_or_else(|| {
        panic!("no {series} in {:#?}", metrics.keys().filter(|k| !k.contains("_bucket")).collect::<Vec<_>>())
    })
}

#[tokio::test]
async fn metrics_count_requests_caches_stages_labels_and_reloads() {
    let app = spawn_app_on_model_copy().await;
    let coffee = sample("coffee.png");
    app.predict_ok(&coffee, None).await;
    app.predict_ok(&coffee, None).await; // a prediction cache hit
    app.predict_ok(&sample("orange.jpg"), Some("Image of an orange")).await;
    assert_eq!(app.post_predict(b"not an image", None).await.status(), 415);
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    assert_eq!(app.post_reload().await.status(), 200);

    let m = scrape(&app).await;
    assert_eq!(value(&m, r#"food_api_http_requests_total{route="/predict",status="200"}"#), 3.0);
    assert_eq!(value(&m, r#"food_api_http_requests_total{route="/predict",status="415"}"#), 1.0);
    assert_eq!(
        value(&m, r#"food_api_http_requests_total{route="unmatched",status="404"}"#),
        1.0,
        "one series for any unknown path"
    );
    assert_eq!(value(&m, r#"food_api_http_request_duration_seconds_count{route="/predict"}"#), 4.0);
    assert_eq!(value(&m, "food_api_http_requests_in_flight"), 1.0, "the scrape itself");

    // Every prediction series names the model and version that answered.
    let version = app.get_json("/health").await["model"]["version"].as_str().unwrap().to_string();
    let model = format!(r#"model="food",version="{version}""#);
    assert_eq!(value(&m, &format!(r#"food_api_predictions_total{{label="espresso",{model}}}"#)), 2.0);
    assert_eq!(value(&m, &format!(r#"food_api_predictions_total{{label="orange",{model}}}"#)), 1.0);
    let count = |name: &str| value(&m, &format!("food_api_{name}_count{{{model}}}"));
    assert_eq!(count("inference_seconds"), 2.0, "the cache hit ran no forward pass");
    assert_eq!(count("queue_wait_seconds"), 2.0);
    assert_eq!(count("preprocess_seconds"), 2.0);
    assert!(value(&m, &format!("food_api_inference_seconds_sum{{{model}}}")) > 0.0);

    // Counted before the reload (the counters are cumulative).
    assert_eq!(value(&m, r#"food_api_cache_hits_total{cache="prediction"}"#), 1.0);
    assert_eq!(value(&m, r#"food_api_cache_misses_total{cache="prediction"}"#), 2.0);
    assert_eq!(value(&m, r#"food_api_cache_misses_total{cache="text"}"#), 1.0);
    assert_eq!(value(&m, r#"food_api_cache_capacity{cache="prediction"}"#), 100.0);
    assert_eq!(value(&m, r#"food_api_model_reloads_total{outcome="success"}"#), 1.0);
    assert_eq!(value(&m, r#"food_api_model_reloads_total{outcome="failure"}"#), 0.0);
    assert_eq!(value(&m, "food_api_model_generation"), 2.0);
    assert!(value(&m, "food_api_model_load_seconds") > 0.0);
    assert!(
        m.keys().any(|k| k.starts_with("food_api_model_info{") && k.contains(r#"format="torchscript""#)),
        "{:?}",
        m.keys()
    );
    assert_eq!(value(&m, "food_api_queue_depth"), 0.0);
    assert_eq!(value(&m, "food_api_forward_passes_total"), 3.0, "two images and one text");
}
