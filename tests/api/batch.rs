//! POST /predict/batch: answers in order, per-item errors, shared caches, limits.
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{error_of, sample, spawn_app, spawn_app_with, test_config};

fn image(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("upload")
}

async fn batch_ok(app: &crate::helpers::TestApp, form: Form) -> Value {
    let response = app.post_form("/predict/batch", form).await;
    assert_eq!(response.status(), 200, "batch failed: {}", response.text().await.unwrap());
    response.json().await.unwrap()
}

#[tokio::test]
async fn items_are_answered_in_order_like_single_requests_with_per_item_errors() {
    let app = spawn_app().await;
    // Texts pair with images by position, wherever they sit: here all before the files, as
    // Python's requests sends them. The empty text leaves the broken file's item without one.
    let form = Form::new()
        .text("text", "a pile of oranges")
        .text("text", "")
        .part("image", image(sample("fruits.jpg")))
        .part("image", image(b"this is not a photo".to_vec()))
        .part("image", image(sample("coffee.png")))
        .part("image", image(sample("orange.jpg")[..20_000].to_vec()));
    let body = batch_ok(&app, form).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(body["errors"], 2);

    let single = app.predict_ok(&sample("fruits.jpg"), Some("a pile of oranges")).await;
    assert_eq!(items[0]["label"], "orange", "the text moved lemon to orange: {}", items[0]);
    assert_eq!(items[0]["text"], "a pile of oranges");
    assert_eq!(items[0]["confidence"], single["confidence"], "same answer as a single request");
    assert_eq!(single["cache_hit"], true, "the batch filled the shared prediction cache");

    assert_eq!(
        (items[1]["status"].as_u64(), items[1]["error_type"].as_str()),
        (Some(415), Some("unsupported_media_type"))
    );
    assert_eq!(items[2]["label"], "espresso");
    assert!(items[2]["text"].is_null(), "no third text: {}", items[2]);
    assert_eq!((items[3]["status"].as_u64(), items[3]["error_type"].as_str()), (Some(400), Some("invalid_image")));

    // And the other way round: what single requests computed, a batch gets from the cache.
    let again = batch_ok(&app, Form::new().part("image", image(sample("coffee.png")))).await;
    assert_eq!(again["items"][0]["cache_hit"], true);
}

#[tokio::test]
async fn a_batch_beyond_its_limits_or_without_images_is_refused_whole() {
    let mut config = test_config();
    config.max_batch_items = 3;
    let app = spawn_app_with(config).await;
    let photo = sample("orange.jpg");

    let four = (0..4).fold(Form::new(), |form, _| form.part("image", image(photo.clone())));
    let (status, kind, error) = error_of(app.post_form("/predict/batch", four).await).await;
    assert_eq!((status, kind.as_str()), (400, "validation"), "{error}");
    assert!(error.contains("limit of 3"), "{error}");

    let (status, kind, _) = error_of(app.post_form("/predict/batch", Form::new().text("text", "pizza")).await).await;
    assert_eq!((status, kind.as_str()), (400, "validation"));

    let spare_text = Form::new().part("image", image(photo.clone())).text("text", "a").text("text", "b");
    let (status, _, error) = error_of(app.post_form("/predict/batch", spare_text).await).await;
    assert_eq!(status, 400);
    assert!(error.contains("by position"), "{error}");

    let not_multipart =
        app.client.post(format!("{}/predict/batch", app.address)).body(photo.clone()).send().await.unwrap();
    assert_eq!(error_of(not_multipart).await.0, 415);

    let three = (0..3).fold(Form::new(), |form, _| form.part("image", image(photo.clone())));
    assert_eq!(batch_ok(&app, three).await["errors"], 0, "at the limit is fine");
}

#[tokio::test]
async fn the_batch_body_limit_is_its_own() {
    let mut config = test_config();
    config.max_upload_bytes = 60_000;
    config.max_batch_upload_bytes = 200_000;
    let app = spawn_app_with(config).await;
    let photo = sample("orange.jpg"); // 50 KB: three fit a batch, not a single /predict's limit x3
    let three = (0..3).fold(Form::new(), |form, _| form.part("image", image(photo.clone())));
    assert_eq!(batch_ok(&app, three).await["items"].as_array().unwrap().len(), 3);
    let five = (0..5).fold(Form::new(), |form, _| form.part("image", image(photo.clone())));
    let (status, kind, _) = error_of(app.post_form("/predict/batch", five).await).await;
    assert_eq!((status, kind.as_str()), (413, "payload_too_large"));
}
