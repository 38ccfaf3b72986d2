//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, what
//! `tritonclient.grpc` and KServe's gRPC clients speak), on `--grpc-port`. A translation like the
//! REST routes: the same predictor (queue, caches, routing, history), limits, admission and
//! metrics; the same checks of inputs and outputs (`v2::protocol`); errors as the gRPC codes that
//! match the REST statuses.
mod door;
mod service;

use actix_web::ResponseError;
use tonic::{Code, Status};

use crate::error::ApiError;
pub use service::Inference;

/// The protocol's messages, and the server and client code generated from proto/inference.proto.
pub mod proto {
    tonic::include_proto!("inference");
}

impl proto::ModelInferRequest {
    /// An infer request for `model` with one image as the `image` BYTES tensor's raw data (its
    /// 4-byte little-endian length, then its bytes), as tritonclient.grpc sends it: for Rust
    /// callers, the benchmark and the tests.
    pub fn with_image(model: &str, image: &[u8]) -> Self {
        let mut raw = (image.len() as u32).to_le_bytes().to_vec();
        raw.extend_from_slice(image);
        let tensor = proto::model_infer_request::InferInputTensor {
            name: "image".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            ..Default::default()
        };
        Self {
            model_name: model.into(),
            inputs: vec![tensor],
            raw_input_contents: vec![raw.into()],
            ..Default::default()
        }
    }
}

/// The gRPC code for what REST answers with a status, and the same public message.
pub fn status(error: ApiError) -> Status {
    let code = match error.status_code().as_u16() {
        400 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 | 412 => Code::FailedPrecondition,
        413 => Code::ResourceExhausted,
        // Overloaded: gRPC clients' retry policies retry UNAVAILABLE.
        429 | 503 => Code::Unavailable,
        499 => Code::Cancelled,
        _ => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = ?error, "gRPC request failed");
    }
    Status::new(code, error.to_string())
}

/// Serves the protocol on `listener` until `shutdown` completes; then in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    inference: Inference,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let max_message = inference.max_message_bytes();
    let admission = inference.admission();
    let service = proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(inference)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    // TCP_NODELAY: without it a small answer waits for the client's delayed ACK (a 40 ms p99 on
    // cached answers in bench/protocols.py).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(door::DoorLayer(admission))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
