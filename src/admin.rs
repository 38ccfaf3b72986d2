//! Access to management endpoints (`/reload_model` and later ones): a bearer token when one is
//! configured, otherwise only callers on this machine.
use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// A token that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Compares in time that does not depend on where the strings differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// The decision, apart from HTTP: `token` is the configured one, `bearer` what the caller sent.
pub fn check(token: Option<&Secret>, bearer: Option<&str>, peer: Option<IpAddr>) -> Result<(), ApiError> {
    match (token, bearer) {
        (Some(token), Some(sent)) if token.matches(sent) => Ok(()),
        (Some(_), _) => Err(ApiError::Unauthorized),
        (None, _) if peer.is_some_and(|ip| ip.is_loopback()) => Ok(()),
        (None, _) => {
            Err(ApiError::Forbidden("management endpoints accept only local callers when no admin token is set".into()))
        }
    }
}

/// Add `_admin: Admin` to a handler's arguments to make it a management endpoint.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = req.app_data::<web::Data<AppState>>().and_then(|s| s.admin_token.clone());
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let peer = req.peer_addr().map(|a| a.ip());
        ready(check(token.as_ref(), bearer, peer).map(|()| Admin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_token_must_be_sent_exactly() {
        let token = Secret::new("s3cret");
        let remote: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
        assert!(check(Some(&token), Some("s3cret"), remote).is_ok());
        assert!(matches!(check(Some(&token), Some("s3cret2"), remote), Err(ApiError::Unauthorized)));
        assert!(matches!(check(Some(&token), None, Some("127.0.0.1".parse().unwrap())), Err(ApiError::Unauthorized)));
    }

    #[test]
    fn without_a_token_only_loopback_callers_are_admitted() {
        assert!(check(None, None, Some("127.0.0.1".parse().unwrap())).is_ok());
        assert!(check(None, None, Some("::1".parse().unwrap())).is_ok());
        assert!(matches!(check(None, None, Some("192.168.1.5".parse().unwrap())), Err(ApiError::Forbidden(_))));
        assert!(matches!(check(None, None, None), Err(ApiError::Forbidden(_))));
    }

    #[test]
    fn a_secret_is_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "[redacted]");
    }
}
