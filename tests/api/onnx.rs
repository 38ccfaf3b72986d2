//! The ONNX Runtime backend: a manifest with `"format": "onnx"` serves the answers the TorchScript
//! model gives (image model alone, or with the text encoder too, as the build without libtorch
//! serves), a hot reload can switch between the two, and a broken ONNX file never replaces a good
//! model.
use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{
    error_of, sample, spawn_app, spawn_app_on_model_copy, spawn_app_on_model_copy_with, test_config, use_onnx,
    use_onnx_image, TestApp,
};

const PHOTOS: [&str; 5] = ["apple.jpg", "cat.png", "coffee.png", "fruits.jpg", "orange.jpg"];

/// Label, then (label, probability) of each top-k entry.
fn answer(body: &Value) -> (String, Vec<(String, f64)>) {
    let top = body["top_k"].as_array().unwrap().iter();
    let top = top.map(|c| (c["label"].as_str().unwrap().to_string(), c["probability"].as_f64().unwrap())).collect();
    (body["label"].as_str().unwrap().to_string(), top)
}

/// Same label, same ranking, probabilities within 1e-3 (the two runtimes' kernels differ).
fn assert_same_answer(photo: &str, torch: &Value, onnx: &Value) {
    let ((label_t, top_t), (label_o, top_o)) = (answer(torch), answer(onnx));
    assert_eq!(label_t, label_o, "{photo}");
    assert_eq!(
        top_t.iter().map(|c| &c.0).collect::<Vec<_>>(),
        top_o.iter().map(|c| &c.0).collect::<Vec<_>>(),
        "{photo}"
    );
    for ((label, p_t), (_, p_o)) in top_t.iter().zip(&top_o) {
        assert!((p_t - p_o).abs() < 1e-3, "{photo} {label}: torchscript {p_t}, onnx {p_o}");
    }
}

async fn answers(app: &TestApp, text: Option<&str>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for photo in PHOTOS {
        bodies.push(app.predict_ok(&sample(photo), text).await);
    }
    bodies
}

#[tokio::test]
async fn an_onnx_manifest_gives_the_torchscript_answers_on_every_sample_photo() {
    let torch = spawn_app().await;
    assert_eq!(torch.get_json("/system_status").await["model"]["format"], "torchscript");
    let (image_only, all) = (
        spawn_app_on_model_copy_with(test_config(), use_onnx_image).await,
        spawn_app_on_model_copy_with(test_config(), use_onnx).await,
    );
    for (onnx, text_format) in [(image_only, "torchscript"), (all, "onnx")] {
        let status = onnx.get_json("/system_status").await;
        assert_eq!(
            (status["model"]["format"].as_str(), status["model"]["text_encoder"]["format"].as_str()),
            (Some("onnx"), Some(text_format))
        );
        for text in [None, Some("a pile of oranges"), Some("coffee with milk, no sugar")] {
            for ((photo, t), o) in PHOTOS.iter().zip(answers(&torch, text).await).zip(answers(&onnx, text).await) {
                assert_same_answer(photo, &t, &o);
            }
        }
    }
}

#[tokio::test]
async fn a_reload_switches_the_serving_model_from_torchscript_to_onnx_and_back() {
    let app = spawn_app_on_model_copy().await;
    let before = app.predict_ok(&sample("fruits.jpg"), None).await;

    use_onnx(app.model_dir.as_ref().unwrap().path());
    let response = app.post_reload().await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let status = app.get_json("/system_status").await;
    assert_eq!((status["model"]["format"].as_str(), status["model"]["generation"].as_u64()), (Some("onnx"), Some(2)));
    let onnx = app.predict_ok(&sample("fruits.jpg"), None).await;
    assert_eq!(onnx["cache_hit"], false, "an answer of the replaced model is not served");
    assert_same_answer("fruits.jpg", &before, &onnx);

    app.restore_model_files();
    assert_eq!(app.post_reload().await.status(), 200);
    assert_eq!(app.get_json("/system_status").await["model"]["format"], "torchscript");
}

#[tokio::test]
async fn a_broken_onnx_file_is_refused_and_the_serving_model_stays() {
    let app = spawn_app_on_model_copy_with(test_config(), use_onnx).await;
    let before = app.predict_ok(&sample("coffee.png"), None).await;

    // The TorchScript file under the ONNX name: a real model file, in the wrong format.
    std::fs::copy(app.model_file("efficientnet_lite0.pt"), app.model_file("efficientnet_lite0.onnx")).unwrap();
    let response = app.post_reload().await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "invalid_model", "{body}");
    assert!(body["file"].as_str().unwrap().ends_with("efficientnet_lite0.onnx"), "{body}");
    assert!(body["error"].as_str().unwrap().contains("not a loadable ONNX model"), "{body}");

    let again = app.predict_ok(&sample("coffee.png"), None).await;
    assert_eq!((again["label"].as_str(), again["model"]["generation"].as_u64()), (before["label"].as_str(), Some(1)));
    let fresh = app.predict_ok(&sample("orange.jpg"), None).await;
    assert_eq!(fresh["label"], "orange");
}

#[tokio::test]
async fn an_unknown_model_format_is_refused_with_the_formats_that_exist() {
    let app = spawn_app_on_model_copy().await;
    let path = app.model_file("manifest.json");
    let manifest = std::fs::read_to_string(&path).unwrap().replace("\"torchscript\"", "\"tensorflow\"");
    std::fs::write(&path, manifest).unwrap();
    let (status, kind, error) = error_of(app.post_reload().await).await;
    assert_eq!((status, kind.as_str()), (422, "invalid_model"));
    assert!(error.contains("tensorflow") && error.contains("onnx"), "{error}");
}

#[tokio::test]
async fn concurrent_requests_on_onnx_sessions_get_the_answers_of_sequential_ones() {
    // Two inference threads, each with its own session, plus the all-core session of a lone request.
    let mut config = test_config();
    (config.inference_threads, config.torch_threads, config.prediction_cache_size) = (2, 0, 0);
    let app = spawn_app_on_model_copy_with(config, use_onnx).await;
    let sequential = answers(&app, None).await;
    let requests = PHOTOS.iter().cycle().take(20).map(|photo| async { app.predict_ok(&sample(photo), None).await });
    let concurrent = join_all(requests).await;
    for (i, body) in concurrent.iter().enumerate() {
        assert_same_answer(PHOTOS[i % PHOTOS.len()], &sequential[i % PHOTOS.len()], body);
    }
}
