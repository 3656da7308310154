//! Admin endpoints: create accounts and grant them credit packages.
use actix_web::{HttpResponse, web};
use atelier_actors::Credits;
use atelier_actors::credits::CreditsError;
use atelier_actors::ledger::GrantOutcome;
use atelier_actors::ledger::book::is_expired;
use atelier_entities::credit_package;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Admin;
use super::error::ApiError;
use super::json::ApiJson;
use super::openapi::ErrorBody;
use crate::accounts;
use crate::state::AppState;

const MAX_REFERENCE_LEN: usize = 255;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// 1 to 200 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
}

/// A new account as the API and the CLI show it: the only time its key is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountCreated {
    id: Uuid,
    name: Option<String>,
    api_key: String,
    created_at: DateTime<Utc>,
}

impl From<accounts::NewAccount> for AccountCreated {
    fn from(created: accounts::NewAccount) -> Self {
        Self {
            id: created.account.id,
            name: created.account.name,
            api_key: created.api_key,
            created_at: created.account.created_at,
        }
    }
}

#[utoipa::path(
    post, path = "/v1/accounts", tag = "admin",
    security(("admin_token" = [])),
    request_body(content = Option<CreateAccount>, description = "May be empty or `null`"),
    responses(
        (status = 201, description = "The account, with its key: the only time it is shown", body = AccountCreated),
        (status = 422, description = "`invalid_name`: blank or over 200 characters; or a body field error", body = ErrorBody)
    )
)]
pub async fn create(
    _: Admin,
    state: web::Data<AppState>,
    body: ApiJson<Option<CreateAccount>>,
) -> Result<HttpResponse, ApiError> {
    // The document calls the body optional, which JSON `null` says too.
    let name = body.0.and_then(|body| body.name);
    accounts::check_name(name.as_deref())
        .map_err(|error| ApiError::invalid("invalid_name", format!("name: {error}")))?;
    let created = accounts::create(&state.db, name, state.clock.now()).await?;
    tracing::info!(account_id = %created.account.id, "account created");
    Ok(HttpResponse::Created().json(AccountCreated::from(created)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// A number of any size, so that overflowing and fractional amounts get the same
    /// `invalid_credits` as zero or negative ones.
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64)]
    credits: serde_json::Number,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    /// 1 to 255 bytes after trimming; unique per account.
    #[schema(min_length = 1, max_length = 255)]
    reference: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    id: Uuid,
    account_id: Uuid,
    credits: i64,
    remaining: i64,
    held: i64,
    expires_at: Option<DateTime<Utc>>,
    reference: String,
    created_at: DateTime<Utc>,
}

impl GrantView {
    pub fn new(package: credit_package::Model, now: DateTime<Utc>) -> Self {
        Self {
            id: package.id,
            account_id: package.account_id,
            credits: package.credits,
            remaining: if is_expired(&package, now) {
                0
            } else {
                package.remaining
            },
            held: package.held,
            expires_at: package.expires_at,
            reference: package.reference,
            created_at: package.created_at,
        }
    }
}

/// A grant request that passed every check of its own: what the ledger is asked.
pub struct CheckedGrant {
    credits: Credits,
    expires_at: Option<DateTime<Utc>>,
    reference: String,
}

impl GrantRequest {
    /// Checks the request's fields, in the order docs/api.md gives.
    pub fn check(self) -> Result<CheckedGrant, ApiError> {
        let credits = self
            .credits
            .as_i64()
            .ok_or(CreditsError::NotAnInteger)
            .and_then(Credits::parse)
            .map_err(|error| ApiError::invalid("invalid_credits", format!("credits: {error}")))?;
        let reference = self.reference.trim().to_owned();
        if reference.is_empty() || reference.len() > MAX_REFERENCE_LEN {
            return Err(ApiError::invalid(
                "invalid_reference",
                format!("reference: must be 1 to {MAX_REFERENCE_LEN} bytes"),
            ));
        }
        Ok(CheckedGrant {
            credits,
            expires_at: self
                .expires_at
                .map(atelier_actors::clock::truncate_to_micros),
            reference,
        })
    }
}

#[utoipa::path(
    post, path = "/v1/accounts/{account_id}/grants", tag = "admin",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    request_body = GrantRequest,
    responses(
        (status = 201, description = "The new grant", body = GrantView),
        (status = 200, description = "The existing grant with this reference and the same fields", body = GrantView),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 409, description = "`reference_conflict`: the reference is used by a grant with other fields", body = ErrorBody),
        (status = 422, description = "`invalid_credits`, `invalid_reference`, `expires_at_in_past`, or a body field error", body = ErrorBody),
        (status = 503, description = "`database_busy`: nothing was written, try again; `Retry-After: 1`", body = ErrorBody)
    )
)]
pub async fn grant(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: ApiJson<GrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let account_id = super::parse_account_id(&path)?;
    run_grant(&state, account_id, body.0.check()?).await
}

/// The idempotent grant (docs/api.md, `POST /v1/accounts/{id}/grants`): 201 for a new package,
/// 200 for the one the reference already made; the ops API's grant runs it too.
pub async fn run_grant(
    state: &AppState,
    account_id: Uuid,
    grant: CheckedGrant,
) -> Result<HttpResponse, ApiError> {
    let CheckedGrant {
        credits,
        expires_at,
        reference,
    } = grant;
    let now = state.clock.now();
    match state
        .ledger
        .grant(account_id, credits, expires_at, reference)
        .await?
    {
        GrantOutcome::Created(package) => {
            tracing::info!(%account_id, package_id = %package.id, credits = package.credits, "credits granted");
            Ok(HttpResponse::Created().json(GrantView::new(package, now)))
        }
        GrantOutcome::Existing(package) => {
            Ok(HttpResponse::Ok().json(GrantView::new(package, now)))
        }
        GrantOutcome::ReferenceConflict => Err(ApiError::conflict(
            "reference_conflict",
            "reference: already used for a grant with other fields",
        )),
        GrantOutcome::AlreadyExpired => Err(ApiError::invalid(
            "expires_at_in_past",
            "expires_at: must be in the future",
        )),
        GrantOutcome::AccountNotFound => Err(super::account_not_found()),
    }
}
