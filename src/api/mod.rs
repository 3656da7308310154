//! The HTTP API (docs/api.md). Handlers stay thin: parse, call the engine, map outcomes.
pub mod accounts;
pub mod api_keys;
pub mod auth;
pub mod balance;
pub mod error;
pub mod files;
pub mod generations;
pub mod health;
pub mod images;
pub mod json;
pub mod ledger;
pub mod metrics;
pub mod multipart;
pub mod openapi;
pub mod ops;
pub mod query;
pub mod resource;
pub mod stream_slots;
pub mod streams;
pub mod uploads;
pub mod webhook_endpoints;
pub mod webhooks;

use actix_web::{HttpResponse, web};
use uuid::Uuid;

use error::ApiError;
pub use resource::{RegisteredRoute, Resource, Routes, resource};

use crate::config::HttpSettings;

/// Every route of the API; `http` sets the body limits that differ per endpoint. A route is
/// one line here and one `#[utoipa::path]` on its handler (docs/architecture.md, HTTP).
pub fn routes(routes: &mut Routes, http: &HttpSettings) {
    routes
        .service(resource("/healthz").route(health::__path_healthz, health::healthz))
        .service(resource("/readyz").route(health::__path_readyz, health::readyz))
        .service(resource("/metrics").route(metrics::__path_scrape, metrics::scrape))
        .service(resource("/openapi.json").route(openapi::__path_document, openapi::document));
    client_routes(routes, http);
    ops::routes(routes);
    routes
        .service(resource("/v1/files/{key:.+}").route(files::__path_get, files::get))
        .service(
            resource("/webhooks/{provider}/{generation_id}")
                .route(webhooks::__path_receive, webhooks::receive),
        )
        .default_service(web::to(|| async {
            ApiError::not_found("not_found", "no such endpoint").error_response_owned()
        }));
}

/// The routes an account's key calls (and the admin's account and grant creation).
fn client_routes(routes: &mut Routes, http: &HttpSettings) {
    routes
        .service(resource("/v1/accounts").route(accounts::__path_create, accounts::create))
        .service(
            resource("/v1/accounts/{account_id}/grants")
                .route(accounts::__path_grant, accounts::grant),
        )
        .service(
            resource("/v1/accounts/{account_id}/balance")
                .route(balance::__path_of_account, balance::of_account),
        )
        .service(resource("/v1/balance").route(balance::__path_own, balance::own))
        .service(
            resource("/v1/api-keys")
                .route(api_keys::__path_rotate, api_keys::rotate)
                .route(api_keys::__path_list, api_keys::list),
        )
        .service(resource("/v1/ledger").route(ledger::__path_list, ledger::list))
        .service(
            resource("/v1/generations")
                // Requests may carry their images as data: URIs.
                .app_data(web::Data::new(json::JsonLimit(http.generation_limit_bytes)))
                .route(generations::__path_create, generations::create)
                .route(generations::__path_list, generations::list),
        )
        // Before `/v1/generations/{id}`, which would take `stream` for an id.
        .service(
            resource("/v1/generations/stream").route(streams::__path_account, streams::account),
        )
        .service(resource("/v1/generations/{id}").route(generations::__path_get, generations::get))
        .service(
            resource("/v1/generations/{id}/stream")
                .route(streams::__path_generation, streams::generation),
        )
        .service(
            resource("/v1/generations/{id}/cancel")
                .route(generations::__path_cancel, generations::cancel),
        )
        .service(
            resource("/v1/generations/{id}/events")
                .route(generations::__path_events, generations::events),
        )
        .service(
            resource("/v1/uploads")
                .route(uploads::__path_create, uploads::create)
                .route(uploads::__path_list, uploads::list),
        )
        .service(
            resource("/v1/uploads/{id}")
                .route(uploads::__path_get, uploads::get)
                .route(uploads::__path_delete, uploads::delete),
        )
        .service(
            resource("/v1/webhook-endpoints")
                .route(webhook_endpoints::__path_create, webhook_endpoints::create)
                .route(webhook_endpoints::__path_list, webhook_endpoints::list),
        )
        .service(
            resource("/v1/webhook-endpoints/{id}")
                .route(webhook_endpoints::__path_get, webhook_endpoints::get)
                .route(webhook_endpoints::__path_delete, webhook_endpoints::delete),
        )
        .service(resource("/v1/webhook-endpoints/{id}/deliveries").route(
            webhook_endpoints::__path_deliveries,
            webhook_endpoints::deliveries,
        ));
}

/// What `routes` registers, as it registers it: for the test that the OpenAPI document covers
/// every route and names none that is not.
pub fn registered_routes(http: &HttpSettings) -> Vec<RegisteredRoute> {
    use utoipa_actix_web::AppExt;
    let mut registered = Vec::new();
    let _ = actix_web::App::new().into_utoipa_app().configure(|config| {
        let mut table = Routes::new(config);
        routes(&mut table, http);
        registered = table.into_registered();
    });
    registered
}

impl ApiError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

pub fn account_not_found() -> ApiError {
    ApiError::not_found("account_not_found", "no such account")
}

/// An id that does not parse names no account: 404, like an unknown one.
pub fn parse_account_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| account_not_found())
}
