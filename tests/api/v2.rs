//! The Open Inference Protocol v2 (KServe/Triton REST), with requests shaped as the protocol
//! documents them.
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{error_of, sample, spawn_app, TestApp};

const MODEL: &str = "food";

async fn infer(app: &TestApp, model: &str, body: Value) -> reqwest::Response {
    app.client.post(format!("{}/v2/models/{model}/infer", app.address)).json(&body).send().await.expect("request sent")
}

fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name}: {body}"))
}

#[tokio::test]
async fn health_server_and_model_metadata_follow_the_protocol() {
    let app = spawn_app().await;
    assert_eq!(app.get_json("/v2/health/live").await, json!({"live": true}));
    assert_eq!(app.get_json("/v2/health/ready").await, json!({"ready": true}));
    assert_eq!(app.get_json("/v2").await["extensions"], json!(["classification", "model_repository", "statistics"]));
    assert_eq!(app.get_json(&format!("/v2/models/{MODEL}/ready")).await["ready"], true);

    let meta = app.get_json(&format!("/v2/models/{MODEL}")).await;
    assert_eq!((meta["name"].as_str(), meta["platform"].as_str()), (Some(MODEL), Some("pytorch_torchscript")));
    assert_eq!(meta["versions"][0], app.get_json("/health").await["model"]["version"]);
    let inputs: Vec<&str> = meta["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["image", "text"]);
    assert!(meta["inputs"].as_array().unwrap().iter().all(|i| i["datatype"] == "BYTES"));

    let (status, kind, error) = error_of(app.get("/v2/models/resnet50").await).await;
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    assert!(error.contains(MODEL), "{error}");
}

#[tokio::test]
async fn infer_takes_base64_bytes_inputs_and_answers_label_probability_and_top_k() {
    let app = spawn_app().await;
    let (fruits, coffee) = (sample("fruits.jpg"), sample("coffee.png"));
    let request = json!({
        "id": "request-42",
        "inputs": [
            {"name": "image", "shape": [2], "datatype": "BYTES", "data": [STANDARD.encode(&fruits), STANDARD.encode(&coffee)]},
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a pile of oranges", ""]},
        ],
    });
    let response = infer(&app, MODEL, request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["id"].as_str(), body["model_name"].as_str()), (Some("request-42"), Some(MODEL)));

    let label = output(&body, "label");
    assert_eq!((&label["datatype"], &label["shape"]), (&json!("BYTES"), &json!([2])));
    assert_eq!(label["data"], json!(["orange", "espresso"]));
    // The same answers as /predict, text included.
    let multipart = app.predict_ok(&fruits, Some("a pile of oranges")).await;
    let probability = output(&body, "probability");
    assert_eq!(probability["datatype"], "FP32");
    assert!((probability["data"][0].as_f64().unwrap() - multipart["confidence"].as_f64().unwrap()).abs() < 1e-6);

    let top_k = output(&body, "top_k");
    assert_eq!(top_k["shape"], json!([2, 5]));
    let first: Vec<&str> = top_k["data"][0].as_str().unwrap().split(':').collect();
    assert_eq!((first[1], first[2]), ("950", "orange"), "score:index:label");
    assert!((first[0].parse::<f64>().unwrap() - multipart["confidence"].as_f64().unwrap()).abs() < 1e-5);
}

#[tokio::test]
async fn the_classification_extension_gives_the_top_n_as_score_index_label() {
    let app = spawn_app().await;
    let request = json!({
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [STANDARD.encode(sample("fruits.jpg"))]}],
        "outputs": [{"name": "top_k", "parameters": {"classification": 2}}],
    });
    let body: Value = infer(&app, MODEL, request).await.json().await.unwrap();
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1, "only the output asked for");
    let top = output(&body, "top_k");
    assert_eq!(top["shape"], json!([1, 2]));
    let labels: Vec<&str> =
        top["data"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().rsplit(':').next().unwrap()).collect();
    assert_eq!(labels, ["lemon", "orange"]);
}

#[tokio::test]
async fn malformed_infer_requests_get_4xx_with_a_json_error() {
    let app = spawn_app().await;
    let image = |data: Value, shape: Value| json!({"inputs": [{"name": "image", "shape": shape, "datatype": "BYTES", "data": data}]});
    let orange = STANDARD.encode(sample("orange.jpg"));
    for (body, status, kind) in [
        (json!({"inputs": []}), 400, "validation"),
        (image(json!([orange]), json!([2])), 400, "validation"),
        (image(json!([1, 2]), json!([2])), 400, "validation"),
        (image(json!(["not base64!"]), json!([1])), 400, "validation"),
        (image(json!([STANDARD.encode(b"plain text")]), json!([1])), 415, "unsupported_media_type"),
        (json!({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [0.5]}]}), 400, "validation"),
        (
            json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [orange]}], "outputs": [{"name": "logits"}]}),
            400,
            "validation",
        ),
        (json!({"no": "inputs"}), 400, "validation"),
    ] {
        let (got, got_kind, error) = error_of(infer(&app, MODEL, body.clone()).await).await;
        assert_eq!((got, got_kind.as_str()), (status, kind), "{body}: {error}");
    }
    let (status, kind, _) = error_of(infer(&app, "resnet50", image(json!([orange]), json!([1]))).await).await;
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    let raw = app
        .client
        .post(format!("{}/v2/models/{MODEL}/infer", app.address))
        .header("content-type", "text/plain")
        .body("{}");
    let (status, kind, _) = error_of(raw.send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (415, "unsupported_media_type"));
}

#[tokio::test]
async fn an_infer_request_without_a_content_type_is_read_as_json_as_triton_does() {
    // tritonclient.http sends its JSON infer requests with no Content-Type at all.
    let app = spawn_app().await;
    let body = json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [STANDARD.encode(sample("fruits.jpg"))]}]});
    let response = app
        .client
        .post(format!("{}/v2/models/{MODEL}/infer", app.address))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(output(&answer, "label")["data"][0], "lemon");
    // Another declared type is still refused.
    let response = app
        .client
        .post(format!("{}/v2/models/{MODEL}/infer", app.address))
        .header("Content-Type", "text/plain")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 415);
}

/// A body in the binary data extension: the JSON, then each BYTES input's length-prefixed elements.
fn binary_body(json: &Value, elements: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(json).unwrap();
    let header = body.len();
    for e in elements {
        body.extend_from_slice(&(e.len() as u32).to_le_bytes());
        body.extend_from_slice(e);
    }
    (body, header)
}

async fn infer_binary(app: &TestApp, body: Vec<u8>, header: usize) -> reqwest::Response {
    app.client
        .post(format!("{}/v2/models/{MODEL}/infer", app.address))
        .header("Inference-Header-Content-Length", header.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_binary_data_extension_takes_raw_images_and_answers_in_binary_when_asked() {
    let app = spawn_app().await;
    let photo = sample("fruits.jpg");
    let size = 4 + photo.len();
    let request = json!({
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": size}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "probability"}],
    });
    let (body, header) = binary_body(&request, &[&photo]);
    let response = infer_binary(&app, body, header).await;
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let bytes = response.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..length]).unwrap();
    assert_eq!(output(&head, "label")["parameters"]["binary_data_size"], 9, "{head}");
    assert_eq!(&bytes[length..], [&5u32.to_le_bytes()[..], b"lemon"].concat().as_slice());
    assert!(output(&head, "probability")["data"][0].as_f64().unwrap() > 0.5, "a JSON output stays JSON: {head}");

    // Malformed: each a 400 naming what is wrong, never a 500.
    let (good, header) = binary_body(&request, &[&photo]);
    for (body, header, says) in [
        (good.clone(), good.len() + 1, "body holds"),
        (good[..good.len() - 10].to_vec(), header, "past the body's binary data"),
        ([good.clone(), vec![0; 3]].concat(), header, "belong to no input"),
    ] {
        let (status, kind, error) = error_of(infer_binary(&app, body, header).await).await;
        assert_eq!((status, kind.as_str()), (400, "validation"), "{error}");
        assert!(error.contains(says), "{error}");
    }
    let wrong_length = app
        .client
        .post(format!("{}/v2/models/{MODEL}/infer", app.address))
        .header("Inference-Header-Content-Length", "lots")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong_length).await.0, 400);
}
