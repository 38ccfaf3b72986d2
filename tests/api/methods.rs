//! A known route asked with a method it does not have: 405 with `Allow` naming the methods it has
//! (RFC 9110, 15.5.6), in the JSON error shape; an unknown path stays a 404.
use reqwest::Method;

use crate::helpers::{error_of, spawn_app};

#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_405_with_allow_and_an_unknown_path_404() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (Method::GET, "/predict", "POST"),
        (Method::DELETE, "/predict/batch", "POST"),
        (Method::POST, "/health", "GET"),
        (Method::PUT, "/classes", "GET"),
        (Method::POST, "/models/food/aliases/stable", "PUT, DELETE"),
        (Method::PATCH, "/models/food/routing", "GET, PUT, DELETE"),
        (Method::GET, "/v2/models/food/infer", "POST"),
        (Method::POST, "/v2/health/ready", "GET"),
        (Method::DELETE, "/v2/models/food/versions/stable", "GET"),
    ] {
        let response = app.client.request(method.clone(), format!("{}{path}", app.address)).send().await.unwrap();
        let allowed = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let (status, kind, error) = error_of(response).await;
        assert_eq!(
            (status, kind.as_str(), allowed.as_deref()),
            (405, "method_not_allowed", Some(allow)),
            "{method} {path}: {error}"
        );
        assert!(error.contains(method.as_str()), "{error}");
    }
    let (status, kind, _) =
        error_of(app.client.get(format!("{}/no/such/route", app.address)).send().await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (404, "not_found"));
    // The right methods still reach their handlers.
    assert_eq!(app.client.get(format!("{}/models/food/routing", app.address)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_path_segment_that_does_not_parse_is_a_json_404() {
    let app = spawn_app().await;
    let response = app.client.get(format!("{}/models/food/compare/not-a-number", app.address)).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let (status, kind, error) = error_of(response).await;
    assert_eq!((status, kind.as_str()), (404, "not_found"), "{error}");
}
