//! POST /predict with `application/json`: `{"image": "<base64 or data URL>", "text" | "prompt"}`,
//! the same answers, cache and errors as multipart.
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{error_of, sample, spawn_app, spawn_app_with, test_config, TestApp};

async fn post_json(app: &TestApp, body: Value) -> reqwest::Response {
    app.client.post(format!("{}/predict", app.address)).json(&body).send().await.expect("request sent")
}

#[tokio::test]
async fn a_base64_image_gets_the_multipart_answer_and_shares_its_cache_entry() {
    let app = spawn_app().await;
    let photo = sample("fruits.jpg");
    let multipart = app.predict_ok(&photo, Some("a pile of oranges")).await;

    let response = post_json(&app, json!({"image": STANDARD.encode(&photo), "text": "a pile of oranges"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (&body["label"], &body["confidence"], &body["top_k"]),
        (&multipart["label"], &multipart["confidence"], &multipart["top_k"])
    );
    assert_eq!(body["cache_hit"], true, "same image bytes and text: the multipart request's entry");
}

#[tokio::test]
async fn a_data_url_with_a_truss_style_prompt_is_read_like_image_and_text() {
    let app = spawn_app().await;
    let url = format!("data:image/jpeg;base64,{}", STANDARD.encode(sample("orange.jpg")));
    let response = post_json(&app, json!({"image": url, "prompt": "Image of an orange"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["label"].as_str(), body["text"].as_str()), (Some("orange"), Some("Image of an orange")));
}

#[tokio::test]
async fn bad_json_bodies_get_the_same_errors_as_multipart_ones() {
    let mut config = test_config();
    config.max_upload_bytes = 100_000;
    let app = spawn_app_with(config).await;
    let raw = |body: &'static str| {
        app.client.post(format!("{}/predict", app.address)).header("content-type", "application/json").body(body)
    };
    let (status, kind, error) = error_of(raw("{\"image\": ").send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (400, "validation"), "{error}");

    for (body, status, kind) in [
        (json!({"text": "pizza"}), 400, "validation"),
        (json!({"image": "this is not base64!"}), 400, "validation"),
        (json!({"image": STANDARD.encode(b"plain text, not a picture")}), 415, "unsupported_media_type"),
        (json!({"image": STANDARD.encode(sample("coffee.png"))}), 413, "payload_too_large"),
        (json!({"image": STANDARD.encode(sample("orange.jpg")), "text": "x".repeat(1001)}), 400, "validation"),
    ] {
        let (got_status, got_kind, error) = error_of(post_json(&app, body).await).await;
        assert_eq!((got_status, got_kind.as_str()), (status, kind), "{error}");
    }
    app.predict_ok(&sample("orange.jpg"), None).await;
}
