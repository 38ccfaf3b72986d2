//! Model files, bundles and cache entries made by an attacker (issue: "A model file is code from
//! outside"): each is refused or contained, writes nothing outside its version folder, puts no
//! byte of another file into an answer, and the server answers throughout.
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;

use crate::bundles::{as_refs, bundle, bundle_with_weights, make_weights, upload_config, version_files};
use crate::helpers::{error_of, lite0, lite2, sample, server_command, spawn_app_with, test_config, Server};
use crate::metrics::scrape;
use crate::redis::Redis;
use crate::shared_cache::{replica, replica_with, wait_for_keys};

/// A TorchScript module whose forward pass creates `target` through `torch.from_file(shared=True)`.
fn file_writing_weights(dir: &std::path::Path, target: &std::path::Path) -> std::path::PathBuf {
    let script = format!(
        "import sys, torch\n\
         class Writer(torch.nn.Module):\n    def forward(self, x):\n        \
         t = torch.from_file({target:?}, shared=True, size=16)\n        \
         return torch.zeros(1, 1000) + t.sum()\n\
         torch.jit.script(Writer()).save(sys.argv[1])\n"
    );
    make_weights(&script, dir, "writer.pt")
}

#[tokio::test]
async fn a_torchscript_model_that_creates_a_file_is_refused_by_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("written-by-the-model");
    let body = bundle_with_weights(&file_writing_weights(dir.path(), &target));
    let app = spawn_app_with(upload_config()).await;
    let (status, kind, error) = error_of(app.upload(&body, None, "writer").await).await;
    assert_eq!((status, kind.as_str()), (422, "invalid_model"), "{error}");
    assert!(error.contains("aten::from_file"), "the operator is named: {error}");
    assert!(!target.exists(), "the validator wrote {}", target.display());
    app.predict_ok(&sample("coffee.png"), None).await;
}

#[tokio::test]
async fn the_server_itself_refuses_the_file_writing_model_on_a_reload() {
    // The drop-in folder is read by the server, not the validator: its own check holds.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("written-on-reload");
    let weights = file_writing_weights(dir.path(), &target);
    let app = crate::helpers::spawn_app_on_model_copy().await;
    std::fs::copy(&weights, app.model_file("efficientnet_lite0.pt")).unwrap();
    let (status, _, error) = error_of(app.post_reload().await).await;
    assert!(status == 422 && error.contains("aten::from_file"), "{status} {error}");
    assert!(!target.exists());
    app.predict_ok(&sample("coffee.png"), None).await;
}

#[tokio::test]
async fn an_onnx_model_whose_weights_name_an_outside_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let script = "import sys, onnx\nfrom onnx import helper, TensorProto\n\
        w = TensorProto(name='w', data_type=TensorProto.FLOAT, dims=[1000], data_location=TensorProto.EXTERNAL)\n\
        w.external_data.add(key='location', value='Cargo.toml')\n\
        w.external_data.add(key='length', value='4000')\n\
        x = helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, 224, 224])\n\
        y = helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, 1000])\n\
        mean = helper.make_node('ReduceMean', ['input'], ['m'], keepdims=0)\n\
        add = helper.make_node('Add', ['m', 'w'], ['logits'])\n\
        g = helper.make_graph([mean, add], 'leak', [x], [y], [w])\n\
        onnx.save(helper.make_model(g), sys.argv[1])\n";
    let weights = make_weights(script, dir.path(), "leak.onnx");
    let mut files = version_files(&lite2());
    let manifest = files.iter_mut().find(|(n, _)| n == "manifest.json").unwrap();
    let mut json: Value = serde_json::from_slice(&manifest.1).unwrap();
    json["weights"] = "leak.onnx".into();
    json["format"] = "onnx".into();
    manifest.1 = serde_json::to_vec(&json).unwrap();
    files.retain(|(n, _)| !n.starts_with("efficientnet"));
    files.push(("leak.onnx".into(), std::fs::read(weights).unwrap()));
    let app = spawn_app_with(upload_config()).await;
    let (status, _, error) = error_of(app.upload(&bundle(&as_refs(&files), None), None, "leak").await).await;
    assert!(status == 422 && error.contains("outside file") && error.contains("Cargo.toml"), "{status} {error}");
}

/// The peak resident memory (VmHWM) of process `pid`, in MB.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

#[tokio::test]
async fn a_bundle_with_a_one_gib_long_name_is_refused_without_reading_it() {
    // 1 GiB of zeros as a GNU long name: about 1 MB once compressed. It once took 21.8 GB.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(1 << 30);
    header.set_cksum();
    gz.write_all(header.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros).unwrap();
    }
    let body = gz.finish().unwrap();
    assert!(body.len() < 2 << 20, "{} bytes", body.len());

    // A server process of its own: its peak memory is its own, not the other tests'.
    let dirs = tempfile::tempdir().unwrap();
    let mut server = Server(
        server_command(dirs.path())
            .args(["--workers", "1", "--torch-threads", "1", "--log-format", "json", "--enable-model-upload"])
            .spawn()
            .unwrap(),
    );
    let stderr = std::io::BufReader::new(server.0.stderr.take().unwrap());
    let mut lines = std::io::BufRead::lines(stderr);
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|line| line["message"] == "ready")
        .and_then(|line| line["port"].as_u64())
        .expect("the server says ready with its port");
    // The rest of its log is read, so that its writes never block.
    std::thread::spawn(move || lines.for_each(drop));
    let before = peak_rss_mb(server.0.id());
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://127.0.0.1:{port}/models/food/versions?version=bomb"))
        .header("Content-Type", "application/gzip")
        .header("X-Bundle-SHA256", sha)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, _, error) = error_of(response).await;
    assert!(status == 422 && error.contains("long name") && error.len() < 300, "{status} {error}");
    let after = peak_rss_mb(server.0.id());
    assert!(after < before + 64, "the server's peak memory went from {before} to {after} MB");
    let health = client.get(format!("http://127.0.0.1:{port}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_model_whose_output_width_changes_with_the_input_gets_a_500_per_request_and_the_server_keeps_serving() {
    // 1000 outputs on the warm-up's synthetic image, 10 on a white one (every value 1.0); only
    // operators of the allowlist.
    let dir = tempfile::tempdir().unwrap();
    let script = "import sys, torch\n\
        class Shifty(torch.nn.Module):\n    def forward(self, x):\n        \
        k = int(x.mean() > 0.99)\n        \
        return torch.zeros(1, 1000 - 990 * k) + x.mean()\n\
        torch.jit.script(Shifty()).save(sys.argv[1])\n";
    let body = bundle_with_weights(&make_weights(script, dir.path(), "shifty.pt"));
    let app = spawn_app_with(upload_config()).await;
    let response = app.upload(&body, None, "shifty").await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    app.load_version("shifty").await;

    let mut white = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]))
        .write_to(&mut std::io::Cursor::new(&mut white), image::ImageFormat::Png)
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(white.clone()).file_name("w.png"));
    // A canary whose answers are refused loses its weight: the judge counts them as errors.
    let policy = serde_json::json!({
        "split": [{"target": "stable", "weight": 50}, {"target": "shifty", "weight": 50}],
        "canary_abort": {"window": 10, "max_error_rate": 0.5},
    });
    assert_eq!(app.put_routing(policy, None).await.status(), 200);
    let (status, kind, error) = error_of(app.post_form("/models/food/versions/shifty/predict", form).await).await;
    assert_eq!((status, kind.as_str()), (500, "model_output"), "{error}");
    assert!(error.contains("shifty") && error.contains("gave 10 outputs"), "{error}");
    for _ in 0..9 {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(white.clone()).file_name("w.png"));
        assert_eq!(app.post_form("/models/food/versions/shifty/predict", form).await.status(), 500);
    }
    let split = app.get_json("/models/food/routing").await["split"].clone();
    assert_eq!(split[1], serde_json::json!({"target": "shifty", "weight": 0}), "{split}");
    // The same client, the same connection pool: the server is there and the other inputs answer.
    let (version, answer) = app.predict_on("shifty", &sample("coffee.png")).await;
    assert_eq!(version, "shifty", "{answer}");
    assert_eq!(scrape(&app).await.get("food_api_bad_model_outputs_total").copied(), Some(10.0));
}

#[tokio::test]
async fn manifests_past_the_bounds_and_versions_named_like_aliases_are_refused() {
    let app = spawn_app_with(upload_config()).await;
    let mut files = version_files(&lite2());
    let manifest = files.iter_mut().find(|(n, _)| n == "manifest.json").unwrap();
    let original = manifest.1.clone();
    let mut json: Value = serde_json::from_slice(&original).unwrap();
    json["input_size"] = 8000.into();
    json["resize_shorter_side"] = 8000.into();
    manifest.1 = serde_json::to_vec(&json).unwrap();
    let (status, _, error) = error_of(app.upload(&bundle(&as_refs(&files), None), None, "huge").await).await;
    assert!(status == 422 && error.contains("input_size <= 1024"), "{status} {error}");

    let files = version_files(&lite2());
    let (status, _, error) = error_of(app.upload(&bundle(&as_refs(&files), None), None, "stable").await).await;
    assert!(status == 400 && error.contains("alias"), "{status} {error}");
}

#[tokio::test]
async fn concurrent_first_downloads_all_get_the_one_bundle() {
    let app = spawn_app_with(test_config()).await;
    let url = format!("{}/models/food/versions/{}/download", app.address, lite0());
    let downloads = (0..4).map(|_| async { app.client.get(&url).send().await.unwrap() });
    let responses = futures_util::future::join_all(downloads).await;
    let mut etags = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        etags.push(response.headers()["etag"].to_str().unwrap().to_string());
    }
    etags.dedup();
    assert_eq!(etags.len(), 1, "{etags:?}");
}

#[tokio::test]
async fn forged_or_moved_shared_cache_entries_are_misses_and_counted() {
    use redis::AsyncCommands;
    let redis = Redis::start();
    let image = sample("fruits.jpg");
    let first = replica(&redis).await;
    first.load_version(&lite2()).await;
    let computed = first.predict_ok(&image, None).await;
    let on_lite2 = first.predict_on(&lite2(), &image).await.1;
    assert_eq!(computed["cache"], "miss");
    let mut connection = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (lite0_key, lite2_key) = loop {
        let keys: Vec<String> = connection.keys("food:v2:*").await.unwrap();
        let fingerprint = |answer: &Value| answer["model"]["fingerprint"].as_str().unwrap().to_string();
        let find = |f: String| keys.iter().find(|k| k.contains(&f)).cloned();
        if let (Some(a), Some(b)) = (find(fingerprint(&computed)), find(fingerprint(&on_lite2))) {
            break (a, b);
        }
        assert!(std::time::Instant::now() < deadline, "the answers were not written: {keys:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Lite2's signed entry copied under Lite0's key: the signature covers the key.
    let lite2_value: Vec<u8> = connection.get(&lite2_key).await.unwrap();
    let () = connection.set(&lite0_key, &lite2_value).await.unwrap();
    let second = replica(&redis).await;
    let answer = second.predict_ok(&image, None).await;
    assert_eq!(answer["cache"], "miss", "a moved entry is not served: {answer}");
    assert_eq!(answer["label"], computed["label"]);
    // A value with its labels changed keeps no valid signature.
    let mut value: Vec<u8> = connection.get(&lite2_key).await.unwrap();
    let at = value.windows(5).position(|w| w == b"lemon").expect("the entry names its labels");
    value[at..at + 5].copy_from_slice(b"melon");
    let () = connection.set(&lite2_key, &value).await.unwrap();
    let third = replica(&redis).await;
    third.load_version(&lite2()).await;
    assert_eq!(third.predict_on(&lite2(), &image).await.1["cache"], "miss");
    let forged =
        |app| async move { scrape(app).await.get(r#"food_api_shared_cache_lookups_total{outcome="forged"}"#).copied() };
    assert_eq!(forged(&second).await, Some(1.0));
    assert_eq!(forged(&third).await, Some(1.0));
}

#[tokio::test]
async fn every_versions_statistics_need_the_admin_token_and_the_docs_page_cannot_be_framed() {
    let mut config = test_config();
    config.admin_token = Some(food_api::secret::Secret::new("stats token").unwrap());
    let app = spawn_app_with(config).await;
    for path in ["/v2/models/stats", "/v2/models/food/stats", &format!("/v2/models/food/versions/{}/stats", lite0())] {
        assert_eq!(app.get(path).await.status(), 401, "{path} without the token");
        let url = format!("{}{path}", app.address);
        let with_token = app.client.get(url).bearer_auth("stats token").send().await.unwrap();
        assert_eq!(with_token.status(), 200, "{path} with it");
    }
    let page = app.get("/docs/").await;
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("default-src 'self'"), "{policy}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn drop_in_files_whose_manifest_names_an_alias_become_a_version_of_another_name() {
    let app = crate::helpers::spawn_app_on_model_copy().await;
    let dir = app.model_file("manifest.json").parent().unwrap().to_path_buf();
    // New content (another label template), named like the alias it would shadow.
    crate::helpers::edit_manifest(&dir, |m| {
        m["version"] = "stable".into();
        m["text_encoder"]["label_template"] = "a dish of {}".into();
    });
    let response = app.post_reload().await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let answer = app.predict_ok(&sample("coffee.png"), None).await;
    let version = answer["model"]["version"].as_str().unwrap().to_string();
    assert!(version.starts_with("stable-") && version.len() == "stable-".len() + 8, "{version}");
    // `stable` still moves: back to the version before.
    assert_eq!(app.post_empty("/models/food/rollback").await.status(), 200);
    assert_ne!(app.predict_ok(&sample("coffee.png"), None).await["model"]["version"], version.as_str());
}

#[tokio::test]
async fn without_a_given_secret_each_data_folder_makes_its_own_and_another_ones_entries_are_misses() {
    let redis = Redis::start();
    let own_secret = || replica_with(&redis, |c| c.cache_secret = None);
    let (first, second) = (own_secret().await, own_secret().await);
    let secret = first.data_dir().join("cache-secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the secret is the owner's only");
    assert_ne!(std::fs::read(&secret).unwrap(), std::fs::read(second.data_dir().join("cache-secret")).unwrap());
    let image = sample("fruits.jpg");
    first.predict_ok(&image, None).await;
    wait_for_keys(&redis, 1);
    assert_eq!(second.predict_ok(&image, None).await["cache"], "miss", "signed under another secret");
    let forged = scrape(&second).await.get(r#"food_api_shared_cache_lookups_total{outcome="forged"}"#).copied();
    assert_eq!(forged, Some(1.0));
}
