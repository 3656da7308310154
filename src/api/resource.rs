//! `Resource`: one path of the API with its documented handlers, and `Routes`, the one way the
//! API registers them. A handler is added with its `#[utoipa::path]` annotation, which names
//! its method and path: actix routes on that method, the OpenAPI document shows that
//! operation, and the other methods answer 405 with an `Allow` listing the ones registered.
//! So the routes, the document and the `Allow` headers come from the same calls and cannot
//! drift apart.
use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, Handler, HttpResponse, Responder, web};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::openapi::schema::Schema;
use utoipa_actix_web::OpenApiFactory;
use utoipa_actix_web::service_config::ServiceConfig;

use super::error::ApiError;

type Schemas = Vec<(String, RefOr<Schema>)>;

/// One path (an actix pattern such as `/v1/files/{key:.+}`) and the methods it takes.
pub struct Resource {
    pattern: &'static str,
    inner: actix_web::Resource,
    methods: Vec<Method>,
    paths: Paths,
    schemas: Schemas,
}

/// A resource whose methods are added with `route`; the others answer 405.
pub fn resource(pattern: &'static str) -> Resource {
    Resource {
        pattern,
        inner: web::resource(pattern),
        methods: Vec::new(),
        paths: Paths::new(),
        schemas: Vec::new(),
    }
}

impl Resource {
    /// Serves `handler` on the method its annotation `doc` (the `__path_<handler>` type that
    /// `#[utoipa::path]` generates) names. Panics, at start, when the annotation names another
    /// path or a method this resource already serves.
    pub fn route<D, F, Args>(mut self, doc: D, handler: F) -> Self
    where
        D: OpenApiFactory + utoipa::Path,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        assert_eq!(
            D::path(),
            document_path(self.pattern),
            "the annotation of a handler on {} names another path",
            self.pattern
        );
        for method in D::methods() {
            let method = actix_method(&method);
            assert!(
                !self.methods.contains(&method),
                "{method} {} is registered twice",
                self.pattern
            );
            self.inner = self
                .inner
                .route(web::method(method.clone()).to(handler.clone()));
            self.methods.push(method);
        }
        self.paths.merge(doc.paths());
        doc.schemas(&mut self.schemas);
        self
    }

    /// Data for this resource's handlers only (a body limit that differs, say).
    pub fn app_data<U: 'static>(mut self, data: U) -> Self {
        self.inner = self.inner.app_data(data);
        self
    }
}

impl HttpServiceFactory for Resource {
    fn register(self, config: &mut AppService) {
        let allow = allow_header(&self.methods);
        self.inner
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { method_not_allowed(&allow) }
            }))
            .register(config);
    }
}

impl OpenApiFactory for Resource {
    fn paths(&self) -> Paths {
        self.paths.clone()
    }

    fn schemas(&self, schemas: &mut Schemas) {
        schemas.extend(self.schemas.iter().cloned());
    }
}

/// 405 in the API's error shape, with the `Allow` header RFC 9110 §15.5.6 asks for.
fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method not allowed on this endpoint; it takes {allow}"),
    ));
    response.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_str(allow).expect("method names are header-safe"),
    );
    response
}

fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A route as registered: its method and its actix pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredRoute {
    pub method: Method,
    pub pattern: &'static str,
}

impl RegisteredRoute {
    /// The path as the OpenAPI document writes it.
    pub fn document_path(&self) -> String {
        document_path(self.pattern)
    }
}

/// Where the API's resources are registered: each goes to actix and, through
/// utoipa-actix-web, into the OpenAPI document; the list of what was registered is kept.
pub struct Routes<'c, 's> {
    config: &'c mut ServiceConfig<'s>,
    registered: Vec<RegisteredRoute>,
}

impl<'c, 's> Routes<'c, 's> {
    pub fn new(config: &'c mut ServiceConfig<'s>) -> Self {
        Self {
            config,
            registered: Vec::new(),
        }
    }

    pub fn service(&mut self, resource: Resource) -> &mut Self {
        self.registered
            .extend(resource.methods.iter().map(|method| RegisteredRoute {
                method: method.clone(),
                pattern: resource.pattern,
            }));
        self.config.service(resource);
        self
    }

    /// What answers a path no resource matches.
    pub fn default_service(&mut self, route: actix_web::Route) -> &mut Self {
        self.config.default_service(route);
        self
    }

    pub fn into_registered(self) -> Vec<RegisteredRoute> {
        self.registered
    }
}

/// `/v1/files/{key:.+}` as OpenAPI writes it: `/v1/files/{key}`.
fn document_path(pattern: &str) -> String {
    let mut path = String::with_capacity(pattern.len());
    let (mut in_parameter, mut in_regex) = (false, false);
    for c in pattern.chars() {
        match c {
            '{' if !in_parameter => in_parameter = true,
            ':' if in_parameter => in_regex = true,
            '}' if in_parameter => (in_parameter, in_regex) = (false, false),
            _ => {}
        }
        if !in_regex {
            path.push(c);
        }
    }
    path
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// The path item a route's annotation documents, for tests of this module.
#[cfg(test)]
fn item_of(resource: &Resource, path: &str) -> Option<utoipa::openapi::PathItem> {
    resource.paths.paths.get(path).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_paths_drop_the_patterns_regexes() {
        assert_eq!(document_path("/v1/files/{key:.+}"), "/v1/files/{key}");
        assert_eq!(
            document_path("/webhooks/{provider}/{generation_id}"),
            "/webhooks/{provider}/{generation_id}"
        );
        assert_eq!(document_path("/healthz"), "/healthz");
    }

    #[test]
    fn allow_lists_the_methods_in_registration_order() {
        assert_eq!(allow_header(&[Method::POST, Method::GET]), "POST, GET");
    }

    #[test]
    fn a_resource_documents_its_routes() {
        let resource = resource("/healthz").route(
            crate::api::health::__path_healthz,
            crate::api::health::healthz,
        );
        assert!(item_of(&resource, "/healthz").is_some_and(|item| item.get.is_some()));
    }
}
