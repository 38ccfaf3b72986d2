use crate::helpers::{spawn_app, spawn_app_with, test_config};

async fn preflight(address: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{address}/predict"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_configured_origin_may_call_from_a_browser_and_others_may_not() {
    let mut config = test_config();
    config.cors_origins = vec!["http://app.example".into()];
    let app = spawn_app_with(config).await;
    let allowed = preflight(&app.address, "http://app.example").await;
    assert_eq!(allowed.headers().get("access-control-allow-origin").unwrap(), "http://app.example");
    let other = preflight(&app.address, "http://elsewhere.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_is_closed_by_default() {
    let app = spawn_app().await;
    let response = preflight(&app.address, "http://app.example").await;
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let health = reqwest::Client::new()
        .get(format!("{}/health", app.address))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("access-control-allow-origin").is_none());
}
