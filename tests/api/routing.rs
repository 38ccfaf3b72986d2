//! Traffic between versions: a weighted split, sticky by a user key on a stable hash (the same on
//! every replica and after a restart), a pin that always wins, and policy writes that cannot
//! overwrite a newer policy.
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::helpers::{config_in, error_of, lite0, lite2, sample, spawn_app, spawn_app_with, test_config, TestApp};

impl TestApp {
    pub async fn put_routing(&self, policy: Value, if_match: Option<&str>) -> reqwest::Response {
        let mut request = self.client.put(format!("{}/models/food/routing", self.address)).json(&policy);
        if let Some(generation) = if_match {
            request = request.header("If-Match", generation);
        }
        request.send().await.expect("request sent")
    }

    /// (X-Model-Version, X-Route) of a /predict with these headers.
    pub async fn routed(&self, image: &[u8], headers: &[(&str, &str)]) -> (String, String) {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(image.to_vec()).file_name("photo"));
        let mut request = self.client.post(format!("{}/predict", self.address)).multipart(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        if status != 200 {
            panic!("{status} for {headers:?}: {}", response.text().await.unwrap());
        }
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        (header("x-model-version"), header("x-route"))
    }
}

async fn users_on_versions(app: &TestApp, users: std::ops::Range<u32>) -> HashMap<u32, String> {
    let coffee = sample("coffee.png");
    let mut chosen = HashMap::new();
    for user in users {
        let key = format!("user-{user}");
        let (version, route) = app.routed(&coffee, &[("X-User-Id", &key)]).await;
        assert_eq!(route, "sticky");
        chosen.insert(user, version);
    }
    chosen
}

#[tokio::test]
async fn a_90_10_split_sends_about_a_tenth_of_users_to_v2_each_always_to_the_same_version_even_after_a_restart() {
    let dirs = tempfile::tempdir().unwrap();
    let config = config_in(dirs.path());
    let (v0, v2) = (lite0(), lite2());
    let app = spawn_app_with(config.clone()).await;
    app.load_version(&v2).await;
    let policy = json!({"split": [{"target": "stable", "weight": 90}, {"target": v2, "weight": 10}]});
    let stored: Value = app.put_routing(policy, None).await.json().await.unwrap();
    assert_eq!((stored["generation"].as_u64(), stored["sticky_header"].as_str()), (Some(1), Some("X-User-Id")));

    let first = users_on_versions(&app, 0..1000).await;
    let on_v2 = first.values().filter(|v| **v == v2).count();
    assert!((70..=130).contains(&on_v2), "{on_v2} of 1000 users on a 10% share");
    assert!(first.values().all(|v| *v == v0 || *v == v2));
    assert_eq!(
        users_on_versions(&app, 0..100).await,
        first.iter().filter(|(u, _)| **u < 100).map(|(u, v)| (*u, v.clone())).collect()
    );

    // Another process on the same state (a restart, or a replica): the same users, the same versions.
    let again = spawn_app_with(config).await;
    let after = users_on_versions(&again, 0..100).await;
    assert!(after.iter().all(|(user, version)| first[user] == *version), "stickiness survives a restart");

    // A pin always wins; without a key the route is weighted.
    let coffee = sample("coffee.png");
    assert_eq!(
        again.routed(&coffee, &[("X-Model-Version", &v2), ("X-User-Id", "user-1")]).await,
        (v2.clone(), "pinned".into())
    );
    assert_eq!(again.routed(&coffee, &[("X-Model-Version", "stable")]).await, (v0.clone(), "pinned".into()));
    let (_, route) = again.routed(&coffee, &[]).await;
    assert_eq!(route, "weighted");
}

#[tokio::test]
async fn policy_writes_are_validated_and_a_stale_one_is_refused_with_412() {
    let app = spawn_app().await;
    let v2 = lite2();
    let current = app.get("/models/food/routing").await;
    assert_eq!(current.headers()["etag"], "\"0\"");
    let implicit: Value = current.json().await.unwrap();
    assert_eq!(implicit["split"], json!([{"target": "stable", "weight": 100}]));

    let to_v2 = json!({"split": [{"target": "stable", "weight": 50}, {"target": v2, "weight": 50}]});
    let (status, _, error) = error_of(app.put_routing(to_v2.clone(), None).await).await;
    assert_eq!(status, 409, "{v2} is not loaded: {error}");
    let (status, _, _) =
        error_of(app.put_routing(json!({"split": [{"target": "nope", "weight": 100}]}), None).await).await;
    assert_eq!(status, 404);
    let (status, _, _) =
        error_of(app.put_routing(json!({"split": [{"target": "stable", "weight": 90}]}), None).await).await;
    assert_eq!(status, 400, "weights must sum to 100");
    let (status, _, _) = error_of(app.put_routing(json!({"split": "all"}), None).await).await;
    assert_eq!(status, 400);

    app.load_version(&v2).await;
    let response = app.put_routing(to_v2.clone(), Some("\"0\"")).await;
    assert_eq!((response.status().as_u16(), response.headers()["etag"].to_str().unwrap()), (200, "\"1\""));
    let (status, kind, error) = error_of(app.put_routing(to_v2, Some("\"0\"")).await).await;
    assert_eq!((status, kind.as_str()), (412, "precondition_failed"), "{error}");

    // The policy holds the version it names: unloading it is refused, naming the policy.
    let (status, _, error) = error_of(app.post_empty(&format!("/models/food/versions/{v2}/unload")).await).await;
    assert_eq!(status, 409);
    assert!(error.contains("routing"), "{error}");
    let log = app.get_json("/deployments").await["deployments"].clone();
    assert_eq!((log[1]["action"].as_str(), log[1]["ok"].as_bool()), (Some("routing"), Some(false)), "{log}");
}

#[tokio::test]
async fn shadow_traffic_never_changes_an_answer_and_its_agreement_shows_in_both_versions_stats() {
    let mut config = test_config();
    config.prediction_cache_size = 0;
    let app = spawn_app_with(config).await;
    let (v0, v2) = (lite0(), lite2());
    app.load_version(&v2).await;
    let photos = ["coffee.png", "orange.jpg", "fruits.jpg", "apple.jpg"];
    let mut expected = Vec::new();
    for photo in photos {
        expected.push(app.predict_on(&v0, &sample(photo)).await.1);
    }
    let policy = json!({"split": [{"target": "stable", "weight": 100}], "shadow": {"target": v2, "percent": 100}});
    assert_eq!(app.put_routing(policy, None).await.status(), 200);

    for (photo, before) in photos.iter().zip(&expected) {
        let response = app.post_predict(&sample(photo), None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-model-version"].to_str().unwrap(), v0);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (&body["label"], &body["confidence"], &body["top_k"]),
            (&before["label"], &before["confidence"], &before["top_k"])
        );
    }
    // The mirrors finish after the answers, by design: poll (bounded) until they are counted.
    let stats_of = |version: String| {
        let app = &app;
        async move { app.get_json(&format!("/models/food/versions/{version}/stats")).await }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let primary = loop {
        let stats = stats_of(v0.clone()).await;
        if stats["shadow"][0]["compared"] == photos.len() || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let pair = &primary["shadow"][0];
    assert_eq!(
        (pair["role"].as_str(), pair["other_version"].as_str(), pair["compared"].as_u64()),
        (Some("primary"), Some(v2.as_str()), Some(4)),
        "{primary}"
    );
    let agreement = pair["top1_agreement"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&agreement) && agreement >= 0.5,
        "Lite0 and Lite2 mostly agree on these photos: {pair}"
    );
    let shadow = stats_of(v2.clone()).await;
    assert_eq!(
        (shadow["shadow"][0]["role"].as_str(), shadow["shadow"][0]["compared"].as_u64()),
        (Some("shadow"), Some(4))
    );
    assert_eq!(shadow["since_load"]["requests"], 0, "mirrors are not counted as the shadow's requests");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"food_api_shadow_mirrors_total{outcome="compared"} 4"#), "{metrics}");
    assert!(metrics.contains(&format!(r#"food_api_shadow_comparisons{{model="food",primary="{v0}",shadow="{v2}"}} 4"#)));
}

#[tokio::test]
async fn a_canary_past_its_p95_threshold_loses_its_weight_and_the_log_says_why() {
    let app = spawn_app().await;
    let v2 = lite2();
    app.load_version(&v2).await;
    // No forward pass is this fast: the tenth prediction on the canary passes the threshold.
    let policy = json!({
        "split": [{"target": "stable", "weight": 50}, {"target": v2, "weight": 50}],
        "canary_abort": {"window": 10, "max_p95_ms": 0.001},
    });
    assert_eq!(app.put_routing(policy, None).await.status(), 200);
    let coffee = sample("coffee.png");
    for _ in 0..9 {
        app.predict_on(&v2, &coffee).await;
    }
    assert_eq!(app.get_json("/models/food/routing").await["split"][1]["weight"], 50, "not before the window is full");
    app.predict_on(&v2, &coffee).await;
    let policy = app.get_json("/models/food/routing").await;
    assert_eq!(policy["split"], json!([{"target": "stable", "weight": 100}, {"target": v2, "weight": 0}]), "{policy}");
    assert_eq!(policy["generation"], 2);
    let log = app.get_json("/deployments").await["deployments"].clone();
    assert_eq!((log[0]["action"].as_str(), log[0]["by"].as_str()), (Some("canary_abort"), Some("server")), "{log}");
    assert!(log[0]["reason"].as_str().unwrap().contains("p95"), "{log}");
    let (_, route) = app.routed(&coffee, &[("X-User-Id", "anyone")]).await;
    assert_eq!(route, "sticky");
}

#[tokio::test]
async fn deleting_the_policy_sends_everything_back_to_stable() {
    let app = spawn_app().await;
    let v2 = lite2();
    app.load_version(&v2).await;
    let all_to_v2 = json!({"split": [{"target": v2, "weight": 100}]});
    assert_eq!(app.put_routing(all_to_v2, None).await.status(), 200);
    let coffee = sample("coffee.png");
    assert_eq!(app.routed(&coffee, &[]).await.0, v2);
    let deleted = app.client.delete(format!("{}/models/food/routing", app.address)).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(app.routed(&coffee, &[]).await, (lite0(), "weighted".into()));
    assert_eq!(app.get("/models/food/routing").await.headers()["etag"], "\"2\"", "generations never go back");
    assert_eq!(
        app.post_empty(&format!("/models/food/versions/{v2}/unload")).await.status(),
        200,
        "nothing holds it now"
    );
}
