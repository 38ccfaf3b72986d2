//! What every request meets before its handler: a body in a content coding is refused (415; it is
//! never inflated, so a few KB cannot become a GB), and a request that brings a body takes a place
//! among the requests in progress, or is refused at once (503/429 + Retry-After).
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::web;

use crate::error::ApiError;
use crate::service::Predictor;

pub async fn at_the_door(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(coding) = content_coding(&req) {
        return Ok(req.error_response(ApiError::UnsupportedEncoding(coding)).map_into_right_body());
    }
    let brings_a_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    let predictor = req.app_data::<web::Data<Predictor>>().cloned();
    // Held until the handler has answered: the answer's body is already built then.
    let _place = match predictor.as_ref().filter(|_| brings_a_body).map(|p| p.admission().admit()) {
        Some(Err(refused)) => return Ok(req.error_response(ApiError::from(refused)).map_into_right_body()),
        Some(Ok(place)) => Some(place),
        None => None,
    };
    Ok(next.call(req).await?.map_into_left_body())
}

/// The body's content coding, unless there is none ("identity" is none).
fn content_coding(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_ENCODING)?;
    let value = value.to_str().unwrap_or("(not text)");
    let coded = value.split(',').map(str::trim).any(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    coded.then(|| value.to_string())
}
