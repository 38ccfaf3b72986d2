//! Access to management endpoints (`/reload_model` and later ones): a bearer token when one is
//! configured, otherwise only callers on this machine; and never a request that a browser sent on
//! behalf of another site (a form post needs no CORS preflight, and DNS rebinding gives a page on
//! another site a name that resolves to 127.0.0.1).
use std::future::{ready, Ready};
use std::net::IpAddr;

use crate::error::ApiError;
use crate::secret::Secret;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};

/// What a request says about who sent it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Caller<'a> {
    pub bearer: Option<&'a str>,
    pub peer: Option<IpAddr>,
    /// The `Host` header: the name the client used to reach us.
    pub host: Option<&'a str>,
    /// Browsers send `Origin` on every cross-origin POST (and same-origin ones).
    pub origin: Option<&'a str>,
    /// Browsers send `Sec-Fetch-Site`: same-origin, same-site, cross-site or none (typed by a person).
    pub fetch_site: Option<&'a str>,
}

/// The decision, apart from HTTP. `token` is the configured one; `origins` the CORS origins that
/// may call from a browser.
pub fn check(token: Option<&Secret>, origins: &[String], caller: &Caller) -> Result<(), ApiError> {
    let forbidden = |why: &str| Err(ApiError::Forbidden(format!("management endpoints refuse {why}")));
    if caller
        .fetch_site
        .is_some_and(|site| !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none"))
    {
        return forbidden("requests a browser sent from another site");
    }
    if let Some(origin) = caller.origin {
        let own = caller.host.is_some_and(|host| same_authority(origin, host));
        if !own && !origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)) {
            return forbidden("requests from a page of another origin");
        }
    }
    match (token, caller.bearer) {
        (Some(token), Some(sent)) if token.matches(sent) => Ok(()),
        (Some(_), _) => Err(ApiError::Unauthorized),
        (None, _) if !caller.peer.is_some_and(|ip| ip.to_canonical().is_loopback()) => {
            forbidden("callers that are not on this machine when no admin token is set")
        }
        // A page on another site whose name was rebound to 127.0.0.1 still says its own name.
        (None, _) if !caller.host.is_some_and(is_loopback_host) => {
            forbidden("a Host that is not a loopback name when no admin token is set")
        }
        (None, _) => Ok(()),
    }
}

/// `host[:port]` of a URL or a Host header, lower case, without the port its scheme implies.
fn authority(value: &str) -> String {
    let (scheme, rest) = value.split_once("://").unwrap_or(("http", value));
    let authority = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    let default_port = if scheme.eq_ignore_ascii_case("https") { ":443" } else { ":80" };
    authority.strip_suffix(default_port).map(str::to_string).unwrap_or(authority)
}

fn same_authority(origin: &str, host: &str) -> bool {
    origin != "null" && authority(origin) == authority(host)
}

/// localhost (and its subdomains, which resolve to loopback), 127.0.0.0/8, [::1] and
/// IPv4-mapped loopback, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
    .trim_end_matches('.')
    .to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Who may manage the server: registered as application data for the `Admin` extractor.
pub struct AdminAccess {
    pub token: Option<Secret>,
    /// The CORS origins, whose pages may call management endpoints too.
    pub origins: Vec<String>,
}

/// Add `admin: Admin` to a handler's arguments to make it a management endpoint; `admin.by` says
/// who called, for the deployment log ("token from 10.0.0.7", "loopback 127.0.0.1").
pub struct Admin {
    pub by: String,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(access) = req.app_data::<web::Data<AdminAccess>>() else {
            return ready(Err(ApiError::Internal(anyhow::anyhow!("no AdminAccess registered"))));
        };
        let headers = req.headers();
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let caller = Caller {
            bearer: text(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim),
            peer: req.peer_addr().map(|a| a.ip()),
            host: text(header::HOST),
            origin: text(header::ORIGIN),
            fetch_site: text(header::HeaderName::from_static("sec-fetch-site")),
        };
        let peer = caller.peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let by = match (&access.token, caller.bearer) {
            (Some(_), Some(_)) => format!("token from {peer}"),
            _ => format!("loopback {peer}"),
        };
        ready(check(access.token.as_ref(), &access.origins, &caller).map(|()| Admin { by }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local<'a>() -> Caller<'a> {
        Caller { peer: Some("127.0.0.1".parse().unwrap()), host: Some("127.0.0.1:8000"), ..Caller::default() }
    }

    #[test]
    fn a_configured_token_must_be_sent_exactly() {
        let token = Secret::new("s3cret").unwrap();
        let remote = Caller { peer: Some("10.1.2.3".parse().unwrap()), host: Some("api.example"), ..local() };
        assert!(check(Some(&token), &[], &Caller { bearer: Some("s3cret"), ..remote }).is_ok());
        assert!(matches!(
            check(Some(&token), &[], &Caller { bearer: Some("s3cret2"), ..remote }),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(check(Some(&token), &[], &local()), Err(ApiError::Unauthorized)));
    }

    #[test]
    fn an_empty_token_is_refused() {
        assert!(Secret::new("").is_err() && Secret::new("  ").is_err());
    }

    #[test]
    fn without_a_token_only_loopback_callers_that_name_a_loopback_host_are_admitted() {
        assert!(check(None, &[], &local()).is_ok());
        for peer in ["::1", "::ffff:127.0.0.1", "127.0.0.2"] {
            assert!(check(None, &[], &Caller { peer: Some(peer.parse().unwrap()), ..local() }).is_ok(), "{peer}");
        }
        for host in ["localhost", "localhost:8000", "LOCALHOST.", "app.localhost:1", "[::1]:8000", "127.1.2.3"] {
            assert!(check(None, &[], &Caller { host: Some(host), ..local() }).is_ok(), "{host}");
        }
        let remote = Caller { peer: Some("192.168.1.5".parse().unwrap()), ..local() };
        assert!(matches!(check(None, &[], &remote), Err(ApiError::Forbidden(_))));
        assert!(matches!(check(None, &[], &Caller { peer: None, ..local() }), Err(ApiError::Forbidden(_))));
        // DNS rebinding: the browser reached 127.0.0.1 under the attacker's name.
        for host in ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example"] {
            assert!(
                matches!(check(None, &[], &Caller { host: Some(host), ..local() }), Err(ApiError::Forbidden(_))),
                "{host}"
            );
        }
        assert!(matches!(check(None, &[], &Caller { host: None, ..local() }), Err(ApiError::Forbidden(_))));
    }

    #[test]
    fn a_browser_request_from_another_site_is_refused_even_with_the_token() {
        let token = Secret::new("t").unwrap();
        let with_token = Caller { bearer: Some("t"), ..local() };
        for (origin, fetch_site) in [
            (Some("https://evil.example"), None),
            (Some("null"), None),
            (Some("http://127.0.0.1:9999"), None),
            (None, Some("cross-site")),
            (None, Some("same-site")),
        ] {
            let caller = Caller { origin, fetch_site, ..with_token };
            assert!(
                matches!(check(Some(&token), &[], &caller), Err(ApiError::Forbidden(_))),
                "{origin:?} {fetch_site:?}"
            );
            assert!(matches!(check(None, &[], &caller), Err(ApiError::Forbidden(_))), "{origin:?} {fetch_site:?}");
        }
        // The server's own page, a person typing the URL, and an origin the operator allowed.
        let own = Caller { origin: Some("http://127.0.0.1:8000"), fetch_site: Some("same-origin"), ..local() };
        assert!(check(None, &[], &own).is_ok());
        assert!(check(None, &[], &Caller { fetch_site: Some("none"), ..local() }).is_ok());
        let allowed = Caller { origin: Some("https://dashboard.example"), bearer: Some("t"), ..local() };
        assert!(check(Some(&token), &["https://dashboard.example".to_string()], &allowed).is_ok());
    }

    #[test]
    fn a_secret_is_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("s3cret").unwrap()), "[redacted]");
    }
}
