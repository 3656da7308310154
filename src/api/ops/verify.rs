//! `POST /v1/ops/verify`: the invariant check of `atelier verify` (docs/design.md §4), run by
//! the server over one snapshot and answered as JSON, within `VERIFY_TIMEOUT`.
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::action;
use super::bounded::within;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::openapi::ErrorBody;
use crate::api::query::Params;
use crate::ops::{audit, verify};
use crate::state::AppState;

/// The longest a verify may run; past it the answer is 504 `verify_timeout` (run
/// `atelier verify` for a database that needs longer).
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize, ToSchema)]
struct ViolationView {
    invariant: u8,
    subject: String,
    detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct VerifyView {
    ok: bool,
    violations: Vec<ViolationView>,
    /// `{"invariants", "packages", "holds", "ledger_entries", "workflows"}`: what was checked.
    #[schema(value_type = Object)]
    checked: verify::Checked,
}

#[utoipa::path(
    post, path = "/v1/ops/verify", tag = "ops",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The invariants checked; broken ones are `ok: false` with their violations", body = VerifyView),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`unknown_parameter`: it takes none", body = ErrorBody),
        (status = 504, description = "`verify_timeout`: it took longer than 120 s; run `atelier verify`", body = ErrorBody)
    )
)]
pub async fn run(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&request, &[])?;
    let now = state.clock.now();
    audit::record(
        &state.db,
        action(&request, "system.verify", "system", None, None),
        now,
    )
    .await?;
    let message = format!(
        "verify did not finish within {} s; run `atelier verify` instead",
        VERIFY_TIMEOUT.as_secs()
    );
    let silent = atelier_actors::progress::Silent;
    let checked = verify::run(
        &state.db,
        &state.storage,
        now,
        Some(VERIFY_TIMEOUT),
        &silent,
    );
    let report = within(VERIFY_TIMEOUT, "verify_timeout", &message, checked).await?;
    let violations: Vec<ViolationView> = report
        .violations
        .into_iter()
        .map(|violation| ViolationView {
            invariant: violation.invariant,
            subject: violation.subject,
            detail: violation.detail,
        })
        .collect();
    if !violations.is_empty() {
        tracing::warn!(
            violations = violations.len(),
            "verify found invariant violations"
        );
    }
    Ok(HttpResponse::Ok().json(VerifyView {
        ok: violations.is_empty(),
        violations,
        checked: report.checked,
    }))
}
