//! Balances: the caller's own (`GET /v1/balance`) or any account's for the operator.
use actix_web::{HttpResponse, web};
use atelier_actors::ledger::read::{self, Balance};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Caller, Client};
use super::error::ApiError;
use super::openapi::ErrorBody;
use crate::accounts;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
struct PackageView {
    id: Uuid,
    credits: i64,
    remaining: i64,
    held: i64,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct BalanceView {
    account_id: Uuid,
    available: i64,
    held: i64,
    packages: Vec<PackageView>,
}

fn view(account_id: Uuid, balance: Balance) -> BalanceView {
    BalanceView {
        account_id,
        available: balance.available,
        held: balance.held,
        packages: balance
            .packages
            .into_iter()
            .map(|package| PackageView {
                id: package.id,
                credits: package.credits,
                remaining: package.remaining,
                held: package.held,
                expires_at: package.expires_at,
            })
            .collect(),
    }
}

#[utoipa::path(
    get, path = "/v1/balance", tag = "client",
    security(("api_key" = [])),
    responses((status = 200, description = "The caller's balance", body = BalanceView))
)]
pub async fn own(
    Client(account): Client,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let balance = read::balance(&state.db, account.id, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(view(account.id, balance)))
}

/// The operator sees any account; an account sees only itself (another's id is 404, so ids
/// cannot be probed).
#[utoipa::path(
    get, path = "/v1/accounts/{account_id}/balance", tag = "admin",
    security(("admin_token" = []), ("api_key" = [])),
    params(("account_id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account's balance", body = BalanceView),
        (status = 404, description = "`account_not_found`: unknown, not an id, or another account's (with an account key)", body = ErrorBody)
    )
)]
pub async fn of_account(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = super::parse_account_id(&path)?;
    let visible = match caller {
        Caller::Admin | Caller::Observer => accounts::find(&state.db, account_id).await?.is_some(),
        Caller::Account(account) if account.disabled_at.is_some() => {
            return Err(super::auth::account_disabled());
        }
        Caller::Account(account) => account.id == account_id,
    };
    if !visible {
        return Err(super::account_not_found());
    }
    let balance = read::balance(&state.db, account_id, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(view(account_id, balance)))
}
