//! Routes grouped by path, so that a known path asked with a method it does not have answers 405
//! with `Allow` (RFC 9110, 15.5.6) instead of the 404 of an unknown path. actix-web's `App::route`
//! makes a resource per method, guarded by it: a wrong method matched no resource and fell through
//! to the app's 404.
use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};

use crate::error::ApiError;

pub struct Endpoint {
    resource: Resource,
    allow: Vec<&'static str>,
}

impl Endpoint {
    pub fn at(path: &str) -> Self {
        Endpoint { resource: web::resource(path), allow: Vec::new() }
    }

    fn add(mut self, method: &'static str, route: actix_web::Route) -> Self {
        self.resource = self.resource.route(route);
        self.allow.push(method);
        self
    }

    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("GET", web::get().to(handler))
    }

    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("POST", web::post().to(handler))
    }

    pub fn put<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("PUT", web::put().to(handler))
    }

    pub fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("DELETE", web::delete().to(handler))
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let allow = self.allow.join(", ");
        let refuse = move |request: HttpRequest| {
            let error = ApiError::MethodNotAllowed { method: request.method().to_string(), allow: allow.clone() };
            async move { Err::<HttpResponse, _>(error) }
        };
        self.resource.default_service(web::to(refuse)).register(config)
    }
}
