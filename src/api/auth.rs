//! Who is calling: the operator (admin token from configuration), a read-only operator (the
//! ops read token, when configured) or an account (one of its API keys that still works,
//! looked up by SHA-256 hash; the key itself is never stored or logged).
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use atelier_entities::account;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::accounts;
use crate::state::AppState;

/// The caller, as proven by its bearer token.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    /// The read-only operator: sees what the admin sees, changes nothing.
    Observer,
    Account(account::Model),
}

/// Only the operator may call: every write of the ops API and the admin endpoints.
pub struct Admin;

/// The operator or the read-only operator: the reads of the ops API and the dashboard.
pub struct Operator {
    /// Whether this caller may act (the admin token) or only look.
    pub may_act: bool,
}

/// Only an account that is not disabled may call; the account is the caller's own.
pub struct Client(pub account::Model);

pub(crate) fn bearer(request: &HttpRequest) -> Result<String, ApiError> {
    let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing_credentials", "send Authorization: Bearer <token>")
    })?;
    let value = header.to_str().map_err(|_| {
        ApiError::unauthorized(
            "invalid_credentials",
            "the Authorization header is not valid text",
        )
    })?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_credentials",
                "expected Authorization: Bearer <token>",
            )
        })?;
    Ok(token.to_owned())
}

async fn identify(state: web::Data<AppState>, token: String) -> Result<Caller, ApiError> {
    if bool::from(token.as_bytes().ct_eq(state.admin_token.as_bytes())) {
        return Ok(Caller::Admin);
    }
    if let Some(read_token) = &state.settings.ops_read_token
        && bool::from(token.as_bytes().ct_eq(read_token.expose().as_bytes()))
    {
        return Ok(Caller::Observer);
    }
    match accounts::find_by_api_key(&state.db, &token, state.clock.now()).await? {
        Some(account) => Ok(Caller::Account(account)),
        None => Err(ApiError::unauthorized(
            "invalid_credentials",
            "the bearer token is not valid",
        )),
    }
}

/// What a disabled account's keys get on every client route.
pub(crate) fn account_disabled() -> ApiError {
    ApiError::forbidden_with(
        "account_disabled",
        "this account is disabled; ask the operator",
    )
}

fn state(request: &HttpRequest) -> web::Data<AppState> {
    request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone()
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(request);
        let state = state(request);
        Box::pin(async move { identify(state, token?).await })
    }
}

/// Resolves the caller, then lets `role` accept it or answer 403.
fn with_role<T: 'static>(
    request: &HttpRequest,
    payload: &mut Payload,
    role: fn(Caller) -> Result<T, ApiError>,
) -> Pin<Box<dyn Future<Output = Result<T, ApiError>>>> {
    let caller = Caller::from_request(request, payload);
    Box::pin(async move { role(caller.await?) })
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        with_role(request, payload, |caller| match caller {
            Caller::Admin => Ok(Admin),
            Caller::Observer => Err(ApiError::forbidden_with(
                "read_only",
                "the read-only operator token may not change anything",
            )),
            Caller::Account(_) => Err(ApiError::forbidden("this endpoint needs the admin token")),
        })
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        with_role(request, payload, |caller| match caller {
            Caller::Admin => Ok(Operator { may_act: true }),
            Caller::Observer => Ok(Operator { may_act: false }),
            Caller::Account(_) => Err(ApiError::forbidden("this endpoint needs an operator token")),
        })
    }
}

impl FromRequest for Client {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        with_role(request, payload, |caller| match caller {
            // Its keys still identify it, so that the answer can say why: disabled, not unknown.
            Caller::Account(account) if account.disabled_at.is_some() => Err(account_disabled()),
            Caller::Account(account) => Ok(Client(account)),
            Caller::Admin | Caller::Observer => Err(ApiError::forbidden(
                "this endpoint needs an account's API key",
            )),
        })
    }
}
