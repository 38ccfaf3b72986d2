//! /openapi.json covers every route with its bodies and the error shape; /docs/ serves Swagger UI
//! from the binary (no CDN: the page works offline).
use serde_json::Value;

use crate::helpers::{error_of, spawn_app};

const ROUTES: [(&str, &str); 48] = [
    ("/", "get"),
    ("/app.js", "get"),
    ("/app.css", "get"),
    ("/predict", "post"),
    ("/predict/batch", "post"),
    ("/classes", "get"),
    ("/health", "get"),
    ("/inference/history", "get"),
    ("/stats", "get"),
    ("/system_status", "get"),
    ("/reload_model", "post"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
    ("/docs", "get"),
    ("/docs/", "get"),
    ("/v2", "get"),
    ("/v2/health/live", "get"),
    ("/v2/health/ready", "get"),
    ("/v2/models/{name}", "get"),
    ("/v2/models/{name}/ready", "get"),
    ("/v2/models/{name}/infer", "post"),
    ("/v2/models/{name}/versions/{version}", "get"),
    ("/v2/models/{name}/versions/{version}/ready", "get"),
    ("/v2/models/{name}/versions/{version}/infer", "post"),
    ("/v2/repository/index", "post"),
    ("/v2/repository/models/{name}/load", "post"),
    ("/v2/repository/models/{name}/unload", "post"),
    ("/v2/models/stats", "get"),
    ("/v2/models/{name}/stats", "get"),
    ("/v2/models/{name}/versions/{version}/stats", "get"),
    ("/models", "get"),
    ("/models/{name}/versions/{version}", "get"),
    ("/models/{name}/versions/{version}/stats", "get"),
    ("/models/{name}/versions/{version}/load", "post"),
    ("/models/{name}/versions/{version}/unload", "post"),
    ("/models/{name}/versions/{version}/predict", "post"),
    ("/models/{name}/versions/{version}/predict/batch", "post"),
    ("/models/{name}/aliases/{alias}", "put"),
    ("/models/{name}/aliases/{alias}", "delete"),
    ("/models/{name}/rollback", "post"),
    ("/models/{name}/versions", "post"),
    ("/models/{name}/versions/{version}/download", "get"),
    ("/models/{name}/compare", "post"),
    ("/models/{name}/compare/{job}", "get"),
    ("/models/{name}/routing", "get"),
    ("/models/{name}/routing", "put"),
    ("/models/{name}/routing", "delete"),
    ("/deployments", "get"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_its_request_bodies_and_the_error_shape() {
    let app = spawn_app().await;
    let doc: Value = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    for (path, method) in ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from {}", doc["paths"]);
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, ROUTES.len(), "the document lists only the routes the server has");
    let predict = &doc["paths"]["/predict"]["post"];
    let form = &predict["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert!(form.is_object() && predict["requestBody"]["content"]["application/json"].is_object(), "{predict}");
    let schemas = &doc["components"]["schemas"];
    let image = &schemas["PredictForm"]["properties"]["image"];
    assert_eq!(
        (image["type"].as_str(), image["format"].as_str()),
        (Some("string"), Some("binary")),
        "a file picker in Swagger UI"
    );
    assert!(schemas["ErrorBody"]["properties"]["error_type"].is_object(), "{schemas}");
    assert!(schemas["PredictResponse"]["properties"]["top_k"].is_object(), "{schemas}");
    assert!(predict["responses"]["415"].is_object(), "{predict}");
    let top_k = &predict["parameters"][0];
    assert_eq!(
        (top_k["name"].as_str(), top_k["in"].as_str(), top_k["required"].as_bool()),
        (Some("top_k"), Some("query"), Some(false)),
        "{top_k}"
    );
    assert!(doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"].is_object());
}

#[tokio::test]
async fn the_docs_page_and_its_assets_come_from_the_binary() {
    let app = spawn_app().await;
    // /docs sends a browser to /docs/, where the page's relative links resolve.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = no_redirects.get(format!("{}/docs", app.address)).send().await.unwrap();
    assert_eq!((redirect.status().as_u16(), redirect.headers()["location"].to_str().unwrap()), (308, "/docs/"));

    let page = app.get("/docs").await;
    assert_eq!((page.status().as_u16(), page.url().path()), (200, "/docs/"));
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("./swagger-ui-bundle.js") && html.contains("./swagger-initializer.js") && !html.contains("://"),
        "{html}"
    );
    // The page's settings: our document, no top bar to load others, no online validator.
    let initializer = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    for setting in [r#""url": "/openapi.json""#, r#""layout": "BaseLayout""#, r#""validatorUrl": "none""#] {
        assert!(initializer.contains(setting), "{setting} not in {initializer}");
    }
    for (file, content_type, at_least) in
        [("swagger-ui-bundle.js", "javascript", 500_000), ("swagger-ui.css", "text/css", 50_000)]
    {
        let response = app.get(&format!("/docs/{file}")).await;
        assert_eq!(response.status(), 200, "{file}");
        assert!(
            response.headers()["content-type"].to_str().unwrap().contains(content_type),
            "{file}: {:?}",
            response.headers()["content-type"]
        );
        assert!(response.bytes().await.unwrap().len() > at_least, "{file}");
    }
    let (status, kind, _) = error_of(app.get("/docs/no-such-file.js").await).await;
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    assert_eq!(app.get("/docs/../Cargo.toml").await.status(), 404);
}

#[tokio::test]
async fn the_document_states_the_limits_this_servers_settings_enforce() {
    let mut config = crate::helpers::test_config();
    config.max_top_k = 7;
    config.max_text_chars = 50;
    config.max_batch_items = 3;
    let app = crate::helpers::spawn_app_with(config).await;
    let document = app.get_json("/openapi.json").await;
    let top_k = document["paths"]["/predict"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "top_k")
        .unwrap()
        .clone();
    assert_eq!(
        (&top_k["schema"]["minimum"], &top_k["schema"]["maximum"]),
        (&serde_json::json!(1), &serde_json::json!(7))
    );
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["PredictJson"]["properties"]["text"]["maxLength"], 50);
    assert_eq!(schemas["PredictJson"]["properties"]["image"]["minLength"], 1);
    assert_eq!(schemas["BatchForm"]["properties"]["image"]["maxItems"], 3);
    assert!(
        document["paths"]["/predict"]["post"]["responses"]["404"].is_object(),
        "an unknown X-Model-Version is a 404"
    );
    // What the document says is what the server does.
    let response = app
        .client
        .post(format!("{}/predict?top_k=8", app.address))
        .multipart(
            reqwest::multipart::Form::new()
                .part("image", reqwest::multipart::Part::bytes(crate::helpers::sample("apple.jpg")).file_name("a.jpg")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
