//! A team's own model in (scripts/import_model.py, scripts/update_model.sh): seeded torchvision and
//! timm networks whose heads are the sample photos' features (tests/import/make_checkpoints.py),
//! saved the ways teams save them, imported, served, and answering as eager PyTorch does.
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::helpers::*;

static CHECKPOINTS: OnceCell<TempDir> = OnceCell::const_new();

/// The made checkpoints and expected.json, once for every test here (about 30 s).
async fn checkpoints() -> &'static Path {
    let dir = CHECKPOINTS
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            python_check("tests/import/make_checkpoints.py", &[dir.path().as_os_str()], Duration::from_secs(600)).await;
            dir
        })
        .await;
    dir.path()
}

fn expected(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

/// scripts/import_model.py with `args`; the first import here also builds the architecture index.
async fn import(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(repo_path(".venv/bin/python"))
        .arg(repo_path("scripts/import_model.py"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(900), run).await.expect("the import finishes").unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The version an import printed ("imported food version X").
fn imported_version(output: &Output) -> String {
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "import failed: {stdout}{}", text(&output.stderr));
    let line = stdout.lines().find(|l| l.starts_with("imported food version ")).expect("the report");
    line.trim_start_matches("imported food version ").to_string()
}

#[tokio::test]
async fn imported_torchvision_and_timm_models_answer_as_eager_pytorch_does() {
    let made = checkpoints().await;
    let expected = expected(made);
    let root = tempfile::tempdir().unwrap();
    let repository = repository_in(root.path());
    let repository_arg = repository.to_str().unwrap();
    // The server runs while the versions are imported into its repository: each is found by its
    // first load, as a team's import is.
    let mut config = test_config();
    config.model_repository = repository.clone();
    config.data_dir = root.path().join("data");
    let app = spawn_app_with(config).await;

    // ViT-Tiny and DeiT-Tiny have the same layers and different preprocessing: the importer asks.
    let vit = &expected["vit_tiny"];
    let ambiguous = import(&[
        vit["weights"].as_str().unwrap(),
        "--classes",
        vit["classes"].as_str().unwrap(),
        "--repository",
        repository_arg,
    ])
    .await;
    let stderr = text(&ambiguous.stderr);
    assert_eq!(ambiguous.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("deit_tiny_patch16_224") && stderr.contains("--arch"), "{stderr}");

    let mut versions = Vec::new();
    for (case, made) in expected.as_object().unwrap() {
        let mut args = vec![made["weights"].as_str().unwrap(), "--classes", made["classes"].as_str().unwrap()];
        args.extend(["--repository", repository_arg]);
        if case == "vit_tiny" {
            args.extend(["--arch", "timm:vit_tiny_patch16_224"]);
        }
        let output = import(&args).await;
        let version = imported_version(&output);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(repository.join("food").join(&version).join("manifest.json")).unwrap(),
        )
        .unwrap();
        // timm's networks keep their own preprocessing (bicubic), torchvision's the ImageNet recipe.
        let timm = made["arch"].as_str().unwrap().starts_with("timm:");
        assert_eq!(manifest["interpolation"].as_str().unwrap_or("bilinear"), if timm { "bicubic" } else { "bilinear" });
        versions.push((case.clone(), version));
    }

    for (case, version) in &versions {
        let loaded =
            app.client.post(format!("{}/models/food/versions/{version}/load", app.address)).send().await.unwrap();
        assert_eq!(loaded.status(), 200, "{case}: {}", loaded.text().await.unwrap());
        let mut tops = std::collections::BTreeSet::new();
        let mut worst = (0.0f64, String::new());
        for (photo, eager) in expected[case]["answers"].as_object().unwrap() {
            let path = format!("/models/food/versions/{version}/predict?top_k=5");
            let form = reqwest::multipart::Form::new()
                .part("image", reqwest::multipart::Part::bytes(sample(photo)).file_name("upload"));
            let response = app.post_form(&path, form).await;
            assert_eq!(response.status(), 200, "{case} {photo}");
            let served: Value = response.json().await.unwrap();
            let top_k = served["top_k"].as_array().unwrap();
            assert_eq!(top_k.len(), 5, "{case} {photo}: every class ranked");
            for entry in top_k {
                let label = entry["label"].as_str().unwrap();
                let (got, want) = (entry["probability"].as_f64().unwrap(), eager[label].as_f64().unwrap());
                if (got - want).abs() > worst.0 {
                    worst = ((got - want).abs(), format!("{photo} {label}: served {got:.4}, eager {want:.4}"));
                }
            }
            let mut ranked: Vec<(&String, f64)> =
                eager.as_object().unwrap().iter().map(|(l, p)| (l, p.as_f64().unwrap())).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            if ranked[0].1 - ranked[1].1 > 0.05 {
                assert_eq!(served["label"], ranked[0].0.as_str(), "{case} {photo}: top-1");
            }
            tops.insert(served["label"].as_str().unwrap().to_string());
        }
        println!("{case}: the largest difference to eager PyTorch is {:.4} ({})", worst.0, worst.1);
        assert!(worst.0 <= 0.02, "{case}: every top-5 probability within 0.02 of eager PyTorch's: {}", worst.1);
        assert!(tops.len() >= 3, "{case}: answers differ from photo to photo: {tops:?}");
    }
}

#[tokio::test]
async fn every_promised_family_is_found_from_its_weights_alone() {
    let out = python_check("tests/import/check_detection.py", &[], Duration::from_secs(900)).await;
    assert!(out.contains("all 31 architectures found"), "{out}");
}

#[tokio::test]
async fn bad_checkpoints_and_mappings_get_one_line_each_and_nothing_is_written() {
    let made = checkpoints().await;
    let resnet = made.join("resnet18/best_model.pth");
    let classes = made.join("resnet18/classes.json");
    let scratch = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let page = file("page.pth", b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n");
    let weights = std::fs::read(&resnet).unwrap();
    let truncated = file("truncated.pth", &weights[..weights.len() / 2]);
    let unparsable = file("classes.json", b"{\"pizza\": 0,");
    let three = file("three.json", b"[\"pizza\", \"burger\", \"sushi\"]");
    let whole = made.join("whole_model.pth");
    let nan = nan_weights(scratch.path(), &resnet).await;
    let p = |path: &PathBuf| path.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![p(&page), "--classes".into(), p(&classes)], "HTML page"),
        (vec![p(&truncated), "--classes".into(), p(&classes)], "truncated or damaged"),
        (
            vec![p(&resnet), "--classes".into(), p(&classes), "--arch".into(), "resnet50".into()],
            "fit torchvision:resnet18",
        ),
        (vec![p(&nan), "--classes".into(), p(&classes)], "not finite"),
        (vec![p(&resnet), "--classes".into(), p(&unparsable)], "not valid JSON"),
        (vec![p(&resnet), "--classes".into(), p(&three)], "names 3 classes, but the model's head has 5 outputs"),
        (vec![p(&resnet), "--classes".into(), p(&classes), "--max-mb".into(), "10".into()], "more than --max-mb 10"),
        (vec![p(&whole), "--classes".into(), p(&classes)], "--trust-pickle"),
    ];
    let repository = scratch.path().join("models");
    for (mut args, says) in cases {
        args.extend(["--repository".into(), p(&repository)]);
        let output = import(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line, no traceback: {stderr}");
        assert!(stderr.starts_with("import_model: ") && stderr.contains(says), "{args:?}: {stderr}");
        assert!(!repository.exists(), "{args:?}: nothing written");
    }
}

/// The resnet18 checkpoint with one weight NaN, as a diverged training run leaves it.
async fn nan_weights(dir: &Path, from: &Path) -> PathBuf {
    let script = dir.join("nan.py");
    std::fs::write(
        &script,
        "import sys, torch\nsd = torch.load(sys.argv[1], weights_only=True)\n\
         sd['module.layer2.0.conv1.weight'][0, 0, 0, 0] = float('nan')\ntorch.save(sd, sys.argv[2])\n",
    )
    .unwrap();
    let out = dir.join("nan.pth");
    let status =
        std::process::Command::new(repo_path(".venv/bin/python")).arg(&script).arg(from).arg(&out).status().unwrap();
    assert!(status.success());
    out
}

#[tokio::test]
async fn a_bare_checkpoint_copied_into_the_drop_in_folder_is_refused_naming_the_import_command() {
    let made = checkpoints().await;
    let app = spawn_app_on_model_copy().await;
    std::fs::copy(made.join("mobilenet_v3_small/checkpoint.pth"), app.model_file("best_model.pth")).unwrap();
    std::fs::copy(made.join("mobilenet_v3_small/classes.json"), app.model_file("class_mapping.json")).unwrap();
    let (status, kind, message) = error_of(app.post_reload().await).await;
    assert_eq!((status, kind.as_str()), (422, "invalid_model"), "{message}");
    assert!(message.contains("best_model.pth") && message.contains("scripts/update_model.sh"), "{message}");
    assert!(message.contains("scripts/import_model.py"), "{message}");
    // Still the bundled model, with its own labels.
    assert_eq!(app.get_json("/classes").await["count"], 47);
    assert_eq!(app.predict_ok(&sample("orange.jpg"), None).await["label"], "orange");
}

#[tokio::test]
async fn update_model_fetches_a_pinned_checkpoint_imports_it_and_makes_it_stable() {
    let made = checkpoints().await;
    let app = spawn_app_on_model_copy().await;
    let files = HttpServer::serve(made).await;
    let weights_url = format!("{}/resnet18/best_model.pth", files.address);
    let classes_url = format!("{}/resnet18/classes.json", files.address);
    let sha = sha256_hex(&std::fs::read(made.join("resnet18/best_model.pth")).unwrap());
    let before = app.get_json("/models").await["models"][0]["aliases"]["stable"].clone();

    // A wrong pin: nothing imported, nothing changed.
    let wrong = update_model(&app, &[&weights_url, &classes_url, "--sha256", &"0".repeat(64)]).await;
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong.stderr));
    assert!(text(&wrong.stderr).contains("not the pinned"), "{}", text(&wrong.stderr));
    assert_eq!(app.get_json("/models").await["models"][0]["aliases"]["stable"], before);

    let done = update_model(&app, &[&weights_url, &classes_url, "--sha256", &sha]).await;
    assert!(done.status.success(), "{}{}", text(&done.stdout), text(&done.stderr));
    let aliases = app.get_json("/models").await["models"][0]["aliases"].clone();
    assert!(aliases["stable"].as_str().unwrap().starts_with("resnet18-"), "{aliases}");
    assert_eq!(aliases["previous"], before, "the replaced version is kept as previous");
    let eager = &expected(made)["resnet18"]["answers"]["apple.jpg"];
    let answer = app.predict_ok(&sample("apple.jpg"), None).await;
    let label = answer["label"].as_str().unwrap();
    assert!((answer["confidence"].as_f64().unwrap() - eager[label].as_f64().unwrap()).abs() <= 0.02, "{answer}");
    assert_eq!(app.get_json("/classes").await["count"], 5);

    let rolled = app.client.post(format!("{}/models/food/rollback", app.address)).send().await.unwrap();
    assert_eq!(rolled.status(), 200);
    assert_eq!(app.get_json("/models").await["models"][0]["aliases"]["stable"], before);
}

async fn update_model(app: &TestApp, args: &[&str]) -> Output {
    let dir = app.model_dir.as_ref().unwrap().path();
    let port = app.address.rsplit(':').next().unwrap();
    let run = tokio::process::Command::new(repo_path("scripts/update_model.sh"))
        .args(args)
        .env("FOOD_API_PORT", port)
        .env("FOOD_API_MODEL_DIR", dir)
        .env("FOOD_API_CLASS_MAPPING", dir.join("class_mapping.json"))
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(900), run).await.expect("update_model finishes").unwrap()
}

/// Python's http.server on a free loopback port, serving `dir`: the web server the seed's
/// update_model.sh fetched from.
struct HttpServer {
    address: String,
    _process: Server,
}

impl HttpServer {
    async fn serve(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(repo_path(".venv/bin/python"))
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line.split("port ").nth(1).and_then(|rest| rest.split_whitespace().next()).expect(&line).to_string();
        Self { address: format!("http://127.0.0.1:{port}"), _process: Server(child) }
    }
}
