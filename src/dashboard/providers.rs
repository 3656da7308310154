//! `GET /ops/providers`: each provider's health, load, recent calls, last error, charges and
//! pause (from `GET /v1/ops/providers`), with pause (a reason required) and resume, which are
//! the ops API's own actions.
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde_json::Value;

use super::form;
use super::session::{Session, Signed};
use super::{layout, render};
use crate::api::auth::Admin;
use crate::api::ops::providers;
use crate::state::AppState;

pub async fn page(Signed(session): Signed, state: web::Data<AppState>) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let operator = session.operator();
    let answer = render::json(providers::list(operator, state).await).await;
    let body = html! {
        section id="providers" data-live hx-get="/ops/providers" hx-select="#providers"
            hx-swap="outerHTML" hx-trigger="refresh" {
            @match &answer {
                Ok(list) => @for provider in list["items"].as_array().into_iter().flatten() {
                    (card(&session, provider))
                },
                Err(error) => (render::error(error)),
            }
        }
    };
    layout::page(&session, "/ops/providers", "Providers", body)
}

fn card(session: &Session, provider: &Value) -> Markup {
    let name = provider["name"].as_str().unwrap_or("?");
    let paused = provider["paused"].is_object();
    html! {
        article class="provider" id={ "provider-" (name) } data-paused=(paused) {
            h2 { (name) " "
                @if paused { span class="badge paused" { "paused" } }
                @else { span class="badge" { "circuit " (provider["circuit"].as_str().unwrap_or("unknown")) } }
            }
            @if let Some(pause) = provider["paused"].as_object() {
                p class="error" { "Paused since " (render::value(&pause["paused_at"])) ": "
                    (pause["reason"].as_str().unwrap_or_default()) }
            }
            @if session.may_act { (switch_form(name, paused)) }
            (load(provider))
            (windows(provider))
            details {
                summary { "Every field" }
                (render::object(provider))
            }
        }
    }
}

fn switch_form(name: &str, paused: bool) -> Markup {
    html! {
        @if paused {
            form class="inline" hx-post={ "/ops/providers/" (name) "/resume" } hx-swap="none" {
                button type="submit" id={ "resume-" (name) } { "Resume" }
            }
        } @else {
            form class="inline" hx-post={ "/ops/providers/" (name) "/pause" } hx-swap="none" {
                input name="reason" required maxlength="1000" class="wide"
                    placeholder="why pause (for the audit log)" id={ "pause-reason-" (name) };
                button type="submit" class="danger" id={ "pause-" (name) } { "Pause" }
            }
        }
    }
}

/// Circuit, load and limits, and what it charged, on one line.
fn load(provider: &Value) -> Markup {
    let or_dash = |value: &Value| match value {
        Value::Null => "—".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    html! {
        p class="facts" {
            "circuit " strong { (or_dash(&provider["circuit"])) } " since " (render::value(&provider["circuit_since"]))
            " · in flight " strong { (or_dash(&provider["in_flight"])) } " of " (or_dash(&provider["max_concurrency"]))
            " · queued " (or_dash(&provider["queued"]))
            " · " (or_dash(&provider["requests_per_second"])) " req/s"
            // Several engines split the account's limits: what this one's are a part of.
            @if provider["share_of"].as_u64().is_some_and(|of| of > 1) {
                " (this engine's share among " (or_dash(&provider["share_of"])) " of the account's "
                (or_dash(&provider["account_max_concurrency"])) " in flight and "
                (or_dash(&provider["account_requests_per_second"])) " req/s)"
            }
            " · cost " (or_dash(&provider["cost"]))
            " · charged " strong { (or_dash(&provider["credits_charged"])) } " credits in 24 h"
            " · chain position " (or_dash(&provider["chain_position"]))
        }
        @if !provider["last_error"].is_null() {
            p class="error" { "Last error: " (render::value(&provider["last_error"])) }
        }
    }
}

/// Calls, errors, 429s and latency over the last 5 and 60 minutes.
fn windows(provider: &Value) -> Markup {
    const KEYS: [&str; 6] = [
        "calls",
        "errors",
        "error_rate",
        "throttled",
        "p50_ms",
        "p95_ms",
    ];
    html! {
        table class="windows" {
            tr { th { "window" } @for key in KEYS { th { (key) } } }
            @for (label, window) in [("5 min", "last_5m"), ("60 min", "last_60m")] {
                tr data-window=(window) {
                    td { (label) }
                    @for key in KEYS { td data-field=(key) { (render::value(&provider[window][key])) } }
                }
            }
        }
    }
}

/// `POST /ops/providers/{name}/pause`: the ops API's pause, with the form's reason.
pub async fn pause(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    switch(session, state, request, name, body, true).await
}

/// `POST /ops/providers/{name}/resume`.
pub async fn resume(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    switch(session, state, request, name, body, false).await
}

async fn switch(
    session: Result<Session, super::session::NoSession>,
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    body: Bytes,
    pause: bool,
) -> HttpResponse {
    let fields = match super::acting_form(session, &request, &body) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let body = match fields.reason_body() {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    form::done(if pause {
        providers::pause(Admin, state, request, name, body).await
    } else {
        providers::resume(Admin, state, request, name, body).await
    })
}
