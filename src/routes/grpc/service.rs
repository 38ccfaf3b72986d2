//! The RPCs: each translates its message to what the REST route of the same meaning does.
use actix_web::web::{self, Bytes};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::door::Authority;
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::InferRequestedOutputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::*;
use super::status;
use crate::config::PredictLimits;
use crate::error::ApiError;
use crate::limits::Admission;
use crate::routes::admin::{self, AdminAccess, Caller};
use crate::routes::target::route_by;
use crate::routes::v2::binary::{bytes_elements, to_binary};
use crate::routes::v2::protocol::{self, Input, Item, Requested, MAX_ELEMENTS};
use crate::routes::v2::repository::{index_rows, stats_of};
use crate::routes::v2::{model_named, platform, ready_versions};
use crate::runtime::LoadedModel;
use crate::service::{sha256_hex, Call, Items, Predictor};
use crate::traffic::Route;
use crate::versions::ModelTable;

/// What the RPCs need: the same handles the REST routes get.
#[derive(Clone)]
pub struct Inference {
    pub predictor: web::Data<Predictor>,
    pub versions: web::Data<ModelTable>,
    pub limits: web::Data<PredictLimits>,
    pub access: web::Data<AdminAccess>,
}

type Answer<T> = Result<Response<T>, Status>;

impl Inference {
    /// The largest message: a batch's images as raw bytes, and room for the rest of the message.
    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_batch_upload_bytes + (1 << 20)
    }

    pub fn admission(&self) -> Admission {
        self.predictor.admission().clone()
    }

    /// The version that answers: the request's `model_version`, else an `x-model-version` pin,
    /// else the model's routing policy (its sticky header read from the call's metadata).
    fn routed(
        &self,
        name: &str,
        version: &str,
        metadata: &MetadataMap,
    ) -> Result<(std::sync::Arc<LoadedModel>, Call), ApiError> {
        let name = Some(name).filter(|n| !n.is_empty());
        let value =
            |key: &str| metadata.get(key.to_ascii_lowercase()).and_then(|v| v.to_str().ok()).map(str::to_string);
        let call = |route: Route, sticky: Option<String>| Call {
            request_id: value("x-request-id").unwrap_or_else(|| format!("{:032x}", fastrand::u128(..))),
            endpoint: "grpc:ModelInfer".into(),
            route,
            sticky_key_sha256: sticky.map(|key| sha256_hex(key.as_bytes())),
            item: None,
        };
        if !version.is_empty() {
            return Ok((self.predictor.resolve(name, Some(version))?, call(Route::Pinned, None)));
        }
        let (model, route, sticky) = route_by(&self.predictor, name, value)?;
        Ok((model, call(route, sticky)))
    }

    #[tracing::instrument(name = "grpc_infer", skip_all, fields(request_id, version))]
    async fn infer(
        &self,
        metadata: &MetadataMap,
        request: ModelInferRequest,
    ) -> Result<(ModelInferResponse, Route), ApiError> {
        let (model, call) = self.routed(&request.model_name, &request.model_version, metadata)?;
        let span = tracing::Span::current();
        span.record("request_id", call.request_id.as_str()).record("version", model.id.version.as_str());
        let limits = &self.limits;
        let outputs = requested_outputs(&request.outputs, limits)?;
        let id = request.id.clone();
        let uploads = protocol::uploads_of(inputs_of(request)?, limits).await?;

        // As REST's infer: every image on the version chosen above, a few at once; tonic drops
        // this future when the client goes away, so nothing else watches for it.
        let (service, items) = (self.predictor.clone().into_inner(), uploads.into_iter().map(Ok).collect());
        let answers = service.predict_many(&model, items, &call, Items::AllOrNothing, std::future::pending()).await?;
        let outcomes = answers
            .into_iter()
            .map(|answer| answer.map(|(_, outcome)| outcome))
            .collect::<Result<Vec<_>, ApiError>>()?;

        let rows = outcomes.len();
        let mut response = ModelInferResponse {
            model_name: model.id.name.clone(),
            model_version: model.id.version.clone(),
            id,
            ..Default::default()
        };
        for o in outputs {
            // The REST output, moved into raw bytes (BYTES length-prefixed, FP32 little-endian).
            let mut tensor = protocol::output(&o.name, o.classification, &outcomes, rows);
            let mut raw = Vec::new();
            to_binary(&mut tensor, &mut raw);
            response.outputs.push(InferOutputTensor {
                name: o.name,
                datatype: tensor.datatype.to_string(),
                shape: tensor.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            });
            response.raw_output_contents.push(Bytes::from(raw));
        }
        Ok((response, call.route))
    }

    /// Management reads (the repository index) ask what REST asks: the admin token, or loopback.
    fn admin<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        let metadata = request.metadata();
        let host = request.extensions().get::<Authority>().and_then(|a| a.0.as_deref());
        let bearer = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        // No Origin or Sec-Fetch-Site: a browser cannot speak gRPC (gRPC-Web is another protocol).
        let caller = Caller { bearer, peer: request.remote_addr().map(|p| p.ip()), host, ..Caller::default() };
        admin::check(self.access.token.as_ref(), &self.access.origins, &caller)
    }
}

/// The outputs asked for (all of them when none is named); classification counts as
/// `parameters.classification` (int64, as tritonclient sends it). Outputs always come back raw.
fn requested_outputs(
    outputs: &[InferRequestedOutputTensor],
    limits: &PredictLimits,
) -> Result<Vec<Requested>, ApiError> {
    if outputs.is_empty() {
        return Ok(protocol::all_outputs(limits.top_k, true));
    }
    outputs
        .iter()
        .map(|o| {
            let given = o.parameters.get("classification").and_then(|p| p.parameter_choice.clone());
            let count = given.as_ref().map(|choice| match choice {
                ParameterChoice::Int64Param(n) => (u64::try_from(*n).ok(), n.to_string()),
                ParameterChoice::Uint64Param(n) => (Some(*n), n.to_string()),
                ParameterChoice::StringParam(s) => (s.parse().ok(), format!("{s:?}")),
                other => (None, format!("{other:?}")),
            });
            let classification = count.as_ref().map(|(n, shown)| (*n, shown as &dyn std::fmt::Display));
            protocol::requested(&o.name, classification, true, limits.top_k, limits.max_top_k)
        })
        .collect()
}

/// The inputs' elements: from `raw_input_contents` (one entry per input, BYTES length-prefixed,
/// what tritonclient sends), or from each input's `contents.bytes_contents`.
fn inputs_of(request: ModelInferRequest) -> Result<Vec<Input>, ApiError> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(ApiError::Validation(format!(
            "raw_input_contents holds {} entries for {} inputs: one per input, in order",
            raw.len(),
            request.inputs.len()
        )));
    }
    request
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let elements: Vec<Item> = match (raw.get(i), input.contents) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::Validation(format!(
                        "input {:?}: both contents and raw_input_contents given; send one",
                        input.name
                    )))
                }
                (Some(data), None) => {
                    bytes_elements(&input.name, data, MAX_ELEMENTS)?.into_iter().map(Item::Raw).collect()
                }
                (None, Some(contents)) => contents.bytes_contents.into_iter().map(Item::Raw).collect(),
                (None, None) => {
                    return Err(ApiError::Validation(format!(
                        "input {:?}: no contents and no raw_input_contents",
                        input.name
                    )))
                }
            };
            Ok(Input { name: input.name, datatype: input.datatype, shape: input.shape, elements })
        })
        .collect()
}

fn tensor(name: &str, datatype: &str, shape: Vec<i64>) -> model_metadata_response::TensorMetadata {
    model_metadata_response::TensorMetadata { name: name.into(), datatype: datatype.into(), shape }
}

fn duration(t: crate::runtime::Totals) -> Option<StatisticDuration> {
    Some(StatisticDuration { count: t.count, ns: t.ns })
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Answer<ServerLiveResponse> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Answer<ServerReadyResponse> {
        Ok(Response::new(ServerReadyResponse { ready: self.predictor.worker().is_alive() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Answer<ModelReadyResponse> {
        let r = request.into_inner();
        let version = Some(r.version.as_str()).filter(|v| !v.is_empty());
        model_named(&self.versions, &r.name, version).map_err(status)?;
        Ok(Response::new(ModelReadyResponse { ready: self.predictor.worker().is_alive() }))
    }

    async fn server_metadata(&self, _: Request<ServerMetadataRequest>) -> Answer<ServerMetadataResponse> {
        Ok(Response::new(ServerMetadataResponse {
            name: "food-api".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: ["classification", "model_repository", "statistics"].map(String::from).to_vec(),
        }))
    }

    async fn model_metadata(&self, request: Request<ModelMetadataRequest>) -> Answer<ModelMetadataResponse> {
        let r = request.into_inner();
        let version = Some(r.version.as_str()).filter(|v| !v.is_empty());
        let model = model_named(&self.versions, &r.name, version).map_err(status)?;
        // gRPC's tensor metadata has no parameters: the image is raw bytes (REST's metadata says so).
        Ok(Response::new(ModelMetadataResponse {
            name: model.id.name.clone(),
            versions: ready_versions(&self.versions, &r.name),
            platform: platform(&model).into(),
            inputs: vec![tensor("image", "BYTES", vec![-1]), tensor("text", "BYTES", vec![-1])],
            outputs: vec![
                tensor("label", "BYTES", vec![-1]),
                tensor("probability", "FP32", vec![-1]),
                tensor("top_k", "BYTES", vec![-1, self.limits.top_k as i64]),
            ],
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Answer<ModelInferResponse> {
        // The decoded message's memory, held from the budget until the answer is built.
        let mut memory = self.predictor.admission().reservation();
        memory.add(request.get_ref().encoded_len() as u64).map_err(|e| status(e.into()))?;
        let (metadata, _, message) = request.into_parts();
        let (answer, route) = self.infer(&metadata, message).await.map_err(status)?;
        let version = answer.model_version.clone();
        let mut response = Response::new(answer);
        // As REST's X-Model-Version and X-Route headers.
        if let Ok(v) = version.parse() {
            response.metadata_mut().insert("x-model-version", v);
        }
        response.metadata_mut().insert("x-route", tonic::metadata::MetadataValue::from_static(route.as_str()));
        Ok(response)
    }

    async fn model_statistics(&self, request: Request<ModelStatisticsRequest>) -> Answer<ModelStatisticsResponse> {
        // Every version's counts: the same rule as REST's statistics.
        self.admin(&request).map_err(status)?;
        let r = request.into_inner();
        let name = Some(r.name.as_str()).filter(|n| !n.is_empty());
        let version = match (name, Some(r.version.as_str()).filter(|v| !v.is_empty())) {
            (Some(name), Some(target)) => {
                Some(model_named(&self.versions, name, Some(target)).map_err(status)?.id.version.clone())
            }
            (Some(name), None) => {
                self.versions.snapshot().model(name).map_err(|e| status(e.into()))?;
                None
            }
            (None, _) => None,
        };
        let model_stats = stats_of(&self.versions, name, version.as_deref())
            .into_iter()
            .map(|row| {
                let t = row.totals;
                ModelStatistics {
                    name: row.name,
                    version: row.version,
                    last_inference: row.last_inference,
                    inference_count: t.success.count,
                    execution_count: t.compute_infer.count,
                    inference_stats: Some(InferStatistics {
                        success: duration(t.success),
                        fail: duration(t.fail),
                        queue: duration(t.queue),
                        compute_input: duration(t.compute_input),
                        compute_infer: duration(t.compute_infer),
                        compute_output: duration(t.compute_output),
                        cache_hit: duration(t.cache_hit),
                        cache_miss: duration(t.cache_miss),
                    }),
                }
            })
            .collect();
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(&self, request: Request<RepositoryIndexRequest>) -> Answer<RepositoryIndexResponse> {
        self.admin(&request).map_err(status)?;
        let models = index_rows(&self.versions, request.get_ref().ready)
            .into_iter()
            .map(|r| repository_index_response::ModelIndex {
                name: r.name,
                version: r.version,
                state: r.state.into(),
                reason: r.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }
}
