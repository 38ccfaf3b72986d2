use food_api::admin::Secret;

use crate::helpers::{error_of, spawn_app_with, test_config};

#[tokio::test]
async fn reload_needs_the_admin_token_when_one_is_configured() {
    let mut config = test_config();
    config.admin_token = Some(Secret::new("correct horse"));
    let app = spawn_app_with(config).await;
    let url = format!("{}/reload_model", app.address);

    let missing = app.client.post(&url).send().await.unwrap();
    assert_eq!(missing.headers().get("www-authenticate").unwrap(), "Bearer");
    let (status, kind, _) = error_of(missing).await;
    assert_eq!((status, kind.as_str()), (401, "unauthorized"));

    let wrong = app.client.post(&url).bearer_auth("correct horse battery").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let right = app.client.post(&url).bearer_auth("correct horse").send().await.unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(app.get_json("/health").await["model"]["generation"], 2);
}

#[tokio::test]
async fn the_admin_token_can_come_from_a_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "from-a-file\n").unwrap();
    let mut config = test_config();
    config.admin_token_file = Some(file.path().to_path_buf());
    let app = spawn_app_with(config).await;
    let url = format!("{}/reload_model", app.address);
    assert_eq!(app.client.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(app.client.post(&url).bearer_auth("from-a-file").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn predictions_need_no_token() {
    let mut config = test_config();
    config.admin_token = Some(Secret::new("t"));
    let app = spawn_app_with(config).await;
    app.predict_ok(&crate::helpers::sample("orange.jpg"), None).await;
}
