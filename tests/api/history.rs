//! The inference history in real databases: SQLite in a temporary data folder, and PostgreSQL
//! servers of their own (Debian's package) that tests stop and start. Rows arrive after the answers
//! (one writer, off the request path): tests poll, within a deadline, until they are there.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{error_of, lite0, lite2, sample, sha256_hex, spawn_app_with, test_config, TestApp};
use crate::metrics::scrape;
use crate::postgres::Postgres;

const PATIENCE: Duration = Duration::from_secs(30);

/// A photo no one sent before: new bytes after the JPEG's end, so it misses the cache.
fn fresh_photo(n: u32) -> Vec<u8> {
    let mut photo = sample("orange.jpg");
    photo.extend_from_slice(format!("history-{n}-{}", fastrand::u64(..)).as_bytes());
    photo
}

impl TestApp {
    pub async fn history(&self, query: &str) -> Value {
        self.get_json(&format!("/inference/history?{query}")).await
    }

    /// Polls until the history holds at least `n` rows matching `query` (one page of up to 1000).
    pub async fn rows_when(&self, query: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let rows = self.history(&format!("limit=1000&{query}")).await["rows"].as_array().unwrap().clone();
            if rows.len() >= n {
                return rows;
            }
            assert!(Instant::now() < deadline, "{} rows for {query:?} after {PATIENCE:?}, not {n}", rows.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// /predict with headers; the answer's X-Request-Id and body.
    pub async fn predict_with(&self, image: &[u8], text: Option<&str>, headers: &[(&str, &str)]) -> (String, Value) {
        let mut form = Form::new().part("image", Part::bytes(image.to_vec()).file_name("photo"));
        if let Some(text) = text {
            form = form.text("text", text.to_string());
        }
        let mut request = self.client.post(format!("{}/predict", self.address)).multipart(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
        (id, response.json().await.unwrap())
    }

    pub async fn history_status(&self) -> String {
        self.get_json("/health").await["history"].as_str().unwrap().to_string()
    }

    async fn history_metric(&self, outcome: &str) -> u64 {
        let series = format!("food_api_history_rows_total{{outcome=\"{outcome}\"}}");
        scrape(self).await[&series] as u64
    }
}

fn only<'a>(rows: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["request_id"] == request_id).collect()
}

#[tokio::test]
async fn every_kind_of_prediction_is_recorded_with_its_fields_and_never_the_image_or_text() {
    let app = spawn_app_with(test_config()).await;
    let (v0, v2) = (lite0(), lite2());
    let orange = sample("orange.jpg");

    // A single prediction with a text, kept on its version by a sticky key; then the same again (cached).
    let (single, body) = app.predict_with(&orange, Some("fresh oranges"), &[("X-User-Id", "alice")]).await;
    let (cached, _) = app.predict_with(&orange, Some("fresh oranges"), &[("X-User-Id", "alice")]).await;
    // A batch of two, a v2 request of one, a pinned per-version prediction, and an image that does not decode.
    let form = Form::new()
        .part("image", Part::bytes(sample("coffee.png")).file_name("a"))
        .part("image", Part::bytes(sample("apple.jpg")).file_name("b"));
    let batch = app.post_form("/predict/batch", form).await;
    assert_eq!(batch.status(), 200);
    let batch = batch.headers()["x-request-id"].to_str().unwrap().to_string();
    let v2_body = json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [STANDARD.encode(sample("fruits.jpg"))]}]});
    let v2_answer =
        app.client.post(format!("{}/v2/models/food/infer", app.address)).json(&v2_body).send().await.unwrap();
    assert_eq!(v2_answer.status(), 200);
    let v2_id = v2_answer.headers()["x-request-id"].to_str().unwrap().to_string();
    let pinned_form = Form::new().part("image", Part::bytes(sample("cat.png")).file_name("c"));
    let pinned = app.post_form(&format!("/models/food/versions/{v0}/predict"), pinned_form).await;
    let pinned = pinned.headers()["x-request-id"].to_str().unwrap().to_string();
    let broken = orange[..orange.len() / 3].to_vec();
    let (failed, error) = app.predict_with(&broken, None, &[]).await;
    assert_eq!(error["error_type"], "invalid_image", "{error}");

    let rows = app.rows_when("", 7).await;
    let row = only(&rows, &single)[0];
    assert_eq!(row["label"], body["label"]);
    assert!((row["confidence"].as_f64().unwrap() - body["confidence"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(row["top_k"][0]["label"], body["top_k"][0]["label"]);
    assert_eq!(row["top_k"].as_array().unwrap().len(), 5);
    assert_eq!(
        (&row["model"], &row["version"], &row["endpoint"], &row["routing"], &row["role"], &row["status"]),
        (&json!("food"), &json!(v0), &json!("/predict"), &json!("sticky"), &json!("primary"), &json!(200))
    );
    assert_eq!(row["input_sha256"], sha256_hex(&orange));
    assert_eq!((&row["text_length"], &row["text"]), (&json!(13), &Value::Null), "the text's length, not the text");
    assert_eq!(row["text_sha256"], sha256_hex(b"fresh oranges"));
    assert_eq!(row["sticky_key_sha256"], sha256_hex(b"alice"));
    assert_eq!((&row["cache_hit"], &row["item"], &row["error"]), (&json!(false), &Value::Null, &Value::Null));
    assert!(row["latency_ms"].as_f64().unwrap() > 0.0 && row["at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(row["replica"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(only(&rows, &cached)[0]["cache_hit"], true);

    let mut items: Vec<(i64, String)> = only(&rows, &batch)
        .iter()
        .map(|r| (r["item"].as_i64().unwrap(), r["input_sha256"].as_str().unwrap().to_string()))
        .collect();
    items.sort();
    assert_eq!(items, vec![(0, sha256_hex(&sample("coffee.png"))), (1, sha256_hex(&sample("apple.jpg")))]);
    assert_eq!(only(&rows, &batch)[0]["endpoint"], "/predict/batch");
    let v2_row = only(&rows, &v2_id)[0];
    assert_eq!((&v2_row["endpoint"], &v2_row["item"]), (&json!("/v2/models/{name}/infer"), &json!(0)));
    assert_eq!(only(&rows, &pinned)[0]["routing"], "pinned");
    let failed = only(&rows, &failed)[0];
    assert_eq!((&failed["status"], &failed["label"]), (&json!(400), &Value::Null));
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");

    // A shadow run has its own row: same request, the shadow version, role shadow.
    app.load_version(&v2).await;
    let policy = json!({"split": [{"target": "stable", "weight": 100}], "shadow": {"target": v2, "percent": 100}});
    assert_eq!(app.put_routing(policy, None).await.status(), 200);
    let (mirrored, _) = app.predict_with(&sample("apple.jpg"), None, &[]).await;
    let shadows = app.rows_when(&format!("role=shadow&request_id={mirrored}"), 1).await;
    assert_eq!(
        (&shadows[0]["version"], &shadows[0]["routing"], &shadows[0]["status"]),
        (&json!(v2), &json!("shadow"), &json!(200))
    );
    let primary = app.rows_when(&format!("role=primary&request_id={mirrored}"), 1).await;
    assert_eq!((primary.len(), &primary[0]["version"]), (1, &json!(v0)));
    assert_eq!(primary[0]["input_sha256"], shadows[0]["input_sha256"]);

    // Management actions go to the same store.
    let log = app.get_json("/deployments?scope=store").await;
    let actions: Vec<&str> =
        log["deployments"].as_array().unwrap().iter().filter_map(|d| d["action"].as_str()).collect();
    assert!(actions.contains(&"routing") && actions.contains(&"load"), "{log}");
}

#[tokio::test]
async fn the_text_is_kept_only_when_asked() {
    let mut config = test_config();
    config.history_store_text = true;
    let app = spawn_app_with(config).await;
    let (id, _) = app.predict_with(&sample("orange.jpg"), Some("a bowl of oranges"), &[]).await;
    let rows = app.rows_when(&format!("request_id={id}"), 1).await;
    assert_eq!((&rows[0]["text"], &rows[0]["text_length"]), (&json!("a bowl of oranges"), &json!(17)));
}

#[tokio::test]
async fn pages_cover_every_row_once_newest_first_and_filters_select() {
    let app = spawn_app_with(test_config()).await;
    let photos = ["orange.jpg", "coffee.png", "apple.jpg"];
    let mut sent = Vec::new();
    for i in 0..24 {
        sent.push(app.predict_with(&sample(photos[i % 3]), None, &[]).await);
    }
    let all = app.rows_when("", 24).await;
    assert_eq!(all.len(), 24);

    // Pages of 7, while more predictions arrive between them: the pages hold exactly the first 24.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or("limit=7".to_string(), |c| format!("limit=7&cursor={c}"));
        let page = app.history(&query).await;
        seen.extend(page["rows"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_string()));
        app.predict_with(&sample("cat.png"), None, &[]).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        if cursor.is_some() && seen.len() == 7 {
            // The first page was the newest 7 of the 24.
            let newest: Vec<&str> = all[..7].iter().map(|r| r["request_id"].as_str().unwrap()).collect();
            assert_eq!(seen, newest);
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (24, 24), "no row twice, none missing: {seen:?}");
    let expected: HashSet<&String> = sent.iter().map(|(id, _)| id).collect();
    assert_eq!(unique, expected);
    let times: Vec<i64> = all.iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    // Filters, once the cats sent between the pages are written too.
    app.rows_when("", 28).await;
    let label = sent[0].1["label"].as_str().unwrap().to_string();
    let by_label = app.history(&format!("limit=1000&label={label}")).await;
    let by_label = by_label["rows"].as_array().unwrap();
    assert!(!by_label.is_empty() && by_label.iter().all(|r| r["label"] == label.as_str()));
    let misses = app.history("limit=1000&cache_hit=false").await["rows"].as_array().unwrap().len();
    let hits = app.history("limit=1000&cache_hit=true").await["rows"].as_array().unwrap().len();
    assert_eq!(misses, 4, "three photos and the cat, each computed once");
    assert!(hits >= 21, "{hits}");
    assert_eq!(app.history("role=shadow").await["rows"], json!([]));
    assert_eq!(app.history("version=nope").await["rows"], json!([]));
    let middle = all[12]["at_ms"].as_i64().unwrap();
    let since = app.history(&format!("limit=1000&since_ms={middle}")).await;
    assert!(since["rows"].as_array().unwrap().iter().all(|r| r["at_ms"].as_i64().unwrap() >= middle));
    let until = app.history(&format!("limit=1000&until_ms={middle}")).await;
    assert!(until["rows"].as_array().unwrap().iter().all(|r| r["at_ms"].as_i64().unwrap() < middle));

    for bad in [
        "limit=0",
        "limit=1001",
        "cursor=abc",
        "cursor=",
        "cursor=-1_2",
        "status=7",
        "since_ms=-1",
        "color=red",
        "cache_hit=maybe",
    ] {
        let (status, kind, _) = error_of(app.get(&format!("/inference/history?{bad}")).await).await;
        assert_eq!((status, kind.as_str()), (400, "validation"), "{bad}");
    }
}

#[tokio::test]
async fn stats_count_requests_errors_latency_and_labels_over_a_window() {
    let app = spawn_app_with(test_config()).await;
    let started = app.get_json("/health").await;
    assert_eq!(started["history"], "ok");
    let mut labels = Vec::new();
    for photo in ["orange.jpg", "orange.jpg", "coffee.png"] {
        labels.push(app.predict_with(&sample(photo), None, &[]).await.1["label"].as_str().unwrap().to_string());
    }
    let orange = sample("orange.jpg");
    app.predict_with(&orange[..orange.len() / 3], None, &[]).await;
    app.rows_when("", 4).await;

    let stats = app.get_json("/stats").await;
    let totals = &stats["totals"];
    assert_eq!(
        (&totals["requests"], &totals["errors"], &totals["client_errors"], &totals["cache_hits"]),
        (&json!(4), &json!(0), &json!(1), &json!(1)),
        "{stats}"
    );
    let p = &totals["latency_ms"];
    let (p50, p99) = (p["p50"].as_f64().unwrap(), p["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{p}");
    assert_eq!(stats["store"], "sqlite");
    let version = &stats["versions"][0];
    assert_eq!(
        (&version["version"], &version["role"], &version["requests"]),
        (&json!(lite0()), &json!("primary"), &json!(4))
    );
    let orange_count = version["labels"].as_array().unwrap().iter().find(|l| l["label"] == labels[0].as_str()).unwrap();
    assert_eq!(orange_count["count"], 2, "{version}");
    assert_eq!(stats["replicas"].as_array().unwrap().len(), 1);

    // A window before any of it is empty, and so is one that ends before it starts (the whole
    // history's rows lie in [since, until) of neither); a negative time is refused.
    for window in ["since_ms=0&until_ms=1000", &format!("since_ms={}&until_ms=0", u64::MAX >> 2)] {
        let empty = app.get_json(&format!("/stats?{window}")).await;
        assert_eq!((&empty["totals"]["requests"], &empty["versions"]), (&json!(0), &json!([])), "{window}");
    }
    let (status, _, _) = error_of(app.get("/stats?until_ms=-1").await).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn with_the_history_off_predictions_answer_and_its_routes_say_so() {
    let mut config = test_config();
    config.history_url = Some("off".parse().unwrap());
    let app = spawn_app_with(config).await;
    app.predict_ok(&sample("orange.jpg"), None).await;
    assert_eq!(app.history_status().await, "off");
    let (status, _, error) = error_of(app.get("/inference/history").await).await;
    assert_eq!(status, 404);
    assert!(error.contains("--history-url off"), "{error}");
    assert!(!app.data_dir().join("history.sqlite").exists());
}

#[tokio::test]
async fn old_rows_and_rows_past_the_maximum_are_pruned_in_the_background() {
    let mut config = test_config();
    config.history_max_rows = 5;
    config.history_prune_seconds = 1;
    let app = spawn_app_with(config).await;
    // A row from 40 days ago, written straight into the file, goes at the next pruning.
    let file = app.data_dir().join("history.sqlite");
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    let old_us = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64)
        - 40 * 86_400 * 1_000_000;
    sqlx::query(
        "INSERT INTO predictions (at_us, replica, request_id, model, version, endpoint, routing, role, input_sha256, \
         latency_ms, cache_hit, status) VALUES (?, 'old', 'from-long-ago', 'food', 'x', '/predict', 'weighted', \
         'primary', '00', 1.0, 0, 200)",
    )
    .bind(old_us)
    .execute(&mut db)
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(app.predict_with(&sample(["orange.jpg", "apple.jpg"][i % 2]), None, &[]).await.0);
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = app.history("limit=1000").await["rows"].as_array().unwrap().clone();
        let kept: Vec<&str> = rows.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
        if kept.len() <= 5 && kept.first().copied() == ids.last().map(String::as_str) {
            assert_eq!(kept, ids.iter().rev().take(5).map(String::as_str).collect::<Vec<_>>(), "the newest stay");
            break;
        }
        assert!(Instant::now() < deadline, "still {} rows: {kept:?}", kept.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(scrape(&app).await["food_api_history_pruned_rows_total"] > 0.0, "pruning is counted");
}

/// As root (CI), a file's mode does not stop writes, and an open file stays writable whatever its
/// mode: the store is made unwritable as another process would, by holding its write lock.
#[tokio::test]
async fn a_locked_sqlite_store_drops_rows_and_degrades_health_but_every_request_answers_then_writing_resumes() {
    let app = spawn_app_with(test_config()).await;
    app.predict_ok(&sample("orange.jpg"), None).await;
    app.rows_when("", 1).await;
    let file = app.data_dir().join("history.sqlite");
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();

    let mut during = 0;
    let deadline = Instant::now() + PATIENCE;
    while app.history_metric("dropped_store_error").await < 3 || app.history_status().await != "degraded" {
        let (_, body) = app.predict_with(&fresh_photo(during), None, &[]).await;
        assert!(body["label"].is_string(), "every request answers while the store is locked: {body}");
        during += 1;
        assert!(Instant::now() < deadline, "no drop seen after {during} requests");
    }
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200, "a degraded history never fails the health check");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let (after, _) = app.predict_with(&fresh_photo(1_000), None, &[]).await;
    app.rows_when(&format!("request_id={after}"), 1).await;
    let deadline = Instant::now() + PATIENCE;
    while app.history_status().await != "ok" {
        assert!(Instant::now() < deadline, "health stays degraded after the store is back");
        app.predict_ok(&sample("orange.jpg"), None).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn postgres_stopped_mid_traffic_loses_no_request_and_rows_resume_when_it_is_back() {
    let db = Postgres::start().await;
    let mut config = test_config();
    config.history_url = Some(db.url().parse().unwrap());
    let app = std::sync::Arc::new(spawn_app_with(config).await);
    app.predict_ok(&sample("orange.jpg"), None).await;
    app.rows_when("", 1).await;
    assert_eq!(app.get_json("/stats").await["store"], "postgres");

    // Four clients send photos (cached and not) until told to stop; every answer must be a 200.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut sent, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let photo = if sent % 4 == 0 { fresh_photo(c * 100_000 + sent) } else { sample("orange.jpg") };
                    let response = app.post_predict(&photo, None).await;
                    if response.status() != 200 {
                        failed.push(response.status().as_u16());
                    }
                    sent += 1;
                }
                (sent, failed)
            })
        })
        .collect();

    db.stop().await;
    let deadline = Instant::now() + PATIENCE;
    while app.history_status().await != "degraded" {
        assert!(Instant::now() < deadline, "health never said degraded with PostgreSQL stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = app.history_metric("dropped_store_error").await + app.history_metric("dropped_queue_full").await;
    let later = Instant::now() + PATIENCE;
    while app.history_metric("dropped_store_error").await + app.history_metric("dropped_queue_full").await <= dropped {
        assert!(Instant::now() < later, "the dropped count did not rise");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/health").await.status(), 200);

    db.resume().await;
    let resumed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    // Rows written after the restart, without restarting the server.
    app.rows_when(&format!("since_ms={resumed_at}"), 5).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (sent, failed) = client.await.unwrap();
        assert!(failed.is_empty(), "requests failed while the database was down: {failed:?}");
        total += sent;
    }
    assert!(total > 20, "{total} requests");
    let deadline = Instant::now() + PATIENCE;
    while app.history_status().await != "ok" {
        assert!(Instant::now() < deadline, "health stays degraded after PostgreSQL is back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_servers_sharing_postgres_see_each_others_rows_and_deployments() {
    let db = Postgres::start().await;
    let replica = |name: &str| {
        let mut config = test_config();
        config.history_url = Some(db.url().parse().unwrap());
        config.replica_name = Some(name.into());
        config
    };
    let (a, b) = (spawn_app_with(replica("replica-a")).await, spawn_app_with(replica("replica-b")).await);
    for _ in 0..3 {
        a.predict_ok(&sample("orange.jpg"), None).await;
    }
    for _ in 0..2 {
        b.predict_ok(&sample("coffee.png"), None).await;
    }
    let deadline = Instant::now() + PATIENCE;
    let stats = loop {
        let stats = a.get_json("/stats").await;
        if stats["totals"]["requests"] == 5 || Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["totals"]["requests"], 5, "{stats}");
    assert_eq!(
        stats["replicas"],
        json!([{"replica": "replica-a", "requests": 3}, {"replica": "replica-b", "requests": 2}])
    );
    assert_eq!(b.get_json("/stats").await["totals"]["requests"], 5, "either replica answers for both");
    let from_a = b.rows_when("replica=replica-a", 3).await;
    assert!(from_a.iter().all(|r| r["replica"] == "replica-a"));

    // A deployment on one replica shows in the other's view of the store.
    a.load_version(&lite2()).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = b.get_json("/deployments?scope=store").await;
        let found = log["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["replica"] == "replica-a" && d["action"] == "load" && d["version"] == lite2().as_str());
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "replica-a's load not in the shared store: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
