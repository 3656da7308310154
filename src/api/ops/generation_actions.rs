//! The operator's actions on one generation: cancel (release a live one), wake (run its next
//! step now) and retry (re-run a released one as a new generation). Each checks what it can
//! before anything is written, then appends its audit row, then acts.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::Credits;
use atelier_actors::ledger::read as ledger;
use atelier_actors::workflow::inputs::Inputs;
use atelier_actors::workflow::{CreateOutcome, NewWorkflow, WorkflowState};
use atelier_entities::workflow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::generations::{OpsGeneration, find};
use super::{action, checked_reason};
use crate::accounts::random_token;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::generations::{
    already_settled, insufficient_credits, missing_upload, release_if_an_upload_vanished,
};
use crate::api::json::ApiJson;
use crate::api::openapi::ErrorBody;
use crate::control::{self, Canceled, Woken};
use crate::ops::audit;
use crate::state::AppState;

/// The body of a cancel or a wake.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// For the audit log: at most 1000 bytes once trimmed.
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Another configured provider to run on (the original's by default).
    #[serde(default)]
    provider: Option<String>,
    /// For the audit log: at most 1000 bytes once trimmed.
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Acted {
    generation: OpsGeneration,
}

fn acted(status: actix_web::http::StatusCode, row: workflow::Model) -> HttpResponse {
    HttpResponse::build(status).json(Acted {
        generation: row.into(),
    })
}

#[utoipa::path(
    post, path = "/v1/ops/generations/{id}/cancel", tag = "ops",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    request_body(content = Option<ActionBody>, description = "May be empty or `null`"),
    responses(
        (status = 200, description = "The generation, released with `canceled` (or released already: nothing changed)", body = Acted),
        (status = 404, description = "`generation_not_found`", body = ErrorBody),
        (status = 409, description = "`already_settled`", body = ErrorBody),
        (status = 422, description = "`invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn cancel(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<ActionBody>>,
) -> Result<HttpResponse, ApiError> {
    let refuse =
        |row: &workflow::Model| (row.state == WorkflowState::Settled).then(already_settled);
    let row = audited(
        &state,
        &request,
        &path,
        body.0.unwrap_or_default(),
        "generation.cancel",
        refuse,
    )
    .await?;
    match control::cancel(&state, row.id, "canceled by an operator").await? {
        Canceled::Released(row) | Canceled::AlreadyReleased(row) => {
            Ok(acted(actix_web::http::StatusCode::OK, *row))
        }
        Canceled::Settled => Err(already_settled()),
        Canceled::NotFound => Err(ApiError::not_found(
            "generation_not_found",
            "no such generation",
        )),
    }
}

/// The generation in the path, once `refuse` finds nothing wrong with it and the audit row of
/// `what` is appended.
async fn audited(
    state: &AppState,
    request: &HttpRequest,
    path: &str,
    body: ActionBody,
    what: &'static str,
    refuse: impl Fn(&workflow::Model) -> Option<ApiError>,
) -> Result<workflow::Model, ApiError> {
    let reason = checked_reason(body.reason, false)?;
    let row = find(state, path).await?;
    if let Some(refusal) = refuse(&row) {
        return Err(refusal);
    }
    let entry = action(
        request,
        what,
        "generation",
        Some(row.id.to_string()),
        reason,
    );
    audit::record(&state.db, entry, state.clock.now()).await?;
    Ok(row)
}

fn terminal(row: &workflow::Model) -> ApiError {
    ApiError::conflict(
        "terminal",
        format!("the generation is {}: nothing to run", row.state.as_str()),
    )
}

#[utoipa::path(
    post, path = "/v1/ops/generations/{id}/wake", tag = "ops",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    request_body(content = Option<ActionBody>, description = "May be empty or `null`"),
    responses(
        (status = 200, description = "The generation, due now; the engine steps it", body = Acted),
        (status = 404, description = "`generation_not_found`", body = ErrorBody),
        (status = 409, description = "`terminal`: settled or released, nothing to run", body = ErrorBody),
        (status = 422, description = "`invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn wake(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<ActionBody>>,
) -> Result<HttpResponse, ApiError> {
    let refuse = |row: &workflow::Model| row.state.is_terminal().then(|| terminal(row));
    let row = audited(
        &state,
        &request,
        &path,
        body.0.unwrap_or_default(),
        "generation.wake",
        refuse,
    )
    .await?;
    match control::wake(&state, row.id).await? {
        Woken::Woken(row) => Ok(acted(actix_web::http::StatusCode::OK, *row)),
        Woken::Terminal(row) => Err(terminal(&row)),
        Woken::NotFound => Err(ApiError::not_found(
            "generation_not_found",
            "no such generation",
        )),
    }
}

#[utoipa::path(
    post, path = "/v1/ops/generations/{id}/retry", tag = "ops",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    request_body(content = Option<RetryBody>, description = "May be empty or `null`"),
    responses(
        (status = 201, description = "The new generation, `retry_of` naming the original", body = Acted),
        (status = 402, description = "`insufficient_credits`", body = ErrorBody),
        (status = 404, description = "`generation_not_found`", body = ErrorBody),
        (status = 409, description = "`not_released`: only a released generation is retried; `input_unavailable`: an input upload was deleted since", body = ErrorBody),
        (status = 422, description = "`unknown_provider`, `invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn retry(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<RetryBody>>,
) -> Result<HttpResponse, ApiError> {
    // The document calls the body optional, which JSON `null` says too.
    let body = body.0.unwrap_or_default();
    let reason = checked_reason(body.reason, false)?;
    let row = find(&state, &path).await?;
    let provider = body.provider.unwrap_or_else(|| row.provider.clone());
    let cost = state
        .settings
        .providers
        .get(&provider)
        .map(|settings| settings.cost)
        .ok_or_else(|| {
            ApiError::invalid(
                "unknown_provider",
                format!("provider: no configured provider {provider:?}"),
            )
        })?;
    if row.state != WorkflowState::Released {
        return Err(ApiError::conflict(
            "not_released",
            format!(
                "only a released generation is retried; this one is {}",
                row.state.as_str()
            ),
        ));
    }
    inputs_still_there(&state, &row).await?;
    // A shortcut only: the create decides again under lock.
    let available = ledger::balance(&state.db, row.account_id, state.clock.now())
        .await?
        .available;
    if available < cost {
        return Err(insufficient_credits(cost, available));
    }
    let entry = action(
        &request,
        "generation.retry",
        "generation",
        Some(row.id.to_string()),
        reason,
    );
    audit::record(&state.db, entry, state.clock.now()).await?;
    let created = create_retry(&state, &row, provider, cost).await?;
    release_if_an_upload_vanished(&state, row.account_id, &created).await?;
    tracing::info!(generation_id = %created.id, retry_of = %row.id, provider = %created.provider, "generation retried as new");
    Ok(acted(actix_web::http::StatusCode::CREATED, created))
}

/// The inputs of `row` can be read again: each upload it names still exists (its object is
/// deleted with it once no live generation uses it).
async fn inputs_still_there(state: &AppState, row: &workflow::Model) -> Result<(), ApiError> {
    let inputs = Inputs::from_json(&row.inputs).map_err(|_| {
        ApiError::conflict("input_unavailable", "the generation's inputs do not read")
    })?;
    match missing_upload(state, row.account_id, inputs).await? {
        Some((field, id)) => Err(ApiError::conflict(
            "input_unavailable",
            format!("{field}: upload {id} was deleted; the generation cannot run again"),
        )),
        None => Ok(()),
    }
}

/// A new generation for `row`'s account and inputs on `provider`, holding `cost` again.
async fn create_retry(
    state: &AppState,
    row: &workflow::Model,
    provider: String,
    cost: i64,
) -> Result<workflow::Model, ApiError> {
    let deadline_at = atelier_actors::clock::saturating_after(
        state.clock.now(),
        state.settings.workflow.overall_deadline_secs,
    );
    let new = NewWorkflow {
        id: Uuid::now_v7(),
        account_id: row.account_id,
        provider,
        cost: Credits::parse(cost).map_err(ApiError::internal)?,
        inputs: row.inputs.clone(),
        callback_token: random_token("cb_"),
        deadline_at,
        idempotency: None,
        retry_of: Some(row.id),
    };
    match state.workflows.create(new).await? {
        CreateOutcome::Created(created) => Ok(created),
        CreateOutcome::InsufficientCredits {
            available,
            requested,
        } => Err(insufficient_credits(requested, available)),
        outcome @ (CreateOutcome::Replayed(_) | CreateOutcome::KeyConflict) => Err(
            ApiError::internal(format!("a retry without a key answered {outcome:?}")),
        ),
    }
}
