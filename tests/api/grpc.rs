//! The gRPC port shares the HTTP side's parts: one cache (an answer computed over HTTP is a hit
//! over gRPC), one door (a full server refuses gRPC infers with UNAVAILABLE at once, while health
//! still answers), one memory budget, one set of metrics. tritonclient.grpc's own run is in
//! clients.rs.
use food_api::routes::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use food_api::routes::grpc::proto::{ModelInferRequest, ModelStatisticsRequest, ServerReadyRequest};
use tonic::transport::Channel;
use tonic::Code;

use crate::helpers::{sample, spawn_app_with, test_config, TestApp};

async fn spawn_with_grpc(
    change: impl FnOnce(&mut food_api::config::Config),
) -> (TestApp, GrpcInferenceServiceClient<Channel>) {
    let mut config = test_config();
    config.grpc_port = Some(0);
    change(&mut config);
    let app = spawn_app_with(config).await;
    let url = format!("http://127.0.0.1:{}", app.grpc_port.unwrap());
    (app, GrpcInferenceServiceClient::connect(url).await.unwrap())
}

fn infer_request(image: &[u8]) -> ModelInferRequest {
    ModelInferRequest::with_image("food", image)
}

#[tokio::test]
async fn an_answer_computed_over_http_is_a_cache_hit_over_grpc_and_counted_in_the_metrics() {
    let (app, mut client) = spawn_with_grpc(|_| ()).await;
    let photo = sample("fruits.jpg");
    assert_eq!(app.post_predict(&photo, None).await.status(), 200);
    let answer = client.model_infer(infer_request(&photo)).await.unwrap();
    let version = answer.metadata().get("x-model-version").unwrap().to_str().unwrap().to_string();
    assert!(answer.metadata().get("x-route").is_some(), "why that version answered, as REST's X-Route");
    let answer = answer.into_inner();
    assert_eq!(answer.model_version, version);
    assert_eq!(answer.outputs[0].name, "label");
    assert_eq!(&answer.raw_output_contents[0][4..], b"lemon");

    let stats =
        client.model_statistics(ModelStatisticsRequest { name: "food".into(), ..Default::default() }).await.unwrap();
    let totals = stats.into_inner().model_stats[0].inference_stats.unwrap();
    assert_eq!((totals.cache_miss.unwrap().count, totals.cache_hit.unwrap().count), (1, 1), "HTTP's miss, gRPC's hit");
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("food_api_cache_hits_total{cache=\"prediction\"}"))
        .unwrap_or_default()
        .to_string();
    assert!(hits.ends_with(" 1"), "the gRPC hit is in /metrics: {hits}");
}

#[tokio::test]
async fn a_full_server_refuses_grpc_infers_at_the_door_and_still_says_it_is_ready() {
    let (_app, client) = spawn_with_grpc(|c| c.max_concurrent_requests = 1).await;
    let photo = sample("fruits.jpg");
    let calls = (0..16).map(|_| {
        let (mut client, request) = (client.clone(), infer_request(&photo));
        async move { client.model_infer(request).await.map(|_| ()).map_err(|s| s.code()) }
    });
    let (answers, ready) = tokio::join!(futures_util::future::join_all(calls), {
        let mut client = client.clone();
        async move { client.server_ready(ServerReadyRequest {}).await }
    });
    let refused = answers.iter().filter(|a| **a == Err(Code::Unavailable)).count();
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    assert!(refused >= 1 && answered >= 1 && refused + answered == 16, "{answers:?}");
    assert!(ready.unwrap().into_inner().ready, "health calls take no place at the door");
}

#[tokio::test]
async fn a_message_larger_than_the_memory_budget_is_refused_as_resource_exhausted() {
    let (_app, mut client) = spawn_with_grpc(|c| c.memory_budget_mb = 1).await;
    let mut big = sample("fruits.jpg");
    big.resize(2 << 20, b' ');
    let status = client.model_infer(infer_request(&big)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("--memory-budget-mb"), "{}", status.message());
}

#[tokio::test]
async fn statistics_over_grpc_need_the_admin_token_as_over_rest() {
    let (_app, mut client) =
        spawn_with_grpc(|c| c.admin_token = Some(food_api::secret::Secret::new("stats token").unwrap())).await;
    let request = || ModelStatisticsRequest { name: "food".into(), ..Default::default() };
    let refused = client.model_statistics(request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut with_token = tonic::Request::new(request());
    with_token.metadata_mut().insert("authorization", "Bearer stats token".parse().unwrap());
    assert!(!client.model_statistics(with_token).await.unwrap().into_inner().model_stats.is_empty());
}
