//! `/v1/webhook-endpoints`: an account registers, lists and deletes the URLs its completion
//! webhooks go to, and reads each endpoint's deliveries. The rules (which URLs, how many, which
//! events) live in `atelier_actors::webhooks_out`; this parses and maps.

use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::webhooks_out::endpoints::{self, Registered};
use atelier_actors::webhooks_out::{EventType, outbox};
use atelier_entities::webhook_delivery::Model as Delivery;
use atelier_entities::webhook_endpoint::Model as Endpoint;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use super::json::ApiJson;
use super::openapi::ErrorBody;
use super::query::{Page, Params};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `https://…` to a public host, at most 2048 bytes.
    #[schema(max_length = 2048, pattern = "^https?://")]
    url: String,
    /// `generation.settled`, `generation.released`; default: both.
    #[serde(default)]
    #[schema(min_items = 1, inline, value_type = Option<Vec<EventName>>)]
    events: Option<Vec<String>>,
}

/// The event types an endpoint may ask for, as OpenAPI shows them.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum EventName {
    #[schema(rename = "generation.settled")]
    Settled,
    #[schema(rename = "generation.released")]
    Released,
}

#[derive(Debug, Serialize, ToSchema)]
struct EndpointView {
    id: Uuid,
    url: String,
    events: Vec<&'static str>,
    created_at: DateTime<Utc>,
    /// Only in the answer to the registration: the one time it is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn view(endpoint: Endpoint, with_secret: bool) -> EndpointView {
    EndpointView {
        id: endpoint.id,
        events: endpoints::events_of(&endpoint)
            .into_iter()
            .map(EventType::as_str)
            .collect(),
        url: endpoint.url,
        created_at: endpoint.created_at,
        secret: with_secret.then_some(endpoint.secret),
    }
}

/// The event types asked for: known, at least one, each once.
fn parse_events(asked: Option<Vec<String>>) -> Result<Vec<EventType>, ApiError> {
    let Some(asked) = asked else {
        return Ok(EventType::ALL.to_vec());
    };
    let known: Vec<&str> = EventType::ALL.iter().map(|event| event.as_str()).collect();
    let invalid = || {
        ApiError::invalid(
            "invalid_events",
            format!("events: a non-empty list of {}", known.join(", ")),
        )
    };
    if asked.is_empty() || asked.len() > EventType::ALL.len() * 4 {
        return Err(invalid());
    }
    let mut events = Vec::new();
    for name in &asked {
        let event = EventType::parse(name).ok_or_else(invalid)?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "client",
    security(("api_key" = [])),
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "The endpoint, with its signing secret: the only time it is shown", body = EndpointView),
        (status = 409, description = "`too_many_endpoints`", body = ErrorBody),
        (status = 422, description = "`invalid_url`, `invalid_events`, or a body field error", body = ErrorBody)
    )
)]
pub async fn create(
    Client(account): Client,
    state: web::Data<AppState>,
    body: ApiJson<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let CreateEndpoint { url, events } = body.0;
    let events = parse_events(events)?;
    let url = endpoints::check_destination(&url, &state.webhooks.policy)
        .map_err(|bad| ApiError::invalid("invalid_url", bad.0))?;
    let limit = state.settings.webhooks.max_endpoints_per_account;
    match endpoints::register(&state.db, &state.clock, account.id, &url, &events, limit).await? {
        Registered::Created(endpoint) => {
            tracing::info!(account_id = %account.id, endpoint = %endpoint.id, "webhook endpoint registered");
            Ok(HttpResponse::Created().json(view(endpoint, true)))
        }
        Registered::TooMany { limit } => Err(ApiError::conflict(
            "too_many_endpoints",
            format!("an account may have at most {limit} webhook endpoints; delete one first"),
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct List<T> {
    items: Vec<T>,
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "client",
    security(("api_key" = [])),
    responses((status = 200, description = "The account's endpoints, oldest first; no secrets", body = List<EndpointView>))
)]
pub async fn list(
    Client(account): Client,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = endpoints::list(&state.db, account.id).await?;
    Ok(HttpResponse::Ok().json(List {
        items: found.into_iter().map(|e| view(e, false)).collect(),
    }))
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook_endpoint_not_found", "no such webhook endpoint")
}

/// The account's endpoint named by the path; another account's answers 404 like an unknown one.
async fn owned(state: &AppState, account_id: Uuid, raw: &str) -> Result<Endpoint, ApiError> {
    let id = Uuid::parse_str(raw).map_err(|_| not_found())?;
    endpoints::find_owned(&state.db, account_id, id)
        .await?
        .ok_or_else(not_found)
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint; no secret", body = EndpointView),
        (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
    )
)]
pub async fn get(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = owned(&state, account.id, &path).await?;
    Ok(HttpResponse::Ok().json(view(endpoint, false)))
}

#[utoipa::path(
    delete, path = "/v1/webhook-endpoints/{id}", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted: nothing more is sent to it"),
        (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody)
    )
)]
pub async fn delete(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path).map_err(|_| not_found())?;
    if !endpoints::delete(&state.db, &state.clock, account.id, id).await? {
        return Err(not_found());
    }
    tracing::info!(account_id = %account.id, endpoint = %id, "webhook endpoint deleted");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
struct DeliveryView {
    /// The `webhook-id` every attempt carried.
    id: String,
    event_type: String,
    generation_id: Uuid,
    state: String,
    attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        Self {
            id: outbox::webhook_id(delivery.id),
            event_type: delivery.event_type,
            generation_id: delivery.workflow_id,
            state: delivery.state,
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at,
            last_status: delivery.last_status,
            last_error: delivery.last_error,
            created_at: delivery.created_at,
            delivered_at: delivery.delivered_at,
        }
    }
}

#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "client",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<String>, Query, pattern = "^msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The endpoint's deliveries, newest first", body = Page<DeliveryView, String>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 404, description = "`webhook_endpoint_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn deliveries(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["limit", "cursor"])?;
    let limit = params.limit()?;
    // A cursor is a delivery's `webhook-id`.
    let before = params.cursor(|raw| {
        raw.strip_prefix("msg_")
            .and_then(|id| Uuid::try_parse(id).ok())
    })?;
    let endpoint = owned(&state, account.id, &path).await?;
    let (rows, next) = outbox::page_for_endpoint(&state.db, endpoint.id, before, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(DeliveryView::from).collect::<Vec<_>>(),
        next_cursor: next.map(outbox::webhook_id),
    }))
}
