use crate::helpers::{sample, spawn_app};

#[tokio::test]
async fn system_status_reports_machine_process_model_caches_and_requests() {
    let app = spawn_app().await;
    app.predict_ok(&sample("orange.jpg"), None).await;
    let status = app.get_json("/system_status").await;

    assert!(status["machine"]["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(status["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(status["process"]["memory_rss_bytes"].as_u64().unwrap() > 10_000_000, "libtorch and a model");
    assert!(status["uptime_seconds"].as_f64().unwrap() >= 0.0);

    let model = &status["model"];
    assert_eq!(model["device"], "cpu");
    assert_eq!(model["torch_threads"], 1);
    assert_eq!(
        (model["format"].as_str(), model["alone_pays"].as_bool()),
        (Some("torchscript"), Some(false)),
        "one thread either way: nothing to measure"
    );
    let fusion = &model["onednn_fusion"];
    assert_eq!(fusion["on"], true, "the default: {fusion}");
    assert!(fusion["fused_graphs"].as_u64().unwrap() >= 1, "the image model's warm-up fused its graph: {fusion}");
    assert_eq!(model["classes"], 47);
    let files = model["files"].as_array().unwrap();
    assert_eq!(files.len(), 5, "manifest, weights, mapping, text encoder, tokenizer");
    for file in files {
        assert_eq!(file["sha256"].as_str().unwrap().len(), 64);
    }
    assert!(model["load_ms"].as_f64().unwrap() > 0.0);

    let cache = &status["caches"]["prediction"];
    assert_eq!((cache["size"].as_u64(), cache["capacity"].as_u64()), (Some(1), Some(100)));
    assert_eq!(status["requests"]["predictions"], 1);
    assert_eq!(status["requests"]["success"], 1, "the predict; this request is counted when it ends");
    assert_eq!(status["queue"]["capacity"], 64);
}

#[tokio::test]
async fn only_the_admin_sees_where_the_model_files_lie() {
    let mut config = crate::helpers::test_config();
    config.admin_token = Some(food_api::secret::Secret::new("t").unwrap());
    // On a copy of the model in a temporary folder: an absolute path to hide.
    let app = crate::helpers::spawn_app_on_model_copy_with(config, |_| ()).await;
    let anonymous = app.get_json("/system_status").await;
    // The files served are the version's, in the app's repository.
    let folder = app.dirs.as_ref().unwrap().path().display().to_string();
    assert!(!anonymous.to_string().contains(&folder), "{anonymous}");
    assert_eq!(anonymous["model"]["files"][0]["path"], "manifest.json");

    let admin = app.client.get(format!("{}/system_status", app.address)).bearer_auth("t").send().await.unwrap();
    let admin: serde_json::Value = admin.json().await.unwrap();
    assert!(admin["model"]["files"][0]["path"].as_str().unwrap().starts_with(&folder), "{admin}");
}
