//! A client that hangs up while its request waits for the model costs no forward pass.
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{sample, spawn_app, TestApp};

/// A whole multipart request with one image, written raw so the test controls the socket.
fn raw_request(path: &str, images: &[Vec<u8>]) -> Vec<u8> {
    let boundary = "closedtestboundary";
    let mut body = Vec::new();
    for image in images {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n")
                .bytes(),
        );
        body.extend(image);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend(body);
    request
}

async fn status(app: &TestApp) -> Value {
    app.get_json("/system_status").await
}

/// Polls until the server has counted `n` requests dropped for a closed client (bounded).
async fn wait_for_client_closed(app: &TestApp, n: u64) -> Value {
    let started = Instant::now();
    loop {
        let status = status(app).await;
        if status["requests"]["client_closed"].as_u64() == Some(n) {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "client_closed never reached {n}: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_request_whose_client_hangs_up_is_dropped_before_its_forward_pass() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_string();
    let photo = |tag: &str| [sample("orange.jpg"), tag.as_bytes().to_vec()].concat(); // new bytes: uncached

    for (path, images, n) in
        [("/predict", vec![photo("single")], 1), ("/predict/batch", vec![photo("b1"), photo("b2")], 2)]
    {
        let mut client = TcpStream::connect(&address).await.unwrap();
        client.write_all(&raw_request(path, &images)).await.unwrap();
        drop(client); // hangs up without reading the answer
        let status = wait_for_client_closed(&app, n).await;
        assert_eq!(status["queue"]["completed"], 0, "{path}: no forward pass ran for a gone client: {status}");
    }
    // The server carries on, and a client that stays gets its answer.
    app.predict_ok(&photo("stays"), None).await;
    let status = status(&app).await;
    assert_eq!(
        (status["queue"]["completed"].as_u64(), status["requests"]["client_closed"].as_u64()),
        (Some(1), Some(2))
    );
}
