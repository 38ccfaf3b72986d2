//! A bounded server: what a request may cost is refused before it is spent. Bodies in a content
//! coding are never inflated; a request with a body takes a place among those in progress; bodies
//! and decodes draw from one memory budget; a decoder may not allocate past the image's header;
//! v2 bodies are parsed with limits. Each case answers 4xx or 503, never a 5xx error or a crash.
use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use image::{ImageBuffer, ImageFormat, Rgba};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use food_api::config::OverloadStatus;

use crate::helpers::{error_of, sample, spawn_app, spawn_app_with, test_config, TestApp};
use crate::metrics::scrape;

const MODEL: &str = "food";

fn png<P: image::Pixel<Subpixel = S> + image::PixelWithColorType, S: image::Primitive>(
    width: u32,
    height: u32,
) -> Vec<u8>
where
    [S]: image::EncodableLayout,
{
    let image: ImageBuffer<P, Vec<S>> = ImageBuffer::new(width, height);
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// A GIF whose header declares a 1x1 screen and whose one frame is 11000x11000 (484 MB as RGBA),
/// with an empty LZW stream: what a decoder allocates for the frame is the whole attack.
fn gif_with_a_frame_larger_than_its_screen() -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend([1, 0, 1, 0, 0x80, 0, 0]); // screen 1x1, a global palette of 2 colours
    gif.extend([0, 0, 0, 255, 255, 255]);
    gif.push(0x2C); // image descriptor
    gif.extend([0, 0, 0, 0]);
    gif.extend(11000u16.to_le_bytes());
    gif.extend(11000u16.to_le_bytes());
    gif.push(0);
    gif.extend([2, 1, 0x2C, 0, 0x3B]); // LZW: clear code, end code; trailer
    gif
}

/// A request whose head declares `length` bytes of body, of which only the start is sent: the
/// server holds it (its place, its memory) until the connection closes.
async fn stalled_upload(app: &TestApp, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n--b\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Waits until /system_status shows `what` (a condition the server reaches on its own).
async fn until(app: &TestApp, what: &str, reached: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let admission = app.get_json("/system_status").await["admission"].clone();
        if reached(&admission) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never reached: {what} ({admission})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_body_in_a_content_coding_is_refused_not_inflated() {
    let app = spawn_app().await;
    for (path, coding) in [
        (format!("/v2/models/{MODEL}/infer"), "zstd"),
        ("/predict".to_string(), "gzip"),
        ("/predict".to_string(), "br, identity"),
    ] {
        let response = app
            .client
            .post(format!("{}{path}", app.address))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", coding)
            .body(vec![0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["accept-encoding"], "identity", "{path} {coding}");
        let (status, kind, error) = error_of(response).await;
        assert_eq!((status, kind.as_str()), (415, "unsupported_media_type"), "{path} {coding}: {error}");
    }
    let identity = app.client.post(format!("{}/predict", app.address)).header("Content-Encoding", "identity");
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(sample("orange.jpg")).file_name("orange.jpg"));
    assert_eq!(identity.multipart(form).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_gif_frame_larger_than_its_declared_screen_is_refused_before_it_is_allocated() {
    let app = spawn_app().await;
    let (status, kind, error) =
        error_of(app.post_predict(&gif_with_a_frame_larger_than_its_screen(), None).await).await;
    assert_eq!((status, kind.as_str()), (413, "image_too_large"), "{error}");
}

#[tokio::test]
async fn an_image_whose_decode_needs_more_than_the_whole_budget_is_413() {
    let mut config = test_config();
    config.memory_budget_mb = 16;
    let app = spawn_app_with(config).await;
    // 2000x1500 16-bit RGBA: 24 MB decoded, 9 MB more as RGB8; about 10 KB on the wire.
    let big = png::<Rgba<u16>, u16>(2000, 1500);
    let (status, kind, error) = error_of(app.post_predict(&big, None).await).await;
    assert_eq!((status, kind.as_str()), (413, "image_too_large"), "{error}");
    assert!(error.contains("budget"), "{error}");
    app.predict_ok(&sample("orange.jpg"), None).await;
}

#[tokio::test]
async fn a_decode_that_does_not_fit_beside_the_bodies_in_flight_is_refused_at_once() {
    let mut config = test_config();
    config.memory_budget_mb = 16;
    let app = spawn_app_with(config).await;
    // A body declared as 10 MB holds 10 MB of the budget as soon as its handler starts.
    let stalled = stalled_upload(&app, 10_000_000).await;
    until(&app, "the stalled body's memory held", |a| a["memory_in_use_bytes"].as_u64() >= Some(10_000_000)).await;
    // 1500x1000 RGBA8: 6 MB decoded and 4.5 MB as RGB8, more than the 6 MB left.
    let image = png::<Rgba<u8>, u8>(1500, 1000);
    let refused = app.post_predict(&image, None).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let (status, kind, error) = error_of(refused).await;
    assert_eq!((status, kind.as_str()), (503, "overloaded"), "{error}");

    drop(stalled);
    until(&app, "the memory given back", |a| a["memory_in_use_bytes"] == 0).await;
    app.predict_ok(&image, None).await;
}

#[tokio::test]
async fn requests_beyond_the_bound_in_progress_are_refused_at_once_and_health_stays_up() {
    let mut config = test_config();
    config.max_concurrent_requests = 1;
    let app = spawn_app_with(config).await;
    let stalled = stalled_upload(&app, 1000).await;
    until(&app, "one request in progress", |a| a["requests_in_progress"] == 1).await;
    let (status, kind, error) = error_of(app.post_predict(&sample("orange.jpg"), None).await).await;
    assert_eq!((status, kind.as_str()), (503, "overloaded"), "{error}");
    assert!(error.contains("in progress"), "{error}");
    assert_eq!(app.get("/health").await.status(), 200, "GETs take no place");

    drop(stalled);
    until(&app, "the place given back", |a| a["requests_in_progress"] == 0).await;
    app.predict_ok(&sample("orange.jpg"), None).await;
}

/// `--overload-status 429`: every refusal of a full server says 429, the door's included (error.rs's
/// `Statuses` alone decides it), and the metrics count what the client got.
#[tokio::test]
async fn the_door_says_429_when_told_to_and_the_metrics_count_429() {
    let mut config = test_config();
    config.max_concurrent_requests = 1;
    config.overload_status = OverloadStatus::TooManyRequests;
    let app = spawn_app_with(config).await;
    let stalled = stalled_upload(&app, 1000).await;
    until(&app, "one request in progress", |a| a["requests_in_progress"] == 1).await;
    let refused = app.post_predict(&sample("orange.jpg"), None).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let (status, kind, error) = error_of(refused).await;
    assert_eq!((status, kind.as_str()), (429, "overloaded"), "{error}");
    let counted = scrape(&app).await;
    assert_eq!(counted.get(r#"food_api_http_requests_total{route="/predict",status="429"}"#), Some(&1.0));
    assert!(!counted.keys().any(|k| k.contains(r#"status="503""#)), "no 503 was answered");

    drop(stalled);
    until(&app, "the place given back", |a| a["requests_in_progress"] == 0).await;
    app.predict_ok(&sample("orange.jpg"), None).await;
}

#[tokio::test]
async fn v2_bodies_are_parsed_within_limits() {
    let app = spawn_app().await;
    let infer = |body: String| {
        app.client
            .post(format!("{}/v2/models/{MODEL}/infer", app.address))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let orange = STANDARD.encode(sample("orange.jpg"));
    let overflowing =
        json!({"inputs": [{"name": "image", "shape": [i64::MAX, i64::MAX], "datatype": "BYTES", "data": [orange]}]});
    let (status, _, error) = error_of(infer(overflowing.to_string()).await.unwrap()).await;
    assert_eq!(status, 400, "{error}");
    assert!(error.contains("does not hold"), "{error}");

    // 2 MB of one-character elements: refused while parsing, at the 10,001st.
    let many = format!(
        r#"{{"inputs": [{{"name": "image", "shape": [1], "datatype": "BYTES", "data": [{}"a"]}}]}}"#,
        "\"a\",".repeat(400_000)
    );
    let (status, kind, error) = error_of(infer(many).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (400, "validation"), "{error}");
    assert!(error.contains("more than 10000 elements"), "{error}");

    let numbers = format!(
        r#"{{"inputs": [{{"name": "image", "shape": [1], "datatype": "BYTES", "data": [1{}]}}]}}"#,
        ",1".repeat(5_000)
    );
    let (status, _, error) = error_of(infer(numbers).await.unwrap()).await;
    assert_eq!(status, 400, "{error}");
}

#[tokio::test]
async fn a_v2_client_that_stalls_mid_body_gets_408() {
    let mut config = test_config();
    config.request_timeout_seconds = 1;
    let app = spawn_app_with(config).await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"inputs\": ["
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408") && response.contains("request_timeout"), "{response}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_to_be_accepted() {
    let mut config = test_config();
    (config.workers, config.max_connections) = (1, 1);
    let app = spawn_app_with(config).await;
    let idle = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    // The one connection is taken (a client that says nothing): a second is not served...
    let health = tokio::spawn({
        let (client, url) = (reqwest::Client::new(), format!("{}/health", app.address));
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!health.is_finished(), "a second connection was served beside the first");
    // ...until the first closes.
    drop(idle);
    let status = tokio::time::timeout(Duration::from_secs(20), health).await.expect("served once the first closed");
    assert_eq!(status.unwrap().unwrap(), 200);
}
