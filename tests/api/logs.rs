//! The binary's logs as JSON lines: settings once at start with the token redacted, then one line
//! per request carrying the id that the response echoes in `X-Request-Id`.
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{sample, server_command, Server};

#[tokio::test]
async fn json_logs_carry_the_redacted_settings_and_one_line_per_request_with_its_id() {
    // Its own repository and data folder: the repo's are the developer's (and other tests read them).
    let dirs = tempfile::tempdir().unwrap();
    let mut server = Server(
        server_command(dirs.path())
            .args(["--workers", "1", "--torch-threads", "1", "--log-format", "json", "--admin-token", "s3cret-token"])
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = server.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| drop(lines_tx.send(l)))
    });
    let next_json = |what: &str| -> Value {
        loop {
            let line = lines.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| panic!("no {what} line"));
            let json: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            if json["message"] == what {
                return json;
            }
        }
    };

    let starting = next_json("starting");
    let settings = starting.to_string();
    assert!(settings.contains("[redacted]") && !settings.contains("s3cret-token"), "{settings}");
    let port = next_json("ready")["port"].as_u64().expect("the port as a number");

    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(sample("coffee.png")).file_name("coffee.png"));
    let response =
        reqwest::Client::new().post(format!("http://127.0.0.1:{port}/predict")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!id.is_empty());

    let line = next_json("request");
    drop(server);
    assert_eq!(line["request_id"], id.as_str(), "{line}");
    assert_eq!(
        (line["route"].as_str(), line["method"].as_str(), line["status"].as_u64()),
        (Some("/predict"), Some("POST"), Some(200)),
        "{line}"
    );
    assert_eq!((line["cache_hit"].as_bool(), line["label"].as_str()), (Some(false), Some("espresso")), "{line}");
    assert!(line["inference_ms"].as_f64().unwrap() > 0.0 && line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
}

#[tokio::test]
async fn every_response_carries_its_own_request_id() {
    let app = crate::helpers::spawn_app().await;
    let ids: Vec<String> = futures_util::future::join_all((0..2).map(|_| app.get("/health")))
        .await
        .iter()
        .map(|r| r.headers()["x-request-id"].to_str().unwrap().to_string())
        .collect();
    assert!(!ids[0].is_empty() && ids[0] != ids[1], "{ids:?}");
}
