//! The gRPC side of bench/protocols.py: what wrk with bench/predict.lua does over HTTP, for
//! `ModelInfer`. `concurrency` tasks, each on its own connection (as wrk's), send the photos in
//! turn for `seconds`; uncached, every request's image bytes are new (a tail after the JPEG's end,
//! which decoders ignore). Prints one JSON line in wrk's shape.
//!
//!     cargo run --release --example grpc_bench -- 127.0.0.1:9000 16 10 uncached sample/*.jpg
use std::time::{Duration, Instant};

use food_api::routes::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use food_api::routes::grpc::proto::ModelInferRequest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, concurrency, seconds, mode, files @ ..] = args.as_slice() else {
        return Err("usage: grpc_bench HOST:PORT CONCURRENCY SECONDS uncached|cached PHOTO...".into());
    };
    let (concurrency, seconds): (usize, f64) = (concurrency.parse()?, seconds.parse()?);
    let uncached = mode == "uncached";
    let photos: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);

    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{address}"))
            .await?
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let photos = photos.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), std::collections::BTreeMap::<String, u64>::new());
            let mut counter = 0usize;
            while Instant::now() < until {
                counter += 1;
                let mut image = photos[counter % photos.len()].clone();
                if uncached {
                    image.extend_from_slice(format!("bench {run} {task} {counter}").as_bytes());
                }
                let request = ModelInferRequest::with_image("food", &image);
                let sent = Instant::now();
                match client.model_infer(request).await {
                    Ok(_) => latencies.push(sent.elapsed().as_secs_f64() * 1e3),
                    Err(status) => *errors.entry(format!("{:?}", status.code())).or_default() += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), std::collections::BTreeMap::<String, u64>::new());
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        for (code, n) in e {
            *errors.entry(code).or_default() += n;
        }
    }
    let duration = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let failed: u64 = errors.values().sum();
    println!(
        "{}",
        serde_json::json!({
            "requests": latencies.len() as u64 + failed,
            "duration_s": duration,
            "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "max_ms": latencies.last().copied().unwrap_or(0.0),
            "cache_hits": 0,
            "statuses": {"OK": latencies.len()},
            "grpc_errors": errors,
            "socket_errors": 0,
        })
    );
    Ok(())
}
