//! The shared cache (Redis, the second level) and single flight, with a real redis-server.
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{sample, spawn_app_with, test_config, TestApp};
use crate::metrics::scrape;
use crate::redis::Redis;

/// How long a test waits for what happens in the background (a write, the breaker's pause).
const PATIENCE: Duration = Duration::from_secs(20);

pub async fn replica(redis: &Redis) -> TestApp {
    replica_with(redis, |_| ()).await
}

/// A replica on `redis`, with the test's own change to its settings.
pub async fn replica_with(redis: &Redis, change: impl FnOnce(&mut food_api::config::Config)) -> TestApp {
    let mut config = test_config();
    config.redis_url = Some(redis.url().parse().unwrap());
    change(&mut config);
    spawn_app_with(config).await
}

fn answer_of(body: &Value) -> (Value, Value, Value) {
    (body["label"].clone(), body["top_k"].clone(), body["text_match"].clone())
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    scrape(app).await.get(series).copied().unwrap_or(0.0)
}

/// Waits, bounded, until `redis` holds `n` keys (answers are written in the background).
pub fn wait_for_keys(redis: &Redis, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while redis.keys() < n {
        assert!(Instant::now() < deadline, "redis holds {} keys after {PATIENCE:?}, not {n}", redis.keys());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn an_answer_one_replica_computed_is_a_shared_hit_on_another() {
    let redis = Redis::start();
    let (first, second) = (replica(&redis).await, replica(&redis).await);
    let image = sample("fruits.jpg");

    let computed = first.predict_ok(&image, Some("a bowl of fruit")).await;
    assert_eq!((computed["cache"].as_str(), computed["cache_hit"].as_bool()), (Some("miss"), Some(false)));
    wait_for_keys(&redis, 1);

    let shared = second.predict_ok(&image, Some("a bowl of fruit")).await;
    assert_eq!((shared["cache"].as_str(), shared["cache_hit"].as_bool()), (Some("shared"), Some(true)));
    assert_eq!(answer_of(&shared), answer_of(&computed), "the same answer, byte for byte through Redis");
    let looked_up = shared["timings_ms"]["cache"].as_f64().expect("the lookup is timed");
    assert!(looked_up < 50.0, "a loopback Redis hit took {looked_up} ms");
    assert!(shared["timings_ms"]["inference"].is_null(), "no forward pass on the second replica");

    let local = second.predict_ok(&image, Some("a bowl of fruit")).await;
    assert_eq!(local["cache"], "local", "kept in the first level too");
    assert_eq!(metric(&second, r#"food_api_shared_cache_lookups_total{outcome="hit"}"#).await, 1.0);
    assert_eq!(metric(&second, "food_api_forward_passes_total").await, 0.0);
    let other_text = second.predict_ok(&image, Some("a salad")).await;
    assert_eq!(other_text["cache"], "miss", "another text, another key");
}

#[tokio::test]
async fn with_redis_down_answers_still_come_and_shared_hits_return_once_it_is_back() {
    let mut redis = Redis::start();
    let (first, second) = (replica(&redis).await, replica(&redis).await);
    let image = sample("apple.jpg");
    redis.stop();

    for i in 0..4 {
        let started = Instant::now();
        let body = first.predict_ok(&image, Some(&format!("dish {i}"))).await;
        assert_eq!(body["cache"], "miss");
        assert!(started.elapsed() < Duration::from_secs(5), "Redis down delayed a request {:?}", started.elapsed());
    }
    let health = first.get_json("/health").await;
    assert_eq!((health["status"].as_str(), health["shared_cache"].as_str()), (Some("ok"), Some("degraded")));
    let failed = metric(&first, r#"food_api_shared_cache_lookups_total{outcome="error"}"#).await
        + metric(&first, r#"food_api_shared_cache_lookups_total{outcome="timeout"}"#).await;
    let skipped = metric(&first, r#"food_api_shared_cache_lookups_total{outcome="skipped"}"#).await;
    assert!(failed >= 1.0 && skipped >= 1.0, "failed {failed}, skipped by the open breaker {skipped}");
    assert_eq!(metric(&first, "food_api_shared_cache_up").await, 0.0);

    redis.resume();
    // The breaker lets a request through after its pause; until then the local cache answers.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    while first.get_json("/health").await["shared_cache"] != "ok" {
        assert!(Instant::now() < deadline, "the shared cache is not back {PATIENCE:?} after Redis");
        n += 1;
        first.predict_ok(&image, Some(&format!("probe {n}"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = redis.keys();
    first.predict_ok(&image, Some("after the outage")).await;
    wait_for_keys(&redis, before + 1);
    let body = second.predict_ok(&image, Some("after the outage")).await;
    assert_eq!(body["cache"], "shared");
}

#[tokio::test]
async fn a_stalled_redis_costs_a_request_its_timeout_only() {
    let redis = Redis::start();
    let app = replica(&redis).await;
    let url = redis.url();
    // DEBUG SLEEP holds the whole server: every command waits behind it.
    let sleeper = std::thread::spawn(move || {
        let port = url.rsplit(':').next().unwrap().to_string();
        std::process::Command::new("redis-cli").args(["-p", &port, "DEBUG", "SLEEP", "3"]).output().unwrap()
    });
    let deadline = Instant::now() + PATIENCE;
    while !redis.stalled() {
        assert!(Instant::now() < deadline, "DEBUG SLEEP did not stall the server");
    }
    let started = Instant::now();
    let body = app.predict_ok(&sample("orange.jpg"), None).await;
    let took = started.elapsed();
    assert_eq!(body["cache"], "miss");
    let waited = body["timings_ms"]["cache"].as_f64().unwrap();
    assert!((45.0..500.0).contains(&waited), "waited {waited} ms for Redis (--redis-timeout-ms 50)");
    assert!(took < Duration::from_millis(2500), "the request took {took:?} while Redis slept 3 s");
    assert_eq!(metric(&app, r#"food_api_shared_cache_lookups_total{outcome="timeout"}"#).await, 1.0);
    assert!(sleeper.join().unwrap().status.success());
}

#[tokio::test]
async fn identical_concurrent_misses_compute_once() {
    let app = spawn_app_with(test_config()).await;
    let image = sample("coffee.png");
    let answers: Vec<Value> = join_all((0..8).map(|_| app.predict_ok(&image, None))).await;
    let levels: Vec<&str> = answers.iter().map(|a| a["cache"].as_str().unwrap()).collect();
    assert_eq!(levels.iter().filter(|l| **l == "miss").count(), 1, "{levels:?}");
    assert_eq!(metric(&app, "food_api_forward_passes_total").await, 1.0, "{levels:?}");
    assert!(answers.iter().all(|a| answer_of(a) == answer_of(&answers[0])));
}

/// A Redis with a password (the rendered Kubernetes files give it one): the URL's password gets
/// the replicas in and the answer is shared; a wrong password is a degraded shared cache, never a
/// failed prediction.
#[tokio::test]
async fn a_redis_with_a_password_is_shared_with_the_right_one_and_degraded_with_a_wrong_one() {
    let mut redis = Redis::start();
    redis.require_password("s3cret");
    let url = |password: &str| redis.url().replace("redis://", &format!("redis://:{password}@"));
    let with = |url: String| move |config: &mut food_api::config::Config| config.redis_url = Some(url.parse().unwrap());
    let (first, second) =
        (replica_with(&redis, with(url("s3cret"))).await, replica_with(&redis, with(url("s3cret"))).await);
    let image = sample("orange.jpg");
    first.predict_ok(&image, Some("an orange behind a password")).await;
    wait_for_keys(&redis, 1);
    let shared = second.predict_ok(&image, Some("an orange behind a password")).await;
    assert_eq!(shared["cache"], "shared", "{shared}");

    // A wrong password: every Redis operation fails, so the breaker opens after its three failures
    // in a row (a lookup and a write per miss), while every prediction is answered.
    let wrong = replica_with(&redis, with(url("wrong"))).await;
    let deadline = Instant::now() + PATIENCE;
    for n in 0.. {
        let answer = wrong.predict_ok(&image, Some(&format!("an orange, try {n}"))).await;
        assert_ne!(answer["cache"], "shared", "a wrong password reads nothing");
        let health = wrong.get_json("/health").await;
        if health["shared_cache"] == "degraded" {
            assert_eq!(health["status"], "ok", "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "still {health} after {n} predictions with a wrong password");
    }
}
