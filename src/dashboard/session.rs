//! Signing in to the dashboard: the operator gives the admin token (or the read-only one)
//! once and gets a session cookie, `HttpOnly`, `SameSite=Strict`, `Secure` when served over
//! https, which expires after `ops.session_ttl_secs`. The cookie is signed, not stored: any
//! process with the same signing secret accepts it, and signing out clears it in the browser
//! (a copy taken before keeps working until it expires; rotate `signing_secret` to end every
//! session at once).
//!
//! Every POST carries a CSRF token derived from the session (a form field `csrf` or the
//! `X-CSRF-Token` header htmx sends); `SameSite=Strict` is the first defence, the token the
//! second.
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, Utc};
use std::future::{Ready, ready};
use subtle::ConstantTimeEq;

use crate::accounts::random_token;
use crate::state::AppState;

pub const COOKIE: &str = "atelier_ops";

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    /// Signed in with the admin token (else the read-only one).
    pub may_act: bool,
    /// What every POST of this session must carry.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a request has no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSession {
    Missing,
    Invalid,
    Expired,
}

fn role(may_act: bool) -> &'static str {
    if may_act { "admin" } else { "observer" }
}

fn session_key(role: &str, nonce: &str) -> String {
    format!("ops-session:{role}:{nonce}")
}

fn csrf_key(nonce: &str) -> String {
    format!("ops-csrf:{nonce}")
}

impl Session {
    /// The operator the ops API's handlers see for this session.
    pub fn operator(&self) -> crate::api::auth::Operator {
        crate::api::auth::Operator {
            may_act: self.may_act,
        }
    }

    /// A new session's cookie value, valid until `expires_at`.
    pub fn issue(state: &AppState, may_act: bool, expires_at: DateTime<Utc>) -> String {
        let nonce = random_token("");
        let role = role(may_act);
        let signature = state.signer.sign(&session_key(role, &nonce), expires_at);
        format!("v1.{role}.{nonce}.{}.{signature}", expires_at.timestamp())
    }

    /// The session a cookie value proves, at `now`.
    pub fn check(state: &AppState, value: &str, now: DateTime<Utc>) -> Result<Self, NoSession> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(role), Some(nonce), Some(expires), Some(signature), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NoSession::Invalid);
        };
        let may_act = match role {
            "admin" => true,
            "observer" => false,
            _ => return Err(NoSession::Invalid),
        };
        let expires: i64 = expires.parse().map_err(|_| NoSession::Invalid)?;
        let expires_at = DateTime::from_timestamp(expires, 0).ok_or(NoSession::Invalid)?;
        use crate::signing::SignatureError;
        match state
            .signer
            .verify(&session_key(role, nonce), expires, signature, now)
        {
            Ok(()) => {}
            Err(SignatureError::Expired) => return Err(NoSession::Expired),
            Err(SignatureError::Invalid) => return Err(NoSession::Invalid),
        }
        Ok(Self {
            may_act,
            csrf: state.signer.sign(&csrf_key(nonce), expires_at),
            expires_at,
        })
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_matches(&self, token: &str) -> bool {
        bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The session cookie for `value`; `Secure` when the dashboard is served over https.
pub fn cookie(request: &HttpRequest, state: &AppState, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, value)
        .path("/ops")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            state.settings.ops.session_ttl_secs as i64,
        ))
        .finish();
    cookie.set_secure(served_over_https(request, state));
    cookie
}

/// A cookie that clears the session in the browser.
pub fn cleared(request: &HttpRequest, state: &AppState) -> Cookie<'static> {
    let mut cookie = cookie(request, state, String::new());
    cookie.make_removal();
    cookie
}

fn served_over_https(request: &HttpRequest, state: &AppState) -> bool {
    request.connection_info().scheme() == "https"
        || state
            .settings
            .public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
}

/// The request's session, or why there is none.
pub fn of(request: &HttpRequest) -> Result<Session, NoSession> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered");
    let cookie = request.cookie(COOKIE).ok_or(NoSession::Missing)?;
    Session::check(state, cookie.value(), state.clock.now())
}

/// A page's extractor: the session, or the reason the page sends the browser to sign in.
pub struct Signed(pub Result<Session, NoSession>);

impl FromRequest for Signed {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Signed(of(request))))
    }
}
