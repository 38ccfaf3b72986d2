//! The text changes the answer by a rule a user can rely on (README, "Text").
use serde_json::Value;

use crate::helpers::{error_of, sample, spawn_app, spawn_app_on_model_copy, spawn_app_with, test_config};

fn probability_of(body: &Value, label: &str) -> f64 {
    let top = body["top_k"].as_array().unwrap();
    top.iter().find(|c| c["label"] == label).map_or(0.0, |c| c["probability"].as_f64().unwrap())
}

#[tokio::test]
async fn a_confident_image_is_not_overturned_by_a_contradicting_text() {
    let app = spawn_app().await;
    let body = app.predict_ok(&sample("coffee.png"), Some("Image of pizza")).await;
    assert_eq!(body["label"], "espresso", "{body}");
    assert_eq!(body["image"]["label"], "espresso");
    assert_eq!(body["text_match"]["label"], "pizza");
    assert!(body["text_match"]["similarity"].as_f64().unwrap() > 0.5, "{body}");
    assert_eq!(body["text_weight"], 1.0);
}

#[tokio::test]
async fn an_ambiguous_image_is_tipped_by_a_matching_text() {
    let app = spawn_app().await;
    let alone = app.predict_ok(&sample("fruits.jpg"), None).await;
    assert_eq!(alone["label"], "lemon");
    let body = app.predict_ok(&sample("fruits.jpg"), Some("a pile of oranges")).await;
    assert_eq!(body["label"], "orange", "{body}");
    assert_eq!(body["image"]["label"], "lemon", "the image-only answer is shown too");
    assert_eq!(body["text_match"]["label"], "orange");
}

#[tokio::test]
async fn a_matching_text_never_lowers_the_matched_class() {
    let mut config = test_config();
    config.max_top_k = 47;
    let app = spawn_app_with(config).await;
    for (photo, text) in [
        ("coffee.png", "a cup of coffee"),
        ("coffee.png", "Image of pizza"),
        ("apple.jpg", "a green apple"),
        ("orange.jpg", "lemons"),
        ("cat.png", "hot dog"),
    ] {
        let image = sample(photo);
        let alone: Value = app
            .post_form(
                "/predict?top_k=47",
                reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image.clone())),
            )
            .await
            .json()
            .await
            .unwrap();
        let form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image)).text("text", text);
        let with_text: Value = app.post_form("/predict?top_k=47", form).await.json().await.unwrap();
        let matched = with_text["text_match"]["label"].as_str().unwrap();
        let (before, after) = (probability_of(&alone, matched), probability_of(&with_text, matched));
        assert!(after >= before - 1e-6, "{photo} + {text:?}: {matched} went {before} -> {after}");
    }
}

#[tokio::test]
async fn no_text_or_blank_text_gives_the_image_answer() {
    let app = spawn_app().await;
    let coffee = sample("coffee.png");
    let alone = app.predict_ok(&coffee, None).await;
    assert!(alone["text_match"].is_null() && alone["text_weight"].is_null() && alone["text"].is_null());
    assert_eq!(alone["label"], alone["image"]["label"]);
    assert_eq!(alone["confidence"], alone["image"]["probability"]);
    let blank = app.predict_ok(&coffee, Some("  \n\t ")).await;
    assert!(blank["text"].is_null() && blank["text_match"].is_null(), "{blank}");
    assert_eq!(blank["cache_hit"], true, "blank text is no text, so the same request");
    assert_eq!(blank["top_k"], alone["top_k"]);
}

#[tokio::test]
async fn text_weight_zero_ignores_the_text() {
    let mut config = test_config();
    config.text_weight = 0.0;
    let app = spawn_app_with(config).await;
    let alone = app.predict_ok(&sample("fruits.jpg"), None).await;
    let with_text = app.predict_ok(&sample("fruits.jpg"), Some("a pile of oranges")).await;
    assert_eq!(with_text["label"], "lemon");
    assert_eq!(with_text["top_k"], alone["top_k"]);
    assert!(with_text["text_match"].is_null());
}

#[tokio::test]
async fn a_repeated_text_is_a_text_cache_hit_and_skips_the_encoder() {
    let app = spawn_app().await;
    let first = app.predict_ok(&sample("orange.jpg"), Some("a bowl of fruit")).await;
    assert!(first["timings_ms"]["text"].as_f64().unwrap() > 0.0);
    let second = app.predict_ok(&sample("apple.jpg"), Some("a bowl of fruit")).await;
    assert_eq!(second["cache_hit"], false, "another image: a prediction cache miss");
    assert!(second["timings_ms"]["text"].is_null(), "the text came from the text cache: {second}");
    assert_eq!(first["text_match"], second["text_match"]);
    let text_cache = app.get_json("/system_status").await["caches"]["text"].clone();
    assert_eq!(
        (text_cache["hits"].as_u64(), text_cache["misses"].as_u64(), text_cache["size"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(text_cache["capacity"], 1000);
}

#[tokio::test]
async fn a_long_but_allowed_text_is_truncated_not_refused() {
    let app = spawn_app().await;
    let long = "a plate of spaghetti carbonara with cheese and pepper ".repeat(17);
    assert!(long.split_whitespace().count() > 128, "longer than the encoder's 128 tokens");
    // Two texts that differ only past the 128th token encode alike.
    let (a, b) = (format!("{long} and a pizza"), format!("{long} and some ice cream"));
    assert!(a.chars().count() <= 1000 && b.chars().count() <= 1000);
    let first = app.predict_ok(&sample("coffee.png"), Some(&a)).await;
    let second = app.predict_ok(&sample("coffee.png"), Some(&b)).await;
    assert_eq!(second["cache_hit"], false, "different texts");
    assert_eq!(first["text_match"], second["text_match"]);
}

#[tokio::test]
async fn reload_refuses_a_broken_text_encoder_or_a_missing_tokenizer() {
    let app = spawn_app_on_model_copy().await;
    let before = app.predict_ok(&sample("fruits.jpg"), Some("a pile of oranges")).await;
    std::fs::write(app.model_file("minilm_l6_v2.pt"), b"not a model").unwrap();
    let (status, kind, message) = error_of(app.post_reload().await).await;
    assert_eq!((status, kind.as_str()), (422, "invalid_model"));
    assert!(message.contains("minilm_l6_v2.pt"), "{message}");

    std::fs::copy(crate::helpers::repo_path("checkpoints/minilm_l6_v2.pt"), app.model_file("minilm_l6_v2.pt")).unwrap();
    std::fs::remove_file(app.model_file("tokenizer.json")).unwrap();
    let (status, _, message) = error_of(app.post_reload().await).await;
    assert_eq!(status, 422);
    assert!(message.contains("tokenizer.json") && message.contains("not found"), "{message}");

    let after = app.predict_ok(&sample("fruits.jpg"), Some("a pile of oranges")).await;
    assert_eq!((after["label"].clone(), after["model"]["generation"].clone()), (before["label"].clone(), 1.into()));
}
