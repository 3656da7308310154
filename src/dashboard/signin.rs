//! `GET /ops/login`, `POST /ops/login` and `POST /ops/logout`: the operator gives a token
//! once and gets a session cookie; signing out clears it.
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout;
use super::session::{self, NoSession, Session, Signed};
use crate::state::AppState;

/// Longest token the form takes: a bound, not a policy (tokens are at most 1024 characters).
const MAX_TOKEN_LEN: usize = 1024;

#[derive(Debug, Deserialize)]
pub struct SignIn {
    token: String,
}

#[derive(Debug, Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

pub async fn form(Signed(session): Signed) -> HttpResponse {
    match session {
        Ok(_) => redirect("/ops"),
        Err(reason) => sign_in_page(StatusCode::OK, reason_text(reason)),
    }
}

fn reason_text(reason: NoSession) -> Option<&'static str> {
    match reason {
        NoSession::Missing => None,
        NoSession::Expired => Some("Your session expired; sign in again."),
        NoSession::Invalid => Some("Your session is not valid; sign in again."),
    }
}

fn sign_in_page(status: StatusCode, message: Option<&str>) -> HttpResponse {
    layout::bare(
        status,
        "Sign in",
        html! {
            form class="signin" method="post" action="/ops/login" {
                h1 { "Atelier ops" }
                @if let Some(message) = message { p class="error" id="message" { (message) } }
                label for="token" { "Operator token (admin or read-only)" }
                input type="password" name="token" id="token" autocomplete="current-password" required;
                button type="submit" id="sign-in" { "Sign in" }
            }
        },
    )
}

/// Which operator `token` is: `Some(true)` the admin, `Some(false)` the read-only one.
fn operator_of(state: &AppState, token: &str) -> Option<bool> {
    let matches = |known: &str| bool::from(token.as_bytes().ct_eq(known.as_bytes()));
    if matches(&state.admin_token) {
        return Some(true);
    }
    let read_only = state.settings.ops_read_token.as_ref()?;
    matches(read_only.expose()).then_some(false)
}

pub async fn sign_in(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<SignIn>,
) -> HttpResponse {
    let token = form.token.trim();
    let operator = (token.len() <= MAX_TOKEN_LEN)
        .then(|| operator_of(&state, token))
        .flatten();
    let Some(may_act) = operator else {
        tracing::warn!(source = %crate::api::ops::source(&request), "dashboard sign-in refused");
        return sign_in_page(StatusCode::UNAUTHORIZED, Some("That token is not valid."));
    };
    let ttl = chrono::Duration::seconds(state.settings.ops.session_ttl_secs as i64);
    let value = Session::issue(&state, may_act, state.clock.now() + ttl);
    tracing::info!(may_act, source = %crate::api::ops::source(&request), "dashboard sign-in");
    let mut response = redirect("/ops");
    response
        .add_cookie(&session::cookie(&request, &state, value))
        .expect("a valid cookie");
    response
}

pub async fn sign_out(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<SignOut>,
) -> HttpResponse {
    if let Ok(session) = &session
        && !session.csrf_matches(&form.csrf)
    {
        return super::csrf_refused();
    }
    let mut response = redirect("/ops/login");
    response
        .add_cookie(&session::cleared(&request, &state))
        .expect("a valid cookie");
    response
}

pub fn redirect(to: &'static str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .finish()
}
