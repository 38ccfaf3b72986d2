//! Many versions of one model: the repository, load and unload, aliases, rollback under load, the
//! state that survives a restart, per-version routes and statistics, on the two real exported
//! versions (EfficientNet-Lite0 at 224 and Lite2 at 260).
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{config_in, error_of, lite0, lite2, sample, spawn_app, spawn_app_with, test_config, TestApp};

impl TestApp {
    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.address)).send().await.expect("request sent")
    }

    pub async fn put_alias(&self, alias: &str, version: &str) -> reqwest::Response {
        let url = format!("{}/models/food/aliases/{alias}", self.address);
        self.client.put(url).json(&json!({ "version": version })).send().await.expect("request sent")
    }

    pub async fn load_version(&self, version: &str) {
        let response = self.post_empty(&format!("/models/food/versions/{version}/load")).await;
        assert_eq!(response.status(), 200, "load {version}: {}", response.text().await.unwrap());
    }

    /// A prediction on a version or alias: (X-Model-Version, body).
    pub async fn predict_on(&self, target: &str, image: &[u8]) -> (String, Value) {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(image.to_vec()).file_name("upload"));
        let response = self.post_form(&format!("/models/food/versions/{target}/predict"), form).await;
        assert_eq!(response.status(), 200, "predict on {target}");
        let version = response.headers()["x-model-version"].to_str().unwrap().to_string();
        (version, response.json().await.unwrap())
    }

    pub async fn version_state(&self, version: &str) -> Value {
        let models = self.get_json("/models").await;
        let food = models["models"].as_array().unwrap().iter().find(|m| m["name"] == "food").unwrap().clone();
        food["versions"].as_array().unwrap().iter().find(|v| v["version"] == version).unwrap().clone()
    }

    /// The state once an unload has settled: an unloaded model is `unloading` until the loader
    /// thread has freed it (and any request holding it has finished), a moment that a loaded
    /// machine stretches. Bounded: a version that never settles fails the test.
    pub async fn settled_state(&self, version: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let state = self.version_state(version).await;
            if state["state"] != "unloading" || std::time::Instant::now() > deadline {
                return state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn the_repository_lists_both_versions_and_only_stable_is_loaded_at_first_start() {
    let app = spawn_app().await;
    let models = app.get_json("/models").await;
    assert_eq!(models["default_model"], "food");
    let food = &models["models"][0];
    assert_eq!(food["aliases"], json!({ "stable": lite0() }));
    let (v0, v2) = (app.version_state(&lite0()).await, app.version_state(&lite2()).await);
    assert_eq!((v0["state"].as_str(), v0["aliases"].clone()), (Some("ready"), json!(["stable"])));
    assert_eq!((v2["state"].as_str(), v2["input_size"].as_u64()), (Some("available"), Some(260)));
    assert_eq!(v0["fingerprint"].as_str().unwrap().len(), 64);
    assert!(v2["size_bytes"].as_u64().unwrap() > 20_000_000, "{v2}");
}

#[tokio::test]
async fn without_a_drop_in_folder_stable_is_the_newest_version_or_the_one_stable_version_names() {
    // A container image: the repository alone, no checkpoints/ folder, no saved state.
    let start = |stable_version: Option<String>| async move {
        let mut config = test_config();
        config.model_dir = "no-drop-in-folder-here".into();
        config.stable_version = stable_version;
        spawn_app_with(config).await
    };
    let newest = start(None).await;
    assert_eq!(newest.get_json("/models").await["models"][0]["aliases"], json!({ "stable": lite2() }));
    let pinned = start(Some(lite0())).await;
    assert_eq!(pinned.get_json("/models").await["models"][0]["aliases"], json!({ "stable": lite0() }));
    let (version, _) = pinned.predict_on("stable", &sample("fruits.jpg")).await;
    assert_eq!(version, lite0());

    let mut config = test_config();
    config.model_dir = "no-drop-in-folder-here".into();
    config.stable_version = Some("lite9-00000000".into());
    let dirs = tempfile::tempdir().unwrap();
    config.model_repository = crate::helpers::repository_in(dirs.path());
    config.data_dir = dirs.path().join("data");
    let refused = food_api::startup::Application::build(config).await.err().expect("an unknown version is refused");
    assert!(format!("{refused:#}").contains("--stable-version lite9-00000000: no such version of food"), "{refused:#}");
}

#[tokio::test]
async fn a_loaded_version_answers_on_its_own_route_and_is_named_in_every_answer() {
    let app = spawn_app().await;
    let (v0, v2) = (lite0(), lite2());
    let (status, kind, _) = error_of(app.post_empty(&format!("/models/food/versions/{v2}/predict")).await).await;
    assert_eq!((status, kind.as_str()), (409, "conflict"), "not loaded yet");

    app.load_version(&v2).await;
    app.load_version(&v2).await; // idempotent
    let coffee = sample("coffee.png");
    let (header, body) = app.predict_on(&v2, &coffee).await;
    assert_eq!((header.as_str(), body["model"]["version"].as_str()), (v2.as_str(), Some(v2.as_str())));
    assert_eq!(body["label"], "espresso");
    let (header, _) = app.predict_on("stable", &coffee).await;
    assert_eq!(header, v0);
    let plain = app.post_predict(&coffee, None).await;
    assert_eq!(plain.headers()["x-model-version"].to_str().unwrap(), v0);

    // The two versions are different models: their answers differ.
    let (_, on_v0) = app.predict_on(&v0, &coffee).await;
    assert_ne!(on_v0["confidence"], body["confidence"]);

    // The Open Inference Protocol's versioned routes.
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &coffee);
    let infer = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]});
    let url = format!("{}/v2/models/food/versions/{v2}/infer", app.address);
    let answer: Value = app.client.post(url).json(&infer).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["model_version"], v2.as_str());
    let meta = app.get_json(&format!("/v2/models/food/versions/{v2}")).await;
    assert_eq!(meta["versions"], json!([v0, v2]));

    let (status, _, error) = error_of(app.post_empty("/models/food/versions/nope/predict").await).await;
    assert_eq!(status, 404, "{error}");
    let (status, _, _) = error_of(app.post_empty("/models/pasta/versions/stable/predict").await).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unload_is_idempotent_refused_while_an_alias_points_there_and_drops_its_metric_series() {
    let app = spawn_app().await;
    let (v0, v2) = (lite0(), lite2());
    let (status, kind, error) = error_of(app.post_empty(&format!("/models/food/versions/{v0}/unload")).await).await;
    assert_eq!((status, kind.as_str()), (409, "conflict"));
    assert!(error.contains("stable"), "the message names the alias: {error}");

    app.load_version(&v2).await;
    app.predict_on(&v2, &sample("coffee.png")).await;
    let series = format!(r#"version="{v2}""#);
    assert!(app.get("/metrics").await.text().await.unwrap().contains(&series));
    for _ in 0..2 {
        let response = app.post_empty(&format!("/models/food/versions/{v2}/unload")).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.settled_state(&v2).await["state"], "available");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.lines().any(|l| l.contains(&series) && !l.starts_with("food_api_model_version_state")),
        "{series} left"
    );
    assert!(metrics
        .contains(&format!(r#"food_api_model_version_state{{model="food",state="available",version="{v2}"}} 1"#)));
}

#[tokio::test]
async fn aliases_point_only_at_ready_versions_and_promotion_keeps_previous_for_a_rollback() {
    let app = spawn_app().await;
    let (v0, v2) = (lite0(), lite2());
    let (status, _, _) = error_of(app.put_alias("stable", &v2).await).await;
    assert_eq!(status, 409, "not loaded");
    let (status, _, _) = error_of(app.put_alias("stable", "v9").await).await;
    assert_eq!(status, 404);
    let (status, _, _) = error_of(app.put_alias("../etc", &v0).await).await;
    assert!(status == 400 || status == 404, "{status}");
    let (status, _, _) = error_of(app.post_empty("/models/food/rollback").await).await;
    assert_eq!(status, 409, "no previous yet");

    app.load_version(&v2).await;
    let promoted: Value = app.put_alias("stable", &v2).await.json().await.unwrap();
    assert_eq!(promoted["from"], v0.as_str());
    let coffee = sample("coffee.png");
    assert_eq!(app.post_predict(&coffee, None).await.headers()["x-model-version"].to_str().unwrap(), v2);
    let aliases = &app.get_json("/models").await["models"][0]["aliases"];
    assert_eq!(aliases, &json!({ "stable": v2, "previous": v0 }));

    let rolled: Value = app.post_empty("/models/food/rollback").await.json().await.unwrap();
    assert_eq!((rolled["stable"].as_str(), rolled["previous"].as_str()), (Some(v0.as_str()), Some(v2.as_str())));
    assert_eq!(app.post_predict(&coffee, None).await.headers()["x-model-version"].to_str().unwrap(), v0);

    // A named alias, and the deployment log with every change and its caller, newest first.
    assert_eq!(app.put_alias("candidate", &v2).await.status(), 200);
    let (header, _) = app.predict_on("candidate", &coffee).await;
    assert_eq!(header, v2);
    assert_eq!(
        app.client.delete(format!("{}/models/food/aliases/previous", app.address)).send().await.unwrap().status(),
        200
    );
    let log = app.get_json("/deployments").await["deployments"].clone();
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|d| d["action"].as_str().unwrap()).collect();
    assert_eq!(actions[..5], ["unalias", "alias", "rollback", "alias", "load"], "{log}");
    assert!(log[0]["by"].as_str().unwrap().starts_with("loopback 127.0.0.1"), "{log}");
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["action"] == "alias" && d["ok"] == false && d["version"] == v2.as_str()));
}

#[tokio::test]
async fn stable_flips_every_second_under_load_without_an_error_or_a_mixed_answer() {
    let mut config = test_config();
    config.prediction_cache_size = 0; // every answer computed by the version that claims it
    let app = spawn_app_with(config).await;
    let (v0, v2) = (lite0(), lite2());
    app.load_version(&v2).await;
    let coffee = sample("coffee.png");
    let expected =
        [(v0.clone(), app.predict_on(&v0, &coffee).await.1), (v2.clone(), app.predict_on(&v2, &coffee).await.1)];

    let stop = Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, coffee) = (app.client.clone(), format!("{}/predict", app.address), coffee.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while Instant::now() < stop {
                    let form = reqwest::multipart::Form::new()
                        .part("image", reqwest::multipart::Part::bytes(coffee.clone()).file_name("coffee.png"));
                    let response = client.post(&url).multipart(form).send().await.unwrap();
                    let status = response.status().as_u16();
                    let version = response.headers().get("x-model-version").map(|v| v.to_str().unwrap().to_string());
                    answers.push((status, version, response.json::<Value>().await.unwrap()));
                }
                answers
            })
        })
        .collect();
    let mut flips = Vec::new();
    let mut target = v2.clone();
    while Instant::now() + Duration::from_millis(500) < stop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        assert_eq!(app.put_alias("stable", &target).await.status(), 200);
        flips.push(started.elapsed());
        target = if target == v2 { v0.clone() } else { v2.clone() };
    }
    let mut seen = std::collections::BTreeMap::new();
    for client in clients {
        for (status, version, body) in client.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            let version = version.expect("X-Model-Version");
            let (_, reference) = expected.iter().find(|(v, _)| *v == version).expect("one of the two versions");
            assert_eq!(body["model"]["version"], version.as_str(), "header and body agree");
            assert_eq!(body["label"], reference["label"]);
            let (got, want) = (body["confidence"].as_f64().unwrap(), reference["confidence"].as_f64().unwrap());
            assert!((got - want).abs() < 1e-4, "{version}: {got} vs {want}: an answer from the other version?");
            *seen.entry(version).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 2, "both versions answered: {seen:?}");
    let slowest = flips.iter().max().unwrap();
    eprintln!("flips: {} under load, slowest {slowest:?}; answers per version {seen:?}", flips.len());
    assert!(flips.len() >= 4 && *slowest < Duration::from_millis(500), "{flips:?}");
}

#[tokio::test]
async fn a_restart_keeps_aliases_and_loaded_versions_and_restores_them_warmed_before_ready() {
    let dirs = tempfile::tempdir().unwrap();
    let config = config_in(dirs.path());
    let (v0, v2) = (lite0(), lite2());
    {
        let app = spawn_app_with(config.clone()).await;
        app.load_version(&v2).await;
        assert_eq!(app.put_alias("stable", &v2).await.status(), 200);
        assert_eq!(app.put_alias("candidate", &v0).await.status(), 200);
    }
    let again = spawn_app_with(config).await;
    assert_eq!(again.get_json("/health").await["model"]["version"], v2.as_str());
    let aliases = &again.get_json("/models").await["models"][0]["aliases"];
    assert_eq!(aliases, &json!({ "stable": v2, "previous": v0, "candidate": v0 }));
    assert_eq!(again.version_state(&v0).await["state"], "ready");
    let log = again.get_json("/deployments").await["deployments"].clone();
    assert_eq!(log[0]["action"], "alias", "the log survives the restart too: {log}");
}

#[tokio::test]
async fn per_version_stats_add_up_to_the_requests_sent() {
    let app = spawn_app().await;
    let (v0, v2) = (lite0(), lite2());
    app.load_version(&v2).await;
    let (coffee, orange) = (sample("coffee.png"), sample("orange.jpg"));
    for image in [&coffee, &orange, &coffee] {
        app.predict_on(&v0, image).await;
    }
    for image in [&coffee, &orange] {
        app.predict_on(&v2, image).await;
    }
    app.post_predict(b"not an image", None).await; // refused before any model runs: in no version's stats

    let s0 = app.get_json(&format!("/models/food/versions/{v0}/stats")).await;
    let s2 = app.get_json(&format!("/models/food/versions/{v2}/stats")).await;
    assert_eq!((s0["since_load"]["requests"].as_u64(), s2["since_load"]["requests"].as_u64()), (Some(3), Some(2)));
    assert_eq!((s0["since_load"]["cache_hits"].as_u64(), s2["since_load"]["cache_hits"].as_u64()), (Some(1), Some(0)));
    assert_eq!(s0["labels"], json!({ "espresso": 2, "orange": 1 }));
    assert_eq!(s2["last_5_minutes"]["requests"], 2);
    assert!(s2["since_load"]["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let details = app.get_json(&format!("/models/food/versions/{v2}")).await;
    assert_eq!(
        (details["manifest"]["input_size"].as_u64(), details["validation"]["passed"].as_bool()),
        (Some(260), Some(true))
    );
    assert_eq!(details["files"].as_array().unwrap().len(), 5);
    let share = app.version_state(&v0).await["traffic_share"].as_f64().unwrap();
    assert!((share - 0.6).abs() < 1e-9, "{share}");
}

#[tokio::test]
async fn a_reload_of_new_files_adds_a_version_makes_it_stable_and_evicts_the_coldest_unaliased_one() {
    let mut config = test_config();
    config.max_loaded_versions = 2;
    let app = crate::helpers::spawn_app_on_model_copy_with(config, |_| ()).await;
    let (v0, v2) = (lite0(), lite2());
    app.load_version(&v2).await; // 2 loaded: lite0 (stable) and lite2
    std::fs::write(app.model_file("class_mapping.json"), r#"{"espresso": 967, "pizza": 963}"#).unwrap();
    let body: Value = app.post_reload().await.json().await.unwrap();
    let new = body["model"]["version"].as_str().unwrap().to_string();
    assert!(new.starts_with(&format!("{v0}-")), "the manifest's version name is taken: {new}");
    let aliases = &app.get_json("/models").await["models"][0]["aliases"];
    assert_eq!(aliases, &json!({ "stable": new, "previous": v0 }));
    assert_eq!(app.settled_state(&v2).await["state"], "available", "evicted: no alias, least recently used");
    let log = app.get_json("/deployments").await["deployments"].clone();
    assert_eq!((log[0]["action"].as_str(), log[1]["action"].as_str()), (Some("reload"), Some("evict")), "{log}");
    // The version is a real folder of the repository, immutable from now on.
    let repository = app.dirs.as_ref().unwrap().path().join("models/food").join(&new);
    assert!(repository.join("class_mapping.json").is_file());

    // At the limit with every loaded version aliased: a further load is refused, nothing unloaded.
    let (status, _, error) = error_of(app.post_empty(&format!("/models/food/versions/{v2}/load")).await).await;
    assert_eq!(status, 409, "{error}");
}

#[tokio::test]
async fn a_version_whose_files_were_changed_in_place_is_refused_at_its_next_load() {
    let app = spawn_app().await;
    let v2 = lite2();
    app.load_version(&v2).await;
    assert_eq!(app.post_empty(&format!("/models/food/versions/{v2}/unload")).await.status(), 200);
    // Replaced, not written through: the repository's files are hard links to set-up's.
    let mapping = app.dirs.as_ref().unwrap().path().join("models/food").join(&v2).join("class_mapping.json");
    std::fs::remove_file(&mapping).unwrap();
    std::fs::write(&mapping, r#"{"espresso": 967}"#).unwrap();
    let response = app.post_empty(&format!("/models/food/versions/{v2}/load")).await;
    let (status, kind, error) = error_of(response).await;
    assert_eq!((status, kind.as_str()), (422, "invalid_model"));
    assert!(error.contains("immutable"), "{error}");
    let state = app.version_state(&v2).await;
    assert_eq!(state["state"], "failed");
    assert!(state["failure"].as_str().unwrap().contains("fingerprint"), "{state}");
}

#[tokio::test]
async fn the_protocol_repository_and_statistics_extensions_speak_tritons_shapes() {
    let app = spawn_app().await;
    let (v0, v2) = (lite0(), lite2());
    let index: Value = app.post_empty("/v2/repository/index").await.json().await.unwrap();
    assert_eq!(
        index,
        json!([
            {"name": "food", "version": v0, "state": "READY", "reason": ""},
            {"name": "food", "version": v2, "state": "UNAVAILABLE", "reason": "unloaded"},
        ])
    );
    let ready = app.client.post(format!("{}/v2/repository/index", app.address)).json(&json!({"ready": true}));
    assert_eq!(ready.send().await.unwrap().json::<Value>().await.unwrap().as_array().unwrap().len(), 1);

    app.load_version(&v2).await;
    let coffee = sample("coffee.png");
    for _ in 0..3 {
        app.predict_on(&v2, &coffee).await;
    }
    let stats = app.get_json(&format!("/v2/models/food/versions/{v2}/stats")).await;
    let row = &stats["model_stats"][0];
    assert_eq!((row["name"].as_str(), row["version"].as_str()), (Some("food"), Some(v2.as_str())));
    assert_eq!((row["inference_count"].as_u64(), row["execution_count"].as_u64()), (Some(3), Some(1)));
    let inference = &row["inference_stats"];
    assert_eq!(
        (inference["cache_hit"]["count"].as_u64(), inference["cache_miss"]["count"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(inference["compute_infer"]["ns"].as_u64().unwrap() > 0 && row["last_inference"].as_u64().unwrap() > 0);
    assert_eq!(app.get_json("/v2/models/stats").await["model_stats"].as_array().unwrap().len(), 2);

    // Unload: the version no alias names goes; stable stays, and the answer says so.
    let (status, _, error) = error_of(app.post_empty("/v2/repository/models/food/unload").await).await;
    assert_eq!(status, 409);
    assert!(error.contains(&v0) && error.contains("stable"), "{error}");
    assert_eq!(app.settled_state(&v2).await["state"], "available");
    assert_eq!(app.post_empty("/v2/repository/models/food/load").await.status(), 200);
    assert_eq!(app.post_empty("/v2/repository/models/pasta/load").await.status(), 404);
}
