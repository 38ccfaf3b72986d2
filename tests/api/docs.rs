//! /openapi.json covers every route with its bodies and the error shape; /docs serves Swagger UI
//! from the binary (no CDN: the page works offline).
use serde_json::Value;

use crate::helpers::spawn_app;

const ROUTES: [(&str, &str); 15] = [
    ("/predict", "post"),
    ("/predict/batch", "post"),
    ("/classes", "get"),
    ("/health", "get"),
    ("/system_status", "get"),
    ("/reload_model", "post"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
    ("/docs", "get"),
    ("/v2", "get"),
    ("/v2/health/live", "get"),
    ("/v2/health/ready", "get"),
    ("/v2/models/{name}", "get"),
    ("/v2/models/{name}/ready", "get"),
    ("/v2/models/{name}/infer", "post"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_its_request_bodies_and_the_error_shape() {
    let app = spawn_app().await;
    let doc: Value = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    for (path, method) in ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from {}", doc["paths"]);
    }
    let predict = &doc["paths"]["/predict"]["post"];
    let form = &predict["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert!(form.is_object() && predict["requestBody"]["content"]["application/json"].is_object(), "{predict}");
    let schemas = &doc["components"]["schemas"];
    let image = &schemas["PredictForm"]["properties"]["image"];
    assert_eq!((image["type"].as_str(), image["format"].as_str()), (Some("string"), Some("binary")), "a file picker in Swagger UI");
    assert!(schemas["ErrorBody"]["properties"]["error_type"].is_object(), "{schemas}");
    assert!(schemas["PredictResponse"]["properties"]["top_k"].is_object(), "{schemas}");
    assert!(predict["responses"]["415"].is_object(), "{predict}");
    let top_k = &predict["parameters"][0];
    assert_eq!((top_k["name"].as_str(), top_k["in"].as_str(), top_k["required"].as_bool()), (Some("top_k"), Some("query"), Some(false)), "{top_k}");
    assert!(doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"].is_object());
}

#[tokio::test]
async fn the_docs_page_and_its_assets_come_from_the_binary() {
    let app = spawn_app().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/docs/swagger-ui-bundle.js") && html.contains("/openapi.json") && !html.contains("://"), "{html}");
    for (file, content_type, at_least) in [("swagger-ui-bundle.js", "text/javascript", 500_000), ("swagger-ui.css", "text/css", 50_000)] {
        let response = app.get(&format!("/docs/{file}")).await;
        assert_eq!(response.status(), 200, "{file}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(content_type), "{file}");
        assert!(response.bytes().await.unwrap().len() > at_least, "{file}");
    }
    assert_eq!(app.get("/docs/../Cargo.toml").await.status(), 404);
}
