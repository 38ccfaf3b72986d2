//! Rows per second the history's writer sustains, on SQLite and on PostgreSQL: N rows queued at
//! once (a queue as large as N, so none is dropped), then the time until the writer has committed
//! them all. The rows are what a cached /predict records (the same sizes and fields).
//!
//!   cargo bench --bench history_writer -- sqlite:///tmp/h.sqlite postgres://postgres@127.0.0.1:5432/postgres
//!
//! bench/history.py runs it with a throwaway SQLite file and a PostgreSQL server of its own.
use std::time::{Duration, Instant};

use food_api::history::{History, HistorySettings, HistoryUrl, Role, Row, Target};

const ROWS: usize = 200_000;

fn row(i: usize) -> Row {
    Row {
        at_us: food_api::history::now_us(),
        request_id: format!("{i:032x}"),
        model: "food".into(),
        version: "lite0-57934424".into(),
        endpoint: "/predict".into(),
        routing: "weighted",
        role: Role::Primary,
        item: None,
        input_sha256: format!("{:064x}", i),
        text_length: Some(13),
        text_sha256: Some(format!("{:064x}", i + 1)),
        text: None,
        label: Some("orange".into()),
        confidence: Some(0.93),
        top_k: Some(r#"[{"label":"orange","index":950,"probability":0.93},{"label":"lemon","index":951,"probability":0.04},{"label":"banana","index":954,"probability":0.01},{"label":"pineapple","index":953,"probability":0.005},{"label":"fig","index":952,"probability":0.004}]"#.into()),
        latency_ms: 0.21,
        cache_hit: true,
        status: 200,
        error: None,
        sticky_key_sha256: None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let urls: Vec<String> = std::env::args().skip(1).filter(|a| a.contains("://")).collect();
    assert!(!urls.is_empty(), "pass sqlite://<file> and/or postgres://... URLs");
    for url in urls {
        let parsed: HistoryUrl = url.parse().expect("a history URL");
        let target = Target::of(Some(&parsed), std::path::Path::new("."));
        let history = History::start(HistorySettings {
            target,
            store_text: false,
            retention: Duration::from_secs(86_400),
            max_rows: u64::MAX / 2,
            queue_capacity: ROWS + 1,
            prune_every: Duration::from_secs(3600),
            replica: "bench".into(),
        })
        .await
        .expect("history starts");
        let rows: Vec<Row> = (0..ROWS).map(row).collect();
        let started = Instant::now();
        for r in rows {
            history.record(r);
        }
        let queued = started.elapsed();
        assert!(history.flush(Duration::from_secs(600)).await, "flushed");
        let took = started.elapsed();
        let counts = history.counts().expect("on");
        assert_eq!(counts.written as usize, ROWS, "every row written: {counts:?}");
        let kind = history.store_kind().unwrap_or("?");
        println!(
            "{kind}: {ROWS} rows in {:.2} s = {:.0} rows/s (queued in {:.1} ms)",
            took.as_secs_f64(),
            ROWS as f64 / took.as_secs_f64(),
            queued.as_secs_f64() * 1e3
        );
    }
}
