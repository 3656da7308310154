//! Accounts for operators: search and list (`GET /v1/ops/accounts`), one account's whole
//! picture (`GET /v1/ops/accounts/{id}`), and the actions on it — the idempotent grant,
//! disable and enable, revoking its keys and issuing a new one, voiding a grant's unused
//! remainder. Each action checks its input, appends its audit row, then runs.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::ledger::VoidOutcome;
use atelier_actors::ledger::read::{self as ledger_read, EntryFilter};
use atelier_actors::workflow::read as workflow_read;
use atelier_entities::{account, credit_package, hold, workflow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{action, checked_reason};
use crate::accounts::{self, MAX_LIVE_KEYS, MAX_QUERY_LEN, Rotation};
use crate::api::accounts::{GrantRequest, GrantView, run_grant};
use crate::api::auth::{Admin, Operator};
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::ledger::EntryView;
use crate::api::openapi::ErrorBody;
use crate::api::query::{Page, Params};
use crate::api::{account_not_found, parse_account_id};
use crate::ops::audit;
use crate::state::AppState;

/// How many of each kind of row an account's page shows, newest (or, for holds, oldest) first.
const RECENT: u64 = 20;
const OPEN_HOLDS: u64 = 50;

/// An account as the ops API lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    id: Uuid,
    name: Option<String>,
    created_at: DateTime<Utc>,
    disabled: bool,
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
    /// Spendable now (expiry applied) and held.
    available: i64,
    held: i64,
}

impl AccountView {
    fn new(row: account::Model, (available, held): (i64, i64)) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            disabled: row.disabled_at.is_some(),
            disabled_at: row.disabled_at,
            disabled_reason: row.disabled_reason,
            available,
            held,
        }
    }
}

/// A package with every bucket (named apart from the balance's `PackageView`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OpsPackageView)]
pub struct PackageView {
    id: Uuid,
    reference: String,
    credits: i64,
    remaining: i64,
    held: i64,
    consumed: i64,
    expired: i64,
    voided: i64,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<credit_package::Model> for PackageView {
    fn from(package: credit_package::Model) -> Self {
        Self {
            id: package.id,
            reference: package.reference,
            credits: package.credits,
            remaining: package.remaining,
            held: package.held,
            consumed: package.consumed,
            expired: package.expired,
            voided: package.voided,
            expires_at: package.expires_at,
            created_at: package.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct HoldView {
    id: Uuid,
    amount: i64,
    generation_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<hold::Model> for HoldView {
    fn from(row: hold::Model) -> Self {
        Self {
            id: row.id,
            amount: row.amount,
            generation_id: row.generation_id,
            created_at: row.created_at,
        }
    }
}

/// A generation as an account's page lists it: the row's facts, no URLs.
#[derive(Debug, Serialize, ToSchema)]
struct GenerationRow {
    id: Uuid,
    state: &'static str,
    provider: String,
    cost: i64,
    charge: Option<i64>,
    error_code: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<workflow::Model> for GenerationRow {
    fn from(row: workflow::Model) -> Self {
        Self {
            id: row.id,
            state: row.state.as_str(),
            provider: row.provider,
            cost: row.cost,
            charge: row.charge,
            error_code: row.error_code,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// `query`: trimmed, 1 to `MAX_QUERY_LEN` characters.
fn search_text(params: &Params) -> Result<Option<String>, ApiError> {
    let must_be = format!("1 to {MAX_QUERY_LEN} characters");
    params.parsed("query", "invalid_query", &must_be, |raw| {
        let query = raw.trim();
        (!query.is_empty() && query.chars().count() <= MAX_QUERY_LEN).then(|| query.to_owned())
    })
}

#[utoipa::path(
    get, path = "/v1/ops/accounts", tag = "ops",
    security(("operator_token" = [])),
    params(
        ("query" = Option<String>, Query, min_length = 1, max_length = 200, description = "An account id or its start, or part of a name (trimmed)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<uuid::Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The accounts, newest first", body = Page<AccountView, String>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_query`, `invalid_limit`, `invalid_cursor`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn list(
    _: Operator,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["query", "limit", "cursor"])?;
    let query = search_text(&params)?;
    let limit = params.limit()?;
    let before = params.cursor(|raw| Uuid::parse_str(raw).ok())?;
    let (rows, next) = accounts::search(&state.db, query.as_deref(), before, limit).await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let balances = ledger_read::balances_of(&state.db, &ids, state.clock.now()).await?;
    let items: Vec<AccountView> = rows
        .into_iter()
        .map(|row| {
            let balance = balances.get(&row.id).copied().unwrap_or_default();
            AccountView::new(row, balance)
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct AccountDetail {
    #[serde(flatten)]
    account: AccountView,
    live_keys: usize,
    /// Unexpired packages with credits left or held, in the order holds take them.
    packages: Vec<PackageView>,
    open_holds: Vec<HoldView>,
    recent_entries: Vec<EntryView>,
    recent_generations: Vec<GenerationRow>,
}

#[utoipa::path(
    get, path = "/v1/ops/accounts/{account_id}", tag = "ops",
    security(("operator_token" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account with its keys, packages, open holds, recent entries and generations", body = AccountDetail),
        (status = 404, description = "`account_not_found`", body = ErrorBody)
    )
)]
pub async fn detail(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = existing(&state, &path).await?;
    let now = state.clock.now();
    let db = &state.db;
    let balance = ledger_read::balance(db, row.id, now).await?;
    let keys = accounts::live_keys(db, row.id, now).await?;
    let holds = ledger_read::open_holds(db, row.id, OPEN_HOLDS).await?;
    let filter = EntryFilter::default();
    let (entries, _) = ledger_read::entries_page(db, row.id, &filter, None, RECENT).await?;
    let (generations, _) = workflow_read::list(db, row.id, None, None, RECENT).await?;
    Ok(HttpResponse::Ok().json(AccountDetail {
        account: AccountView::new(row, (balance.available, balance.held)),
        live_keys: keys.len(),
        packages: balance
            .packages
            .into_iter()
            .map(PackageView::from)
            .collect(),
        open_holds: holds.into_iter().map(HoldView::from).collect(),
        recent_entries: entries.into_iter().map(EntryView::from).collect(),
        recent_generations: generations.into_iter().map(GenerationRow::from).collect(),
    }))
}

/// The account the path names, or 404 `account_not_found`.
async fn existing(state: &AppState, raw_id: &str) -> Result<account::Model, ApiError> {
    let account_id = parse_account_id(raw_id)?;
    accounts::find(&state.db, account_id)
        .await?
        .ok_or_else(account_not_found)
}

/// The body of an action that takes a reason (required or not, as the action says).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// For the audit log: 1 to 1000 bytes once trimmed; required by some actions.
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// Appends the audit row of `what` on the account, before the action runs.
async fn record(
    state: &AppState,
    request: &HttpRequest,
    what: &'static str,
    target: (&'static str, String),
    reason: Option<String>,
) -> Result<(), ApiError> {
    let row = action(request, what, target.0, Some(target.1), reason);
    audit::record(&state.db, row, state.clock.now()).await?;
    Ok(())
}

#[utoipa::path(
    post, path = "/v1/ops/accounts/{account_id}/grants", tag = "ops",
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
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<GrantRequest>,
) -> Result<HttpResponse, ApiError> {
    let row = existing(&state, &path).await?;
    let grant = body.0.check()?;
    let target = ("account", row.id.to_string());
    record(&state, &request, "account.grant", target, None).await?;
    run_grant(&state, row.id, grant).await
}

#[utoipa::path(
    post, path = "/v1/ops/accounts/{account_id}/disable", tag = "ops",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    request_body(content = Option<ReasonBody>, description = "`reason` is required"),
    responses(
        (status = 200, description = "The account, disabled: its keys answer 403 `account_disabled`", body = AccountView),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 409, description = "`already_disabled`", body = ErrorBody),
        (status = 422, description = "`missing_reason`, `invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn disable(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    switch(&state, &request, &path, body.0.unwrap_or_default(), true).await
}

#[utoipa::path(
    post, path = "/v1/ops/accounts/{account_id}/enable", tag = "ops",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    request_body(content = Option<ReasonBody>, description = "May be empty or `null`"),
    responses(
        (status = 200, description = "The account, enabled", body = AccountView),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 409, description = "`not_disabled`", body = ErrorBody),
        (status = 422, description = "`invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn enable(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    switch(&state, &request, &path, body.0.unwrap_or_default(), false).await
}

/// Disables (`disable`; a reason is required) or enables the account, which must not be so
/// already (409).
async fn switch(
    state: &AppState,
    request: &HttpRequest,
    raw_id: &str,
    body: ReasonBody,
    disable: bool,
) -> Result<HttpResponse, ApiError> {
    let row = existing(state, raw_id).await?;
    let reason = checked_reason(body.reason, disable)?;
    let (what, refusal) = if disable {
        (
            "account.disable",
            ("already_disabled", "the account is disabled already"),
        )
    } else {
        (
            "account.enable",
            ("not_disabled", "the account is not disabled"),
        )
    };
    if row.disabled_at.is_some() == disable {
        return Err(ApiError::conflict(refusal.0, refusal.1));
    }
    let target = ("account", row.id.to_string());
    record(state, request, what, target, reason.clone()).await?;
    let now = state.clock.now();
    let disabled = reason.filter(|_| disable);
    let row = accounts::set_disabled(&state.db, row.id, disabled, now)
        .await?
        .ok_or_else(account_not_found)?;
    tracing::info!(account_id = %row.id, disabled = row.disabled_at.is_some(), "account status set");
    let balance = ledger_read::balance(&state.db, row.id, now).await?;
    Ok(HttpResponse::Ok().json(AccountView::new(row, (balance.available, balance.held))))
}

#[derive(Debug, Serialize, ToSchema)]
struct Revoked {
    account_id: Uuid,
    /// Keys that worked until now.
    revoked: u64,
}

#[utoipa::path(
    post, path = "/v1/ops/accounts/{account_id}/revoke-keys", tag = "ops",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    request_body(content = Option<ReasonBody>, description = "`reason` is required"),
    responses(
        (status = 200, description = "How many keys worked until now", body = Revoked),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 422, description = "`missing_reason`, `invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn revoke_keys(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    let row = existing(&state, &path).await?;
    let reason = checked_reason(body.0.unwrap_or_default().reason, true)?;
    let target = ("account", row.id.to_string());
    record(&state, &request, "account.revoke_keys", target, reason).await?;
    let revoked = accounts::revoke_keys(&state.db, row.id, state.clock.now()).await?;
    tracing::info!(account_id = %row.id, revoked, "API keys revoked");
    Ok(HttpResponse::Ok().json(Revoked {
        account_id: row.id,
        revoked,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct Issued {
    id: Uuid,
    account_id: Uuid,
    /// The key itself: shown this once.
    api_key: String,
    created_at: DateTime<Utc>,
    /// Until when the account's other keys that still work keep working.
    previous_keys_expire_at: DateTime<Utc>,
}

/// A new key for the account, as a rotation by the account would make it: its other keys that
/// still work get `api_keys.rotation_grace_secs` (after a revocation there are none).
#[utoipa::path(
    post, path = "/v1/ops/accounts/{account_id}/api-keys", tag = "ops",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    request_body(content = Option<ReasonBody>, description = "May be empty or `null`"),
    responses(
        (status = 201, description = "The new key, shown this once", body = Issued),
        (status = 404, description = "`account_not_found`", body = ErrorBody),
        (status = 409, description = "`too_many_keys`: the account holds 10 keys that work", body = ErrorBody),
        (status = 422, description = "`invalid_reason`, or a body field error", body = ErrorBody)
    )
)]
pub async fn issue_key(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    let row = existing(&state, &path).await?;
    let reason = checked_reason(body.0.unwrap_or_default().reason, false)?;
    let secs = state.settings.api_keys.rotation_grace_secs;
    let grace = chrono::Duration::seconds(i64::try_from(secs).map_err(ApiError::internal)?);
    let target = ("account", row.id.to_string());
    record(&state, &request, "account.issue_key", target, reason).await?;
    let now = state.clock.now();
    match accounts::rotate_key(&state.db, row.id, grace, now).await? {
        Rotation::Rotated(new) => {
            tracing::info!(account_id = %row.id, key_id = %new.row.id, "API key issued by the operator");
            Ok(HttpResponse::Created().json(Issued {
                id: new.row.id,
                account_id: row.id,
                api_key: new.secret,
                created_at: new.row.created_at,
                previous_keys_expire_at: now + grace,
            }))
        }
        Rotation::TooManyKeys => Err(ApiError::conflict(
            "too_many_keys",
            format!("this account already holds {MAX_LIVE_KEYS} keys that work; revoke them first"),
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct Voided {
    /// Credits the void took.
    voided: i64,
    package: PackageView,
}

#[utoipa::path(
    post, path = "/v1/ops/accounts/{account_id}/grants/{package_id}/void", tag = "ops",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The account's id"), ("package_id" = String, Path, description = "The grant's id")),
    request_body(content = Option<ReasonBody>, description = "`reason` is required"),
    responses(
        (status = 200, description = "What was voided, and the grant now", body = Voided),
        (status = 404, description = "`account_not_found`; `package_not_found`: the account has no such grant", body = ErrorBody),
        (status = 409, description = "`nothing_to_void`: every credit is consumed, held or expired; `already_voided`", body = ErrorBody),
        (status = 422, description = "`missing_reason`, `invalid_reason`, or a body field error", body = ErrorBody),
        (status = 503, description = "`database_busy`: nothing was written, try again; `Retry-After: 1`", body = ErrorBody)
    )
)]
pub async fn void(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: ApiJson<Option<ReasonBody>>,
) -> Result<HttpResponse, ApiError> {
    let (account_id, package_id) = path.into_inner();
    let row = existing(&state, &account_id).await?;
    let package_id = Uuid::parse_str(&package_id).map_err(|_| package_not_found())?;
    let reason = checked_reason(body.0.unwrap_or_default().reason, true)?;
    let target = ("grant", package_id.to_string());
    record(&state, &request, "grant.void", target, reason).await?;
    match state.ledger.void(row.id, package_id).await? {
        VoidOutcome::Voided { voided, package } => {
            tracing::info!(account_id = %row.id, %package_id, voided, "grant voided");
            Ok(HttpResponse::Ok().json(Voided {
                voided,
                package: package.into(),
            }))
        }
        VoidOutcome::NothingToVoid => Err(ApiError::conflict(
            "nothing_to_void",
            "the grant has no unused credits: every one is consumed, held or expired",
        )),
        VoidOutcome::AlreadyVoided => Err(ApiError::conflict(
            "already_voided",
            "the grant was voided before",
        )),
        VoidOutcome::PackageNotFound => Err(package_not_found()),
        VoidOutcome::AccountNotFound => Err(account_not_found()),
    }
}

fn package_not_found() -> ApiError {
    ApiError::not_found("package_not_found", "the account has no such grant")
}
