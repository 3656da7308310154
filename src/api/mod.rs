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
pub mod ops;
pub mod query;
pub mod uploads;
pub mod webhook_endpoints;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, Resource, web};
use uuid::Uuid;

use error::ApiError;

use crate::config::HttpSettings;

/// Every route; `http` sets the body limits that differ per endpoint.
pub fn routes(config: &mut web::ServiceConfig, http: &HttpSettings) {
    config
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(metrics::scrape)))
        .service(resource("/v1/accounts").route(web::post().to(accounts::create)))
        .service(
            resource("/v1/accounts/{account_id}/grants").route(web::post().to(accounts::grant)),
        )
        .service(
            resource("/v1/accounts/{account_id}/balance").route(web::get().to(balance::of_account)),
        )
        .service(resource("/v1/balance").route(web::get().to(balance::own)))
        .service(
            resource("/v1/api-keys")
                .route(web::post().to(api_keys::rotate))
                .route(web::get().to(api_keys::list)),
        )
        .service(resource("/v1/ledger").route(web::get().to(ledger::list)))
        .service(
            resource("/v1/generations")
                // Requests may carry their images as data: URIs.
                .app_data(web::Data::new(json::JsonLimit(http.generation_limit_bytes)))
                .route(web::post().to(generations::create))
                .route(web::get().to(generations::list)),
        )
        .service(resource("/v1/generations/{id}").route(web::get().to(generations::get)))
        .service(resource("/v1/generations/{id}/cancel").route(web::post().to(generations::cancel)))
        .service(resource("/v1/generations/{id}/events").route(web::get().to(generations::events)))
        .service(
            resource("/v1/uploads")
                .route(web::post().to(uploads::create))
                .route(web::get().to(uploads::list)),
        )
        .service(
            resource("/v1/uploads/{id}")
                .route(web::get().to(uploads::get))
                .route(web::delete().to(uploads::delete)),
        )
        .service(
            resource("/v1/webhook-endpoints")
                .route(web::post().to(webhook_endpoints::create))
                .route(web::get().to(webhook_endpoints::list)),
        )
        .service(
            resource("/v1/webhook-endpoints/{id}")
                .route(web::get().to(webhook_endpoints::get))
                .route(web::delete().to(webhook_endpoints::delete)),
        )
        .service(
            resource("/v1/webhook-endpoints/{id}/deliveries")
                .route(web::get().to(webhook_endpoints::deliveries)),
        )
        .configure(ops::routes)
        .service(resource("/v1/files/{key:.+}").route(web::get().to(files::get)))
        .service(
            resource("/webhooks/{provider}/{generation_id}")
                .route(web::post().to(webhooks::receive)),
        )
        .default_service(web::to(|| async {
            ApiError::not_found("not_found", "no such endpoint").error_response_owned()
        }));
}

/// A resource whose other methods answer 405 in the API's error shape.
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
        .error_response_owned()
    }))
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
