use serde_json::Value;

use crate::helpers::{sample, spawn_app};

fn top_labels(body: &Value) -> Vec<String> {
    body["top_k"].as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap().to_string()).collect()
}

fn confidence(body: &Value) -> f64 {
    body["confidence"].as_f64().unwrap()
}

#[tokio::test]
async fn sample_photos_get_the_reference_answers() {
    let app = spawn_app().await;
    // (photo, label, probability from scripts/reference.py with PIL preprocessing)
    for (photo, label, reference) in [
        ("coffee.png", "espresso", 0.957),
        ("orange.jpg", "orange", 0.708),
        ("fruits.jpg", "lemon", 0.772),
        ("apple.jpg", "Granny Smith", 0.569),
    ] {
        let body = app.predict_ok(&sample(photo), None).await;
        assert_eq!(body["label"], label, "{photo}: {body}");
        assert!((confidence(&body) - reference).abs() < 0.03, "{photo}: {} vs {reference}", confidence(&body));
    }
    let fruits = app.predict_ok(&sample("fruits.jpg"), None).await;
    assert_eq!(top_labels(&fruits)[..2], ["lemon", "orange"]);
}

#[tokio::test]
async fn a_cat_is_not_a_confident_food_answer() {
    let app = spawn_app().await;
    let cat = app.predict_ok(&sample("cat.png"), None).await;
    assert!(cat["mapped_probability"].as_f64().unwrap() < 0.05, "{cat}");
    assert!(confidence(&cat) < 0.05, "{cat}");
    let coffee = app.predict_ok(&sample("coffee.png"), None).await;
    assert!(coffee["mapped_probability"].as_f64().unwrap() > 0.9, "{coffee}");
}

#[tokio::test]
async fn the_answer_carries_top_k_timings_and_the_model() {
    let app = spawn_app().await;
    let body = app.predict_ok(&sample("coffee.png"), Some("Image of pizza")).await;
    assert_eq!(body["top_k"].as_array().unwrap().len(), 5, "default top_k");
    assert_eq!(body["text"], "Image of pizza");
    assert_eq!(body["cache_hit"], false);
    assert_eq!(body["model"]["generation"], 1);
    assert!(body["model"]["version"].as_str().unwrap().starts_with("lite0-"));
    for timing in ["preprocess", "queue", "inference", "total"] {
        assert!(body["timings_ms"][timing].as_f64().unwrap() >= 0.0, "{timing}: {body}");
    }
    let probabilities: Vec<f64> =
        body["top_k"].as_array().unwrap().iter().map(|c| c["probability"].as_f64().unwrap()).collect();
    assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "sorted: {probabilities:?}");
}

#[tokio::test]
async fn top_k_is_chosen_per_request_within_its_bound() {
    let app = spawn_app().await;
    let image = sample("orange.jpg");
    let form = || reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image.clone()));
    let three: Value = app.post_form("/predict?top_k=3", form()).await.json().await.unwrap();
    assert_eq!(three["top_k"].as_array().unwrap().len(), 3);
    for bad in ["0", "21", "many"] {
        let response = app.post_form(&format!("/predict?top_k={bad}"), form()).await;
        let (status, kind, _) = crate::helpers::error_of(response).await;
        assert_eq!((status, kind.as_str()), (400, "validation"), "top_k={bad}");
    }
}

#[tokio::test]
async fn a_repeated_request_is_a_cache_hit_and_a_different_text_or_image_is_not() {
    let app = spawn_app().await;
    let coffee = sample("coffee.png");
    let first = app.predict_ok(&coffee, Some("Image of pizza")).await;
    let second = app.predict_ok(&coffee, Some("Image of pizza")).await;
    assert_eq!((first["cache_hit"].as_bool(), second["cache_hit"].as_bool()), (Some(false), Some(true)));
    assert_eq!(first["top_k"], second["top_k"]);
    assert_eq!(first["label"], second["label"]);
    assert!(second["timings_ms"]["inference"].is_null(), "no inference on a hit");

    let other_text = app.predict_ok(&coffee, Some("Image of coffee")).await;
    assert_eq!(other_text["cache_hit"], false);
    let no_text = app.predict_ok(&coffee, None).await;
    assert_eq!(no_text["cache_hit"], false);
    let other_image = app.predict_ok(&sample("orange.jpg"), Some("Image of pizza")).await;
    assert_eq!(other_image["cache_hit"], false);

    let stats = app.get_json("/system_status").await["caches"]["prediction"].clone();
    assert_eq!((stats["hits"].as_u64(), stats["misses"].as_u64(), stats["size"].as_u64()), (Some(1), Some(4), Some(4)));
}

#[tokio::test]
async fn every_prediction_answer_names_its_model_version_in_a_header() {
    let app = crate::helpers::spawn_app().await;
    let response = app.post_predict(&sample("orange.jpg"), None).await;
    let header = response.headers()["x-model-version"].to_str().unwrap().to_string();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["model"]["version"], header.as_str());
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(sample("orange.jpg")).file_name("a.jpg"));
    let batch = app.post_form("/predict/batch", form).await;
    assert_eq!(batch.headers()["x-model-version"].to_str().unwrap(), header);
}

/// sample/orange.jpg enlarged to a 12 MP phone photo's 4000x3000 and saved as a JPEG.
fn phone_photo() -> Vec<u8> {
    let orange = image::load_from_memory(&sample("orange.jpg")).unwrap();
    let large = orange.resize_exact(4000, 3000, image::imageops::FilterType::Triangle);
    let mut bytes = Vec::new();
    large.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    bytes
}

/// The fastest of three preprocessing times for `photo`, each a cache miss (bytes after the end
/// marker make the upload new without changing the image), and the last answer.
async fn fastest_preprocess(app: &crate::helpers::TestApp, photo: &[u8]) -> (f64, Value) {
    let mut times = Vec::new();
    let mut body = Value::Null;
    for trailer in 0u8..3 {
        let upload = [photo, &[trailer]].concat();
        body = app.predict_ok(&upload, None).await;
        assert_eq!(body["cache_hit"], false);
        times.push(body["timings_ms"]["preprocess"].as_f64().unwrap());
    }
    (times.into_iter().fold(f64::INFINITY, f64::min), body)
}

#[tokio::test]
async fn a_model_whose_manifest_asks_decodes_a_phone_photo_at_reduced_scale_with_the_same_answer() {
    use crate::helpers::{edit_manifest, spawn_app_on_model_copy, spawn_app_on_model_copy_with, test_config};
    let photo = phone_photo();
    let full = spawn_app_on_model_copy().await;
    let scaled = spawn_app_on_model_copy_with(test_config(), |dir| {
        edit_manifest(dir, |manifest| manifest["jpeg_dct_scaling"] = true.into())
    })
    .await;
    let (full_ms, full_body) = fastest_preprocess(&full, &photo).await;
    let (scaled_ms, scaled_body) = fastest_preprocess(&scaled, &photo).await;

    assert_ne!(full_body["model"]["fingerprint"], scaled_body["model"]["fingerprint"], "a new manifest, a new model");
    assert_eq!(full_body["label"], "orange", "{full_body}");
    assert_eq!(scaled_body["label"], "orange", "{scaled_body}");
    let (a, b) = (confidence(&full_body), confidence(&scaled_body));
    assert!((a - b).abs() < 0.03, "confidence {a} in full, {b} scaled");
    // 4000x3000 at 1/8 is 500x375: decoding and resizing 64 times fewer pixels.
    assert!(scaled_ms * 2.0 < full_ms, "preprocess {scaled_ms} ms scaled vs {full_ms} ms in full");
}
