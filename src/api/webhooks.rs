//! `POST /webhooks/{provider}/{generation_id}?token=`: provider callbacks. A callback is
//! authenticated (the per-generation token, and the provider's signature where it signs),
//! stored in the inbox (a replay is stored once), acknowledged, and only then delivered to the
//! workflow's actor — so nothing acknowledged is lost to a crash.
use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::workflow::{NewCallback, read};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use super::json::read_limited;
use super::openapi::ErrorBody;
use crate::accounts::hex;
use crate::state::AppState;

/// The answer to a stored callback: `{"received": true}`.
#[derive(serde::Serialize, ToSchema)]
pub struct Received {
    received: bool,
}

#[utoipa::path(
    post, path = "/webhooks/{provider}/{generation_id}", tag = "webhooks",
    params(
        ("provider" = String, Path, description = "The provider the callback is from"),
        ("generation_id" = String, Path, description = "The generation it is about"),
        ("token" = String, Query, description = "The generation's callback token, from the webhook URL Atelier handed the provider"),
    ),
    request_body(content = Object, description = "The provider's callback, as it sends it"),
    responses(
        (status = 200, description = "Stored in the inbox (a replay is stored once)", body = Received),
        (status = 400, description = "`malformed_callback`: the provider's adapter cannot parse the body; `unreadable_body`", body = ErrorBody),
        (status = 401, description = "`invalid_token` (also for an unknown generation), `invalid_signature`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`unknown_task`: the callback names another task than the one recorded", body = ErrorBody)
    )
)]
pub async fn receive(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (provider_name, raw_id) = path.into_inner();
    // An unknown id (or another provider's) gets the same answer as a wrong token: the answer
    // must not tell a guesser which generation ids exist.
    let refused = || ApiError::unauthorized("invalid_token", "the callback token is not valid");
    let id = Uuid::parse_str(&raw_id).map_err(|_| refused())?;
    let row = read::find(&state.db, id)
        .await?
        .filter(|row| row.provider == provider_name);
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    let Some(row) =
        row.filter(|row| bool::from(token.as_bytes().ct_eq(row.callback_token.as_bytes())))
    else {
        tracing::warn!(generation_id = %id, provider = %provider_name, "webhook with a wrong token or for no such generation refused");
        return Err(refused());
    };
    let body = read_limited(
        &mut payload.into_inner(),
        state.settings.http.callback_limit_bytes,
    )
    .await?;
    let provider = state.providers.get(&provider_name).ok_or_else(refused)?;
    if let Err(rejected) =
        provider.verify_callback(&headers(&request), &body, state.clock.now().timestamp())
    {
        tracing::warn!(generation_id = %id, provider = %provider_name, %rejected, "webhook with a bad signature refused");
        return Err(ApiError::unauthorized(
            "invalid_signature",
            format!("the callback's signature is not valid: {rejected}"),
        ));
    }
    let (task_id, _) = provider.parse_callback(&body).map_err(|error| {
        ApiError::malformed(
            "malformed_callback",
            format!("callback not understood: {error}"),
        )
    })?;
    if row
        .provider_task_id
        .as_deref()
        .is_some_and(|known| known != task_id)
    {
        return Err(ApiError::invalid(
            "unknown_task",
            "the callback names another task",
        ));
    }
    let dedup_key = format!("{provider_name}:{id}:{}", hex(&Sha256::digest(&body)));
    let callback = NewCallback {
        workflow_id: id,
        provider: provider_name,
        dedup_key,
        payload: String::from_utf8_lossy(&body).into_owned(),
    };
    let stored = state.workflows.store_callback(callback).await?;
    if !stored {
        tracing::debug!(generation_id = %id, "replayed webhook ignored");
    } else {
        crate::control::look_now(&state, id);
    }
    Ok(HttpResponse::Ok().json(Received { received: true }))
}

/// The request's headers in the HTTP types the provider adapters use.
fn headers(request: &HttpRequest) -> reqwest::header::HeaderMap {
    request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            let name = reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
            let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).ok()?;
            Some((name, value))
        })
        .collect()
}
