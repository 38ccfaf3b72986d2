use crate::helpers::spawn_app;

#[tokio::test]
async fn health_returns_200_with_the_model_generation() {
    let app = spawn_app().await;
    let body = app.get_json("/health").await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["model"]["generation"], 1);
    assert_eq!(body["model"]["name"], "food");
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let response = app.get("/nope").await;
    let (status, kind, _) = crate::helpers::error_of(response).await;
    assert_eq!((status, kind.as_str()), (404, "not_found"));
}
