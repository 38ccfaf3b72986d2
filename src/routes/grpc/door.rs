//! Admission at the door for gRPC, as `routes::door` does for REST: an infer call takes a place
//! among the requests in progress before its message is read (tonic decodes the whole message
//! before the handler runs), or is refused at once with UNAVAILABLE. Other calls (health,
//! metadata) never wait for a place, so readiness answers under load. Every call also carries its
//! `:authority` (HTTP/2's Host) to the handlers, for the admin check.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::Service;

use crate::error::ApiError;
use crate::limits::Admission;

#[derive(Clone)]
pub struct Door<S> {
    inner: S,
    admission: Admission,
}

/// Puts the door in front of the gRPC service.
#[derive(Clone)]
pub struct DoorLayer(pub Admission);

impl<S> tower::Layer<S> for DoorLayer {
    type Service = Door<S>;
    fn layer(&self, inner: S) -> Door<S> {
        Door { inner, admission: self.0.clone() }
    }
}

/// The `:authority` the client called, as REST's admin check reads `Host`.
#[derive(Clone)]
pub struct Authority(pub Option<String>);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Door<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let authority = request.uri().authority().map(|a| a.to_string());
        request.extensions_mut().insert(Authority(authority));
        if !request.uri().path().ends_with("/ModelInfer") {
            return Box::pin(self.inner.call(request));
        }
        match self.admission.admit() {
            Err(e) => {
                let refused = super::status(ApiError::from(e)).into_http();
                Box::pin(std::future::ready(Ok(refused)))
            }
            Ok(place) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let answer = call.await;
                    drop(place);
                    answer
                })
            }
        }
    }
}
