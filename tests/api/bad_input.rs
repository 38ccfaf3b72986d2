//! Client mistakes: each a 4xx with a JSON error, never a 5xx, and the server keeps answering.
use reqwest::multipart::{Form, Part};

use crate::helpers::{error_of, sample, spawn_app, spawn_app_with, test_config, TestApp};

async fn assert_refused(app: &TestApp, form: Form, status: u16, kind: &str) -> String {
    let (got_status, got_kind, message) = error_of(app.post_form("/predict", form).await).await;
    assert_eq!((got_status, got_kind.as_str()), (status, kind), "{message}");
    message
}

fn image_form(bytes: Vec<u8>) -> Form {
    Form::new().part("image", Part::bytes(bytes).file_name("photo.jpg"))
}

#[tokio::test]
async fn predict_returns_400_without_an_image_field() {
    let app = spawn_app().await;
    let message = assert_refused(&app, Form::new().text("text", "Image of pizza"), 400, "validation").await;
    assert!(message.contains("image"), "{message}");
}

#[tokio::test]
async fn predict_returns_400_for_an_empty_file() {
    let app = spawn_app().await;
    assert_refused(&app, image_form(vec![]), 400, "invalid_image").await;
}

#[tokio::test]
async fn predict_returns_415_for_a_text_file() {
    let app = spawn_app().await;
    assert_refused(&app, image_form(b"just some words, not a photo\n".to_vec()), 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn predict_returns_415_for_an_image_format_it_does_not_decode() {
    let app = spawn_app().await;
    // An ICO header: a real image format, not one this server decodes.
    let ico = vec![0u8, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0];
    let message = assert_refused(&app, image_form(ico), 415, "unsupported_media_type").await;
    assert!(message.contains("Ico"), "{message}");
}

#[tokio::test]
async fn predict_returns_400_for_a_truncated_image() {
    let app = spawn_app().await;
    let png = sample("coffee.png");
    assert_refused(&app, image_form(png[..png.len() / 2].to_vec()), 400, "invalid_image").await;
}

#[tokio::test]
async fn predict_returns_413_over_the_upload_limit() {
    let mut config = test_config();
    config.max_upload_bytes = 100_000;
    let app = spawn_app_with(config).await;
    let message = assert_refused(&app, image_form(sample("coffee.png")), 413, "payload_too_large").await;
    assert!(message.contains("100000"), "{message}");
    // Within the limit still works.
    app.predict_ok(&sample("orange.jpg"), None).await;
}

#[tokio::test]
async fn predict_returns_415_for_a_body_that_is_neither_multipart_nor_json() {
    let app = spawn_app().await;
    let request =
        app.client.post(format!("{}/predict", app.address)).header("content-type", "text/plain").body("image=x");
    let response = request.send().await.unwrap();
    let (status, kind, _) = error_of(response).await;
    assert_eq!((status, kind.as_str()), (415, "unsupported_media_type"));
}

#[tokio::test]
async fn predict_returns_400_for_a_multipart_body_without_boundary_or_malformed() {
    let app = spawn_app().await;
    for (content_type, body) in
        [("multipart/form-data", "--x\r\n"), ("multipart/form-data; boundary=xyz", "this is not multipart")]
    {
        let response = app
            .client
            .post(format!("{}/predict", app.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, kind, message) = error_of(response).await;
        assert_eq!((status, kind.as_str()), (400, "validation"), "{content_type}: {message}");
    }
}

#[tokio::test]
async fn predict_returns_400_for_text_that_is_not_utf8_or_too_long() {
    let app = spawn_app().await;
    let image = sample("orange.jpg");
    let not_utf8 = image_form(image.clone()).part("text", Part::bytes(vec![0xff, 0xfe, 0x41]));
    let message = assert_refused(&app, not_utf8, 400, "validation").await;
    assert!(message.contains("UTF-8"), "{message}");
    let too_long = image_form(image).text("text", "a".repeat(1001));
    let message = assert_refused(&app, too_long, 400, "validation").await;
    assert!(message.contains("1000"), "{message}");
}

#[tokio::test]
async fn predict_returns_400_for_two_image_fields() {
    let app = spawn_app().await;
    let form = image_form(sample("orange.jpg")).part("image", Part::bytes(sample("apple.jpg")));
    let message = assert_refused(&app, form, 400, "validation").await;
    assert!(message.contains("more than one"), "{message}");
}

#[tokio::test]
async fn predict_returns_400_for_two_text_fields() {
    let app = spawn_app().await;
    let form = image_form(sample("orange.jpg")).text("text", "oranges").text("text", "lemons");
    let message = assert_refused(&app, form, 400, "validation").await;
    assert!(message.contains("more than one `text`"), "{message}");
}

#[tokio::test]
async fn after_bad_requests_the_server_still_answers_and_counted_no_server_error() {
    let app = spawn_app().await;
    for form in [image_form(vec![]), image_form(b"text".to_vec()), Form::new()] {
        assert!(app.post_form("/predict", form).await.status().is_client_error());
    }
    app.predict_ok(&sample("coffee.png"), None).await;
    let requests = app.get_json("/system_status").await["requests"].clone();
    assert_eq!(requests["client_error"], 3);
    assert_eq!(requests["server_error"], 0);
}
