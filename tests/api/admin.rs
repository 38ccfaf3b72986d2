use food_api::secret::Secret;

use crate::helpers::{error_of, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn reload_needs_the_admin_token_when_one_is_configured() {
    let mut config = test_config();
    config.admin_token = Some(Secret::new("correct horse").unwrap());
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
    config.admin_token = Some(Secret::new("t").unwrap());
    let app = spawn_app_with(config).await;
    app.predict_ok(&crate::helpers::sample("orange.jpg"), None).await;
}

#[tokio::test]
async fn a_cross_site_browser_post_to_a_management_route_is_refused_and_a_same_origin_one_works() {
    let app = spawn_app().await; // no token: loopback callers are trusted
    let url = format!("{}/reload_model", app.address);
    // What a form on another site makes a browser send (no CORS preflight for a form post).
    let cross_site = app
        .client
        .post(&url)
        .header("Origin", "https://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    let (status, kind, error) = error_of(cross_site).await;
    assert_eq!((status, kind.as_str()), (403, "forbidden"), "{error}");
    // DNS rebinding: the attacker's name resolved to 127.0.0.1, and the browser says that name.
    let port = app.address.rsplit(':').next().unwrap();
    let rebound = app.client.post(&url).header("Host", format!("evil.example:{port}")).send().await.unwrap();
    assert_eq!(rebound.status(), 403);
    assert_eq!(app.get_json("/health").await["model"]["generation"], 1, "nothing was reloaded");

    // The server's own page (the docs' Try it out) and a script on this machine.
    let own_page = app
        .client
        .post(&url)
        .header("Origin", &app.address)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(own_page.status(), 200);
    assert_eq!(app.client.post(&url).send().await.unwrap().status(), 200);
    assert_eq!(app.get_json("/health").await["model"]["generation"], 3);
}

#[tokio::test]
async fn the_token_does_not_let_a_cross_site_browser_request_through() {
    let mut config = test_config();
    config.admin_token = Some(Secret::new("correct horse").unwrap());
    let app = spawn_app_with(config).await;
    let url = format!("{}/reload_model", app.address);
    let cross_site = app
        .client
        .post(&url)
        .bearer_auth("correct horse")
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    // With a token, the Host may be any name (behind a proxy or load balancer).
    let proxied =
        app.client.post(&url).bearer_auth("correct horse").header("Host", "food.example").send().await.unwrap();
    assert_eq!(proxied.status(), 200);
}

#[tokio::test]
async fn concurrent_reloads_coalesce_into_at_most_two_loads() {
    let app = spawn_app().await;
    let answers = futures_util::future::join_all((0..6).map(|_| app.post_reload())).await;
    let mut generations = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        generations.push(body["model"]["generation"].as_u64().unwrap());
    }
    let status = app.get_json("/system_status").await;
    let loads = status["model"]["reloads"]["succeeded"].as_u64().unwrap();
    assert!((1..=2).contains(&loads), "{loads} loads for 6 requests: {generations:?}");
    assert!(generations.iter().all(|&g| g == 2 || g == 1 + loads), "{generations:?}");
}
