//! One error type for every route: each variant picks its status code and a machine-readable kind.
//! The one status an operator chooses (503 or 429 for a full server) is chosen here too, by
//! `Statuses`: admission and the worker only say "full".
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::config::OverloadStatus;
use crate::domain::InputError;
use crate::history::HistoryError;
use crate::limits::AdmissionError;
use crate::preprocess::ImageError;
use crate::runtime::{InferError, LoadError};
use crate::service::PredictError;
use crate::versions::{ManageError, ResolveError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidImage(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request bodies are accepted without a content coding only (Content-Encoding: {0})")]
    UnsupportedEncoding(String),
    #[error("{0}")]
    ImageTooLarge(String),
    #[error("the request body did not arrive within {0} s")]
    RequestTimeout(u64),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("this endpoint needs `Authorization: Bearer <admin token>`")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not a method of this route; it has {allow}")]
    MethodNotAllowed { method: String, allow: String },
    #[error("the model queue is full, retry shortly")]
    Overloaded,
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("no answer within the deadline of {0} ms; the request was dropped, retry or raise --deadline-ms")]
    DeadlineExceeded(u64),
    #[error("the client closed the connection before the answer was ready")]
    ClientClosed,
    #[error("no model is serving")]
    ModelUnavailable,
    /// The model gave an output its manifest does not describe (src/runtime/loaded.rs `run`).
    #[error("{0}")]
    ModelOutput(String),
    #[error("reload failed, the previous model keeps serving: {0}")]
    Reload(#[from] LoadError),
    /// A version cannot be loaded: its files are not a valid model.
    #[error("{0}")]
    InvalidModel(LoadError),
    /// The model table's state forbids it (an alias points at the version, not ready, ...).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` names a state that is no longer current.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    HistoryUnavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Unsupported(m) => Self::UnsupportedMediaType(m),
            ImageError::Invalid(m) => Self::InvalidImage(m),
            ImageError::TooLarge(m) => Self::ImageTooLarge(m),
            ImageError::Busy(e) => Self::Admission(e),
            e @ ImageError::Internal { .. } => Self::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Invalid(m) => Self::Validation(m),
            InputError::Image(e) => e.into(),
            InputError::UnsupportedMediaType(m) => Self::UnsupportedMediaType(m),
            InputError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            InputError::Timeout(s) => Self::RequestTimeout(s),
            InputError::Admission(e) => Self::Admission(e),
            e @ InputError::Internal { .. } => Self::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<PredictError> for ApiError {
    fn from(e: PredictError) -> Self {
        match e {
            PredictError::Image(e) => e.into(),
            PredictError::Infer(e) => e.into(),
            PredictError::Text(_) => Self::Validation(e.to_string()),
            PredictError::Deadline(ms) => Self::DeadlineExceeded(ms),
            PredictError::ClientClosed => Self::ClientClosed,
            e @ PredictError::Internal { .. } => Self::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Off => Self::NotFound(e.to_string()),
            HistoryError::Unavailable(_) => {
                tracing::warn!(error = %e, "history query failed");
                Self::HistoryUnavailable(e.to_string())
            }
        }
    }
}

/// The statuses as this server was started to give them: an overloaded server answers 503 or, with
/// `--overload-status 429`, 429. Every place that states a status uses it: the answer (through
/// `middleware`), a batch item's status, the history row, so all of them agree.
#[derive(Debug, Clone, Copy)]
pub struct Statuses {
    overload: StatusCode,
}

impl Statuses {
    pub fn new(overload: OverloadStatus) -> Self {
        let overload = match overload {
            OverloadStatus::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OverloadStatus::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        };
        Self { overload }
    }

    pub fn of(&self, e: &ApiError) -> StatusCode {
        if e.is_overload() {
            self.overload
        } else {
            e.status_code()
        }
    }

    /// The status a failed prediction answers with: the history records it beside the error's text.
    pub fn of_prediction(&self, e: &PredictError) -> u16 {
        self.of(&ApiError::from(e.clone())).as_u16()
    }

    /// Gives an overloaded answer (503 from `status_code`) the chosen status. A middleware because
    /// an error becomes its response inside actix, where no setting of the server is at hand; it sits
    /// outside the door, so requests refused there are covered too.
    pub fn middleware<B: 'static>(self) -> ErrorHandlers<B> {
        let handlers = ErrorHandlers::new();
        if self.overload == StatusCode::SERVICE_UNAVAILABLE {
            return handlers;
        }
        handlers.handler(StatusCode::SERVICE_UNAVAILABLE, move |mut res: ServiceResponse<B>| {
            let overloaded =
                res.response().error().and_then(|e| e.as_error::<ApiError>()).is_some_and(ApiError::is_overload);
            if overloaded {
                *res.response_mut().status_mut() = self.overload;
            }
            Ok(ErrorHandlerResponse::Response(res.map_into_left_body()))
        })
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::UnknownModel { .. } | ResolveError::UnknownVersion { .. } => Self::NotFound(e.to_string()),
            ResolveError::NotReady { .. } => Self::Conflict(e.to_string()),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Resolve(e) => e.into(),
            ManageError::Invalid(m) => Self::Validation(m),
            ManageError::Conflict(m) => Self::Conflict(m),
            ManageError::Stale(m) => Self::PreconditionFailed(m),
            ManageError::Load(e) => Self::InvalidModel(e),
        }
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::QueueFull => Self::Overloaded,
            InferError::Stopped => Self::ModelUnavailable,
            InferError::Failed(m) => Self::Internal(anyhow::anyhow!("forward pass failed: {m}")),
            InferError::BadOutput(m) => Self::ModelOutput(m),
        }
    }
}

/// Every error answer: a message for people, a kind for programs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: String,
    /// validation, invalid_image, unsupported_media_type, payload_too_large, not_found, overloaded, ...
    error_type: &'a str,
    /// The model file at fault (reloads only)
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

impl ApiError {
    /// The server is full right now (queue, requests in progress or memory): worth a retry.
    pub fn is_overload(&self) -> bool {
        matches!(self, Self::Overloaded) || matches!(self, Self::Admission(e) if e.is_busy())
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation",
            Self::InvalidImage(_) => "invalid_image",
            Self::UnsupportedMediaType(_) | Self::UnsupportedEncoding(_) => "unsupported_media_type",
            Self::ImageTooLarge(_) => "image_too_large",
            Self::RequestTimeout(_) => "request_timeout",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Overloaded => "overloaded",
            Self::Admission(e) if e.is_busy() => "overloaded",
            Self::Admission(_) => "payload_too_large",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::ClientClosed => "client_closed",
            Self::ModelUnavailable => "model_unavailable",
            Self::ModelOutput(_) => "model_output",
            Self::Reload(_) | Self::InvalidModel(_) => "invalid_model",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::HistoryUnavailable(_) => "history_unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::InvalidImage(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) | Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } | Self::ImageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            // 503 unless the server was told otherwise: see `Statuses`.
            Self::Overloaded | Self::ModelUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Admission(e) if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Admission(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            // nginx's "client closed request": logged and counted, never read by anyone.
            Self::ClientClosed => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            // The files on disk cannot become a model: the request was understood but cannot be
            // carried out until someone fixes them.
            Self::Reload(_) | Self::InvalidModel(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::HistoryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::ModelOutput(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!(error = ?e, "request failed");
        }
        if let Self::ModelOutput(e) = self {
            tracing::error!(error = %e, "the model's output was refused");
        }
        let body = ErrorBody {
            error: self.to_string(),
            error_type: self.error_type(),
            file: match self {
                Self::Reload(e) | Self::InvalidModel(e) => Some(e.file.display().to_string()),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(self.status_code());
        if self.is_overload() || matches!(self, Self::HistoryUnavailable(_)) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if matches!(self, Self::UnsupportedEncoding(_)) {
            // RFC 7694: what the server does accept.
            response.insert_header((header::ACCEPT_ENCODING, "identity"));
        }
        if let Self::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        if matches!(self, Self::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(body)
    }
}
