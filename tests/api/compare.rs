//! Versions compared on the shipped labelled set (sample/labelled, real photos): the server's
//! figures are those of the offline reference (scripts/compare_reference.py, PyTorch and PIL).
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    config_in, error_of, link_version, lite0, lite2, repo_path, sample, spawn_app, spawn_app_with, TestApp,
};

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.address)).json(body).send().await.expect("request sent")
    }
}

fn reference() -> Value {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh", python.display());
    let output = std::process::Command::new(python)
        .args(["-W", "ignore", "scripts/compare_reference.py"])
        .arg(repo_path("models/food").join(lite0()))
        .arg(repo_path("models/food").join(lite2()))
        .args(["--set", "sample/labelled"])
        .current_dir(repo_path("."))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn assert_matches_reference(report: &Value, reference: &Value) {
    assert_eq!(report["samples"], 12);
    for version in [lite0(), lite2()] {
        let (ours, theirs) = (&report["versions"][&version], &reference[&version]);
        assert_eq!(ours["accuracy"], theirs["accuracy"], "{version}: {ours}");
        assert_eq!(ours["top_k_accuracy"], theirs["top_k_accuracy"], "{version}: {ours}");
        assert_eq!(ours["errors"], 0);
    }
    // McNemar's counts follow from the reference's answers.
    let labels: Value =
        serde_json::from_slice(&std::fs::read(repo_path("sample/labelled/labels.json")).unwrap()).unwrap();
    let right = |version: &str, file: &str| reference[version]["answers"][file] == labels[file];
    let files: Vec<&String> = labels.as_object().unwrap().keys().collect();
    let only = |a: &str, b: &str| files.iter().filter(|f| right(a, f) && !right(b, f)).count();
    let pair = &report["pairs"][0];
    assert_eq!((pair["a"].as_str(), pair["b"].as_str()), (Some(lite0().as_str()), Some(lite2().as_str())));
    assert_eq!(
        (pair["only_a_correct"].as_u64(), pair["only_b_correct"].as_u64()),
        (Some(only(&lite0(), &lite2()) as u64), Some(only(&lite2(), &lite0()) as u64))
    );
    let p = pair["mcnemar_p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{pair}");
}

#[tokio::test]
async fn a_comparison_on_the_shipped_set_gives_the_offline_references_accuracy_at_once_and_as_a_job() {
    // First: it takes seconds, and a pooled connection left idle past the server's keep-alive
    // can be closed just as the next POST goes out on it.
    let reference = reference();
    let app = spawn_app().await;
    app.load_version(&lite2()).await;

    let response = app.post_json("/models/food/compare", &json!({"set": "labelled"})).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_matches_reference(&report, &reference);
    let espresso = &report["versions"][lite0()]["per_class"]["espresso"];
    assert_eq!((espresso["support"].as_u64(), espresso["recall"].as_f64()), (Some(4), Some(1.0)));
    assert!(report["versions"][lite0()]["latency_ms"]["p95"].as_f64().unwrap() > 0.0);

    // As a job: 202, then the result where Location says.
    let response = app.post_json("/models/food/compare", &json!({"set": "labelled", "async": true})).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let state = app.get_json(&location).await;
        if state["status"] == "done" || Instant::now() > deadline {
            break state;
        }
        // The job runs on its own: poll (bounded) until it is done.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "done", "{done}");
    assert_matches_reference(&done["result"], &reference);

    // Photos sent inline; and what is refused.
    let coffee = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sample("coffee.png"));
    let inline = json!({"versions": ["stable"], "samples": [{"image": coffee, "label": "espresso"}]});
    let report: Value = app.post_json("/models/food/compare", &inline).await.json().await.unwrap();
    assert_eq!(report["versions"][lite0()]["accuracy"], 1.0);
    let unknown = json!({"samples": [{"image": coffee, "label": "sushi"}]});
    let (status, _, error) = error_of(app.post_json("/models/food/compare", &unknown).await).await;
    assert!(status == 400 && error.contains("sushi"), "{error}");
    for (body, expected) in [(json!({"set": "../etc"}), 400), (json!({"set": "nope"}), 404), (json!({}), 400)] {
        let (status, _, error) = error_of(app.post_json("/models/food/compare", &body).await).await;
        assert_eq!(status, expected, "{body}: {error}");
    }
    let (status, _, _) = error_of(app.get("/models/food/compare/999").await).await;
    assert_eq!(status, 404);
}

/// Lite0 in bfloat16 (set-up exports it into models-bf16/; 2x faster on CPUs with AMX, BENCHMARKS.md
/// "Speed, round two") changes the model's numbers, so it is judged as issue 20 asks before it may
/// serve. Where the CPU lacks bf16 instructions oneDNN emulates them: slower, and the numbers may
/// differ from a bf16 CPU's, which is why this runs on whatever machine CI has.
#[tokio::test]
async fn the_bf16_version_passes_compare_against_the_float_one_on_the_labelled_set() {
    passes_compare_against_float("models-bf16", "bf16").await;
}

/// Lite0's ONNX export in int8 (set-up exports it into models-int8/, scripts/quantize.py): ONNX
/// Runtime's int8 kernels, with 7-bit weights so that no CPU's kernel saturates and the answers
/// are the same on every x86 CPU. Judged the same way.
#[tokio::test]
async fn the_int8_version_passes_compare_against_the_float_one_on_the_labelled_set() {
    passes_compare_against_float("models-int8", "int8").await;
}

/// Issue 20's rule for a version whose numbers differ from the float model's: top-1 agreement with
/// the float version at least 99% on the labelled set, accuracy not lower, no errors.
async fn passes_compare_against_float(exported_into: &str, suffix: &str) {
    let version = format!("{}-{suffix}", lite0());
    let from = repo_path(exported_into).join("food").join(&version);
    assert!(from.join("manifest.json").is_file(), "{} is missing: run scripts/setup.sh", from.display());
    let dirs = tempfile::tempdir().unwrap();
    let config = config_in(dirs.path());
    let to = config.model_repository.join("food").join(&version);
    link_version(&from, &to);
    let app = spawn_app_with(config).await;
    app.load_version(&version).await;

    let body = json!({"set": "labelled", "versions": [lite0(), &version]});
    let response = app.post_json("/models/food/compare", &body).await;
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    let (float, other) = (&report["versions"][lite0()], &report["versions"][&version]);
    assert_eq!((float["errors"].as_u64(), other["errors"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!((float["answered"].as_u64(), other["answered"].as_u64()), (Some(12), Some(12)), "{report}");
    assert!(other["accuracy"].as_f64().unwrap() >= float["accuracy"].as_f64().unwrap(), "{report}");
    let pair = &report["pairs"][0];
    assert!(pair["agreement"].as_f64().unwrap() >= 0.99, "{pair}");
}
