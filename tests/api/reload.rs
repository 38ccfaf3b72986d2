use futures_util::future::join_all;

use crate::helpers::{error_of, repo_path, sample, spawn_app_on_model_copy, TestApp};

#[tokio::test]
async fn reload_swaps_in_a_new_model_and_bumps_the_generation() {
    let app = spawn_app_on_model_copy().await;
    let coffee = sample("coffee.png");
    let before = app.predict_ok(&coffee, None).await;

    // The same files: the same model (the same fingerprint), whose cached answers still hold.
    let response = app.post_reload().await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["model"]["generation"], 2);
    assert_eq!(body["model"]["fingerprint"], before["model"]["fingerprint"]);
    assert_eq!(body["files"].as_array().unwrap().len(), 5);
    let same = app.predict_ok(&coffee, None).await;
    assert_eq!((same["cache_hit"].as_bool(), same["model"]["generation"].as_u64()), (Some(true), Some(2)));

    // Other files: another model, whose answers are its own.
    std::fs::write(app.model_file("class_mapping.json"), r#"{"espresso": 967, "pizza": 963}"#).unwrap();
    let body: serde_json::Value = app.post_reload().await.json().await.unwrap();
    assert_ne!(body["model"]["fingerprint"], before["model"]["fingerprint"]);
    let after = app.predict_ok(&coffee, None).await;
    assert_eq!(after["cache_hit"], false, "the old model's answer is not served");
    assert_eq!((after["model"]["generation"].as_u64(), after["label"].as_str()), (Some(3), Some("espresso")));
    assert_eq!(after["top_k"].as_array().unwrap().len(), 2);
    assert_eq!(app.get_json("/health").await["model"]["generation"], 3);
}

#[tokio::test]
async fn the_fingerprint_is_the_same_for_the_same_files_in_another_folder_or_process() {
    let here = spawn_app_on_model_copy().await;
    let there = spawn_app_on_model_copy().await;
    let (a, b) = (here.get_json("/system_status").await, there.get_json("/system_status").await);
    let fingerprint = a["model"]["fingerprint"].as_str().unwrap();
    assert_eq!((fingerprint.len(), Some(fingerprint)), (64, b["model"]["fingerprint"].as_str()));
    assert_ne!(a["model"]["files"][0]["path"], b["model"]["files"][0]["path"], "two folders");
}

#[tokio::test]
async fn reload_reads_a_new_class_mapping() {
    let app = spawn_app_on_model_copy().await;
    std::fs::write(app.model_file("class_mapping.json"), r#"{"espresso": 967, "pizza": 963}"#).unwrap();
    assert_eq!(app.post_reload().await.status(), 200);
    let classes = app.get_json("/classes").await;
    assert_eq!(classes["count"], 2);
    let body = app.predict_ok(&sample("coffee.png"), None).await;
    assert_eq!(body["label"], "espresso");
    assert_eq!(body["top_k"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn reload_with_corrupt_weights_fails_and_the_old_model_keeps_serving() {
    let app = spawn_app_on_model_copy().await;
    let coffee = sample("coffee.png");
    let before = app.predict_ok(&coffee, None).await;

    std::fs::write(app.model_file("efficientnet_lite0.pt"), b"these are not weights").unwrap();
    let response = app.post_reload().await;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error_type"], "invalid_model");
    assert!(body["file"].as_str().unwrap().ends_with("efficientnet_lite0.pt"), "{body}");
    assert!(body["error"].as_str().unwrap().contains("TorchScript"), "{body}");

    let again = app.predict_ok(&coffee, None).await;
    assert_eq!((again["label"].clone(), again["top_k"].clone()), (before["label"].clone(), before["top_k"].clone()));
    assert_eq!(again["model"]["generation"], 1);
    let fresh = app.predict_ok(&sample("orange.jpg"), None).await;
    assert_eq!((fresh["label"].as_str(), fresh["cache_hit"].as_bool()), (Some("orange"), Some(false)));

    let reloads = app.get_json("/system_status").await["model"]["reloads"].clone();
    assert_eq!((reloads["failed"].as_u64(), reloads["succeeded"].as_u64()), (Some(1), Some(0)));
    assert!(reloads["last"]["error"].as_str().unwrap().contains("efficientnet_lite0.pt"));
}

#[tokio::test]
async fn reload_with_an_out_of_range_or_duplicate_mapping_is_refused() {
    let app = spawn_app_on_model_copy().await;
    for (mapping, reason) in
        [(r#"{"pizza": 1000}"#, "outside the model's 1000 outputs"), (r#"{"pizza": 963, "pie": 963}"#, "mapped twice")]
    {
        std::fs::write(app.model_file("class_mapping.json"), mapping).unwrap();
        let (status, kind, message) = error_of(app.post_reload().await).await;
        assert_eq!((status, kind.as_str()), (422, "invalid_model"), "{message}");
        assert!(message.contains("class_mapping.json") && message.contains(reason), "{message}");
    }
    assert_eq!(app.get_json("/classes").await["count"], 47);
}

#[tokio::test]
async fn reload_with_a_missing_manifest_names_it() {
    let app = spawn_app_on_model_copy().await;
    std::fs::remove_file(app.model_file("manifest.json")).unwrap();
    let (status, _, message) = error_of(app.post_reload().await).await;
    assert_eq!(status, 422);
    assert!(message.contains("manifest.json") && message.contains("not found"), "{message}");
}

#[tokio::test]
async fn predictions_sent_during_reloads_all_succeed() {
    let app = spawn_app_on_model_copy().await;
    let coffee = sample("coffee.png");
    // Distinct texts make every request a cache miss, so each one runs the model.
    let predictions = join_all((0..12).map(|i| {
        let (app, coffee) = (&app, &coffee);
        async move { app.post_predict(coffee, Some(&format!("request {i}"))).await }
    }));
    let reloads = async { (app.post_reload().await.status(), app.post_reload().await.status()) };
    let (responses, reload_statuses) = tokio::join!(predictions, reloads);

    assert_eq!(reload_statuses, (reqwest::StatusCode::OK, reqwest::StatusCode::OK));
    for response in responses {
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["label"], "espresso");
        assert!((1..=3).contains(&body["model"]["generation"].as_u64().unwrap()));
    }
    assert_eq!(app.get_json("/health").await["model"]["generation"], 3, "reloads are serialised, none lost");
}

/// Each fault the issue lists, one after the other on one server: refused with 422 naming the file
/// and the cause, the first model keeps answering, and /system_status counts every failed attempt.
#[tokio::test]
async fn every_kind_of_broken_model_is_refused_and_recorded() {
    let app = spawn_app_on_model_copy().await;
    let orange = sample("orange.jpg");
    let weights = std::fs::read(repo_path("checkpoints/efficientnet_lite0.pt")).unwrap();
    let manifest = std::fs::read_to_string(repo_path("checkpoints/manifest.json")).unwrap();
    type Break<'a> = Box<dyn Fn(&TestApp) + 'a>;
    let faults: Vec<(&str, Break, &str, &str)> = vec![
        (
            "truncated weights",
            Box::new(|a| std::fs::write(a.model_file("efficientnet_lite0.pt"), &weights[..weights.len() / 2]).unwrap()),
            "efficientnet_lite0.pt",
            "TorchScript",
        ),
        (
            "not TorchScript",
            Box::new(|a| {
                std::fs::copy(repo_path("sample/orange.jpg"), a.model_file("efficientnet_lite0.pt")).map(drop).unwrap()
            }),
            "efficientnet_lite0.pt",
            "TorchScript",
        ),
        (
            "output width unlike the manifest's",
            Box::new(|a| {
                std::fs::write(
                    a.model_file("manifest.json"),
                    manifest.replace("\"num_outputs\": 1000", "\"num_outputs\": 1001"),
                )
                .unwrap()
            }),
            "efficientnet_lite0.pt",
            "1000 outputs",
        ),
        (
            "duplicate index",
            Box::new(|a| std::fs::write(a.model_file("class_mapping.json"), r#"{"pizza": 963, "pie": 963}"#).unwrap()),
            "class_mapping.json",
            "mapped twice",
        ),
        (
            "missing tokenizer",
            Box::new(|a| std::fs::remove_file(a.model_file("tokenizer.json")).unwrap()),
            "tokenizer.json",
            "not found",
        ),
        (
            "missing manifest",
            Box::new(|a| std::fs::remove_file(a.model_file("manifest.json")).unwrap()),
            "manifest.json",
            "not found",
        ),
    ];
    for (n, (fault, break_it, file, cause)) in faults.iter().enumerate() {
        break_it(&app);
        let response = app.post_reload().await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!((status, body["error_type"].as_str()), (422, Some("invalid_model")), "{fault}: {body}");
        assert!(body["file"].as_str().unwrap().ends_with(file), "{fault}: {body}");
        assert!(body["error"].as_str().unwrap().contains(cause), "{fault}: {body}");

        let answer = app.predict_ok(&orange, Some(fault)).await;
        assert_eq!(
            (answer["label"].as_str(), answer["model"]["generation"].as_u64()),
            (Some("orange"), Some(1)),
            "{fault}"
        );
        let reloads = app.get_json("/system_status").await["model"]["reloads"].clone();
        assert_eq!(reloads["failed"].as_u64(), Some(n as u64 + 1), "{fault}: {reloads}");
        assert_eq!(reloads["last"]["ok"], false, "{fault}");
        assert!(reloads["last"]["error"].as_str().unwrap().contains(file), "{fault}: {reloads}");
        app.restore_model_files();
    }
    assert_eq!(app.post_reload().await.status(), 200, "the restored files load again");
}

#[tokio::test]
async fn a_batch_never_mixes_models_when_a_reload_swaps_one_in_meanwhile() {
    use reqwest::multipart::{Form, Part};
    let mut config = crate::helpers::test_config();
    config.max_batch_items = 200;
    let app = crate::helpers::spawn_app_on_model_copy_with(config, |_| ()).await;
    // Another model (another fingerprint) on disk, to be swapped in while the batch runs.
    std::fs::write(app.model_file("class_mapping.json"), r#"{"espresso": 967, "orange": 950, "lemon": 951}"#).unwrap();
    let mut form = Form::new();
    for i in 0..120u8 {
        // Distinct bytes after the JPEG's end: no item is a cache hit.
        let mut photo = sample("orange.jpg");
        photo.push(i);
        form = form.part("image", Part::bytes(photo).file_name("orange.jpg"));
    }
    // The reload's load and warm-up take about as long as the batch: its swap lands mid-batch.
    let started = std::time::Instant::now();
    let batch = async {
        let response = app.post_form("/predict/batch", form).await;
        (response, started.elapsed())
    };
    let reload = async {
        let response = app.post_reload().await;
        (response, started.elapsed())
    };
    let ((batch, batch_took), (reload, reload_took)) = tokio::join!(batch, reload);
    println!("batch answered after {batch_took:?}, reload after {reload_took:?}");
    assert_eq!(reload.status(), 200);
    assert_eq!(batch.status(), 200);
    let header = batch.headers()["x-model-version"].to_str().unwrap().to_string();
    let body: serde_json::Value = batch.json().await.unwrap();
    let fingerprints: std::collections::HashSet<&str> =
        body["items"].as_array().unwrap().iter().map(|i| i["model"]["fingerprint"].as_str().unwrap()).collect();
    assert_eq!(fingerprints.len(), 1, "one model for the whole batch: {fingerprints:?}");
    assert_eq!(body["items"][0]["model"]["version"], header.as_str());
}
