//! `GET /v1/ops/providers`: each configured provider's health, load, recent calls, last
//! error, credits charged and pause; `POST /v1/ops/providers/{name}/pause` and `…/resume`
//! drain a provider and bring it back (design §2). The health is what the provider's actor
//! knows in this process; the pause is the database's.
use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::providers::health::Health;
use atelier_actors::providers::pauses::{self, Pause};
use atelier_actors::workflow::read;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, Operator};
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::openapi::ErrorBody;
use crate::api::ops::{action, checked_reason};
use crate::ops::audit;
use crate::state::AppState;

/// The period `credits_charged` covers, in hours.
const CHARGED_HOURS: i64 = 24;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub adapter: String,
    /// Credits a generation on it holds.
    pub cost: i64,
    /// Its place in `providers.chain`; `None` when it is not in the chain.
    pub chain_position: Option<usize>,
    pub paused: Option<PauseView>,
    /// Credits charged by generations on it settled in the last 24 hours.
    pub credits_charged: i64,
    /// What its actor knows (absent if the actor stopped): `circuit`, `circuit_since`,
    /// `in_flight`, `max_concurrency`, `queued`, `requests_per_second`, `share_of`,
    /// `account_max_concurrency`, `account_requests_per_second`, `throttled_until`,
    /// `last_5m`, `last_60m`, `last_error` (docs/api.md).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub health: Option<Health>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PauseView {
    pub reason: String,
    pub paused_at: DateTime<Utc>,
}

impl From<Pause> for PauseView {
    fn from(pause: Pause) -> Self {
        Self {
            reason: pause.reason,
            paused_at: pause.paused_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// For the audit log: 1 to 1000 bytes once trimmed; required to pause.
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ProviderList {
    items: Vec<ProviderView>,
}

#[utoipa::path(
    get, path = "/v1/ops/providers", tag = "ops",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Each configured provider's health, load, recent calls, last error, charges and pause", body = ProviderList)
    )
)]
pub async fn list(_: Operator, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let paused = pauses::all(&state.db).await?;
    let charged = charged(&state, now).await?;
    let mut items = Vec::with_capacity(state.settings.providers.len());
    for name in state.settings.providers.keys() {
        items.push(view(&state, name, &paused, &charged, now).await);
    }
    Ok(HttpResponse::Ok().json(ProviderList { items }))
}

#[utoipa::path(
    post, path = "/v1/ops/providers/{name}/pause", tag = "ops",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The provider's name (`[providers.<name>]`)")),
    request_body(content = Option<ReasonBody>, description = "`reason` is required"),
    responses(
        (status = 200, description = "The provider, paused, as listed", body = ProviderView),
        (status = 404, description = "`provider_not_found`: no such `[providers.<name>]`", body = ErrorBody),
        (status = 422, description = "`missing_reason`, `invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
/// Pauses the provider: from now on its new work fails over or waits. Pausing a paused
/// provider replaces the reason.
pub async fn pause(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    let name = known(&state, &name)?;
    let reason =
        checked_reason(body.0.unwrap_or_default().reason, true)?.expect("a required reason");
    change(&state, &request, name, Change::Pause(reason)).await
}

#[utoipa::path(
    post, path = "/v1/ops/providers/{name}/resume", tag = "ops",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The provider's name (`[providers.<name>]`)")),
    request_body(content = Option<ReasonBody>, description = "May be empty or `null`"),
    responses(
        (status = 200, description = "The provider, resumed, as listed", body = ProviderView),
        (status = 404, description = "`provider_not_found`: no such `[providers.<name>]`", body = ErrorBody),
        (status = 422, description = "`invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
/// Resumes the provider (a provider that was not paused stays as it was).
pub async fn resume(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    let name = known(&state, &name)?;
    let reason = checked_reason(body.0.unwrap_or_default().reason, false)?;
    change(&state, &request, name, Change::Resume(reason)).await
}

enum Change {
    Pause(String),
    Resume(Option<String>),
}

/// Records the change in the audit log, then makes it, and answers the provider's document.
/// The process's own copy of the pauses is reloaded at once; other processes' within
/// `pauses::REFRESH`.
async fn change(
    state: &AppState,
    request: &HttpRequest,
    name: String,
    change: Change,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let (verb, reason) = match &change {
        Change::Pause(reason) => ("provider.pause", Some(reason.clone())),
        Change::Resume(reason) => ("provider.resume", reason.clone()),
    };
    let entry = action(request, verb, "provider", Some(name.clone()), reason);
    audit::record(&state.db, entry, now).await?;
    match &change {
        Change::Pause(reason) => pauses::pause(&state.db, &name, reason, now).await?,
        Change::Resume(_) => drop(pauses::resume(&state.db, &name).await?),
    }
    state.pauses.refresh(&state.db).await?;
    tracing::warn!(provider = %name, action = verb, "provider changed by an operator");
    respond(state, &name).await
}

/// `name` when it is a configured provider, else 404.
fn known(state: &AppState, name: &str) -> Result<String, ApiError> {
    if state.settings.providers.contains_key(name) {
        Ok(name.to_owned())
    } else {
        Err(ApiError::not_found(
            "provider_not_found",
            "no such provider is configured",
        ))
    }
}

async fn respond(state: &AppState, name: &str) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let paused = pauses::all(&state.db).await?;
    let charged = charged(state, now).await?;
    Ok(HttpResponse::Ok().json(view(state, name, &paused, &charged, now).await))
}

async fn charged(state: &AppState, now: DateTime<Utc>) -> Result<HashMap<String, i64>, ApiError> {
    let since = now - chrono::Duration::hours(CHARGED_HOURS);
    Ok(read::charged_by_provider(&state.db, since).await?)
}

async fn view(
    state: &AppState,
    name: &str,
    paused: &HashMap<String, Pause>,
    charged: &HashMap<String, i64>,
    now: DateTime<Utc>,
) -> ProviderView {
    let config = &state.settings.providers[name];
    let health = match state.provider_handles.get(name) {
        Some(handle) => handle.health(now).await,
        None => None,
    };
    ProviderView {
        name: name.to_owned(),
        adapter: config.adapter_name(name).to_owned(),
        cost: config.cost,
        chain_position: state
            .settings
            .providers
            .chain
            .iter()
            .position(|n| n == name),
        paused: paused.get(name).cloned().map(PauseView::from),
        credits_charged: charged.get(name).copied().unwrap_or(0),
        health,
    }
}
