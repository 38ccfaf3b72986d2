//! Builds the application: model first (loaded and warmed up), then the listener and routes.
use std::net::TcpListener;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::{from_fn, Condition, DefaultHeaders};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_actix_web::TracingLogger;

use crate::cache::SharedCache;
use crate::config::Config;
use crate::error::{ApiError, Statuses};
use crate::history::{DeploymentRow, History};
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::routes::admin::AdminAccess;
use crate::routes::{self, Endpoint};
use crate::runtime::{device_name, enable_onednn_fusion, resolve_device, Device, InferenceWorker, ModelPaths};
use crate::service::{Predictor, Recorder};
use crate::telemetry;
use crate::versions::{AuditSink, Deployment, ModelTable, TableSettings};

pub struct Application {
    port: u16,
    server: Server,
    grpc: Option<Grpc>,
    signals: ShutdownSignals,
    history: History,
}

/// The gRPC server, when --grpc-port is set: its port, its task, and the switch that stops it.
struct Grpc {
    port: u16,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// SIGTERM and SIGINT, listened to from before the port opens: a signal that arrives once the
/// server said "ready" always gets the graceful stop.
struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let admin_token = config.admin_token()?;
        let device = resolve_device(config.device)?;
        let mut layout = config.thread_layout();
        // Binding is about libtorch's CPU threads; a GPU's passes keep the scheduler's placement.
        layout.bind &= device == Device::Cpu;
        // oneDNN Graph compiles CPU kernels only; on a GPU, libtorch's default stays.
        if !config.no_onednn_fusion && device == Device::Cpu {
            enable_onednn_fusion();
        }
        // First: the deployment log's entries from the table's restore go to the history too.
        let history = History::start(config.history_settings()).await.context("cannot start the inference history")?;
        let table = ModelTable::start(TableSettings {
            repository: config.model_repository.clone(),
            drop_in: ModelPaths { model_dir: config.model_dir.clone(), class_mapping: config.class_mapping.clone() },
            data_dir: config.data_dir.clone(),
            max_loaded_versions: config.max_loaded_versions as usize,
            // An empty value (an image built without STABLE_VERSION) chooses nothing.
            stable_version: config.stable_version.clone().filter(|v| !v.is_empty()),
            device,
            layout,
            audit_sink: history.is_on().then(|| deployments_to(history.clone())),
            validator: {
                let limits = config.validation_limits()?;
                Some(std::sync::Arc::new(move |folder: &std::path::Path| {
                    crate::validate::in_child(folder, &limits).map(|v| v.fingerprint)
                }))
            },
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the models: {e}. Run scripts/setup.sh to produce the model files, or point --model-dir/--class-mapping/--model-repository at them"))?;
        let worker = InferenceWorker::spawn(config.queue_capacity, config.shadow_queue_capacity as usize, layout)
            .context("cannot start the inference threads")?;

        let signals = ShutdownSignals::listen().context("cannot listen for SIGTERM/SIGINT")?;
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let workers = config.workers.max(1);
        // actix-web counts connections per worker.
        let connections_per_worker = (config.max_connections as usize).div_ceil(workers);
        let (grace, origins) = (config.shutdown_grace_seconds, config.cors_origins.clone());
        let head_timeout = std::time::Duration::from_secs(config.request_timeout_seconds);
        let admission = Admission::new(config.max_concurrent_requests as usize, config.memory_budget_mb << 20);
        // What handlers need, each registered on its own (zero2prod's way): the prediction service,
        // the settings, the metrics, and who may manage the server.
        let statuses = Statuses::new(config.overload_status);
        let recorder = Recorder { history: history.clone(), status_of: Box::new(move |e| statuses.of_prediction(e)) };
        let settings = config.predictor_settings();
        let shared = config.shared_cache_settings()?.map(SharedCache::start).transpose()?;
        let metrics = web::Data::new(Metrics::new().context("cannot register the metrics")?);
        // The versions' control plane, registered on its own: management routes use it directly.
        let versions = web::Data::new(table);
        let predictor = Predictor::new(
            versions.clone().into_inner(),
            worker,
            admission,
            settings,
            recorder,
            shared,
            metrics.clone().into_inner(),
        );
        let predictor = web::Data::new(predictor);
        tokio::spawn(predictor.clone().into_inner().run_mirrors());
        let access = web::Data::new(AdminAccess { token: admin_token, origins: config.cors_origins.clone() });
        let jobs = web::Data::new(crate::service::compare::CompareJobs::default());
        let predict_limits = web::Data::new(config.predict_limits());
        // What the other routes read of the settings, each its own small part (no route gets the
        // whole configuration).
        let status_settings = web::Data::new(routes::StatusSettings::of(&config));
        let bundle_settings = web::Data::new(routes::BundleSettings::of(&config)?);
        let compare_settings = web::Data::new(routes::CompareSettings {
            sets: config.compare_sets.clone(),
            limits: *predict_limits.get_ref(),
        });
        let statuses = web::Data::new(statuses);
        // Behind a load balancer, which replica answered (only when named: a default name would
        // show the host name and process id to every client).
        let replica = config.replica_name.clone();
        let grpc = match config.grpc_port {
            Some(grpc_port) => {
                let inference = routes::grpc::Inference {
                    predictor: predictor.clone(),
                    versions: versions.clone(),
                    limits: predict_limits.clone(),
                    access: access.clone(),
                };
                Some(Grpc::start(&config.host, grpc_port, inference).await?)
            }
            None => None,
        };
        let server = HttpServer::new(move || {
            let named = DefaultHeaders::new().add(("X-Replica", replica.clone().unwrap_or_default()));
            App::new()
                .wrap(from_fn(routes::at_the_door))
                .wrap(statuses.get_ref().middleware())
                .wrap(from_fn(telemetry::observe))
                .wrap(cors(&origins))
                .wrap(Condition::new(replica.is_some(), named))
                .wrap(TracingLogger::default())
                .app_data(predictor.clone())
                .app_data(versions.clone())
                .app_data(predict_limits.clone())
                .app_data(metrics.clone())
                .app_data(access.clone())
                .app_data(jobs.clone())
                .app_data(statuses.clone())
                .app_data(status_settings.clone())
                .app_data(bundle_settings.clone())
                .app_data(compare_settings.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::Validation(e.to_string()).into()))
                // A path segment that does not parse (a job id that is not a number) names nothing
                // here: a 404, in the JSON error shape like every other (actix answers text/plain).
                .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::NotFound(e.to_string()).into()))
                .service(Endpoint::at("/").get(routes::page))
                .service(Endpoint::at("/app.js").get(routes::script))
                .service(Endpoint::at("/app.css").get(routes::style))
                .service(Endpoint::at("/predict").post(routes::predict))
                .service(Endpoint::at("/predict/batch").post(routes::predict_batch))
                .service(Endpoint::at("/classes").get(routes::classes))
                .service(Endpoint::at("/health").get(routes::health))
                .service(Endpoint::at("/system_status").get(routes::system_status))
                .service(Endpoint::at("/reload_model").post(routes::reload_model))
                .service(Endpoint::at("/metrics").get(routes::metrics))
                .service(Endpoint::at("/models").get(routes::list_models))
                .service(Endpoint::at("/models/{name}/versions/{version}").get(routes::version_details))
                .service(Endpoint::at("/models/{name}/versions/{version}/stats").get(routes::version_stats))
                .service(Endpoint::at("/models/{name}/versions").post(routes::upload))
                .service(Endpoint::at("/models/{name}/versions/{version}/download").get(routes::download))
                .service(Endpoint::at("/models/{name}/versions/{version}/load").post(routes::load))
                .service(Endpoint::at("/models/{name}/versions/{version}/unload").post(routes::unload))
                .service(Endpoint::at("/models/{name}/versions/{version}/predict").post(routes::predict))
                .service(Endpoint::at("/models/{name}/versions/{version}/predict/batch").post(routes::predict_batch))
                .service(
                    Endpoint::at("/models/{name}/aliases/{alias}").put(routes::set_alias).delete(routes::remove_alias),
                )
                .service(Endpoint::at("/models/{name}/rollback").post(routes::rollback))
                .service(Endpoint::at("/models/{name}/compare").post(routes::compare))
                .service(Endpoint::at("/models/{name}/compare/{job}").get(routes::compare_result))
                .service(
                    Endpoint::at("/models/{name}/routing")
                        .get(routes::get_routing)
                        .put(routes::put_routing)
                        .delete(routes::delete_routing),
                )
                .service(Endpoint::at("/deployments").get(routes::deployments))
                .service(Endpoint::at("/inference/history").get(routes::inference_history))
                .service(Endpoint::at("/stats").get(routes::stats))
                .service(Endpoint::at("/openapi.json").get(routes::openapi_json))
                .service(Endpoint::at("/docs").get(routes::docs))
                .service(Endpoint::at("/docs/{file:.*}").get(routes::docs_page))
                .service(v2_scope())
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .max_connections(connections_per_worker)
        .on_connect(crate::peer::on_connect)
        .disable_signals()
        .client_request_timeout(head_timeout)
        .shutdown_timeout(grace)
        .listen(listener)?
        .run();
        tracing::info!(
            port,
            grpc_port = grpc.as_ref().map(|g| g.port),
            workers,
            inference_threads = layout.inference_threads,
            torch_threads = layout.torch.shared,
            torch_threads_alone = layout.torch.alone,
            device = device_name(device),
            "ready"
        );
        Ok(Self { port, server, grpc, signals, history })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The gRPC port, when --grpc-port is set.
    pub fn grpc_port(&self) -> Option<u16> {
        self.grpc.as_ref().map(|g| g.port)
    }

    /// Serves until the server fails or a SIGTERM/SIGINT arrives; then it stops accepting, lets
    /// in-flight requests finish within the grace period, and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (mut server, mut signals) = (self.server, self.signals);
        let handle = server.handle();
        let result = tokio::select! {
            result = &mut server => result,
            name = signals.recv() => {
                tracing::info!(signal = name, "stopping: no new connections, finishing in-flight requests");
                // The stop is carried out by the server future itself: poll both, and gRPC's.
                let grpc_stopped = async {
                    if let Some(grpc) = self.grpc {
                        let _ = grpc.stop.send(());
                        match grpc.task.await {
                            Ok(Err(e)) => tracing::error!(error = %e, "the gRPC server failed"),
                            Err(e) => tracing::error!(error = %e, "the gRPC server's task failed"),
                            Ok(Ok(())) => {}
                        }
                    }
                };
                let ((), result, ()) = tokio::join!(handle.stop(true), server, grpc_stopped);
                result
            }
        };
        // The last requests' rows, if the store takes them in time.
        if !self.history.flush(HISTORY_FLUSH).await {
            tracing::warn!("stopped before the history's last rows were written");
        }
        result?;
        tracing::info!("stopped");
        Ok(())
    }
}

impl Grpc {
    async fn start(host: &str, port: u16, inference: routes::grpc::Inference) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("cannot listen for gRPC on {host}:{port}"))?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(routes::grpc::serve(listener, inference, async {
            let _ = stopped.await;
        }));
        Ok(Self { port, task, stop })
    }
}

/// How long a stopping server waits for the history's queue to be written.
const HISTORY_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// The deployment log's entries, copied into the history store (where every replica's meet).
fn deployments_to(history: History) -> AuditSink {
    Box::new(move |d: &Deployment| {
        history.record_deployment(DeploymentRow {
            at_ms: d.at_ms as i64,
            replica: String::new(),
            by_whom: d.by.clone(),
            action: d.action.clone(),
            model: d.model.clone(),
            version: d.version.clone(),
            alias: d.alias.clone(),
            from_version: d.from.clone(),
            reason: d.reason.clone(),
            ok: d.ok,
            error: d.error.clone(),
            duration_ms: d.duration_ms,
        })
    })
}

/// The Open Inference Protocol (KServe v2) routes.
fn v2_scope() -> actix_web::Scope {
    web::scope("/v2")
        .service(Endpoint::at("").get(routes::v2::server_metadata))
        .service(Endpoint::at("/health/live").get(routes::v2::live))
        .service(Endpoint::at("/health/ready").get(routes::v2::ready))
        .service(Endpoint::at("/repository/index").post(routes::v2::repository::index))
        .service(Endpoint::at("/repository/models/{name}/load").post(routes::v2::repository::load))
        .service(Endpoint::at("/repository/models/{name}/unload").post(routes::v2::repository::unload))
        .service(Endpoint::at("/models/stats").get(routes::v2::repository::all_stats))
        .service(Endpoint::at("/models/{name}/stats").get(routes::v2::repository::model_stats))
        .service(Endpoint::at("/models/{name}/versions/{version}/stats").get(routes::v2::repository::version_stats))
        .service(Endpoint::at("/models/{name}").get(routes::v2::model_metadata))
        .service(Endpoint::at("/models/{name}/ready").get(routes::v2::model_ready))
        .service(Endpoint::at("/models/{name}/infer").post(routes::v2::infer))
        .service(Endpoint::at("/models/{name}/versions/{version}").get(routes::v2::version_metadata))
        .service(Endpoint::at("/models/{name}/versions/{version}/ready").get(routes::v2::version_ready))
        .service(Endpoint::at("/models/{name}/versions/{version}/infer").post(routes::v2::infer))
}

/// Closed unless origins are configured: a browser page elsewhere cannot call the API.
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST", "PUT", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::HeaderName::from_static("x-model-version"),
            header::HeaderName::from_static("x-user-id"),
        ])
        // A page on another origin reads which version answered, and why.
        .expose_headers([
            header::HeaderName::from_static("x-model-version"),
            header::HeaderName::from_static("x-route"),
            header::ETAG,
        ])
        .max_age(3600)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        "no such route; see GET / (a page to try it), GET /health, GET /classes, GET /system_status, GET /metrics, POST /predict, POST /predict/batch, POST /reload_model, /v2 (Open Inference Protocol) and GET /docs/".into(),
    ))
}
