//! `GET /ops/ledger`: what the ledger moved over a range (granted, held, consumed, released,
//! expired, voided; from `GET /v1/ops/summary`), and the invariant check of `atelier verify`
//! run on demand (`POST /v1/ops/verify`), its violations listed.
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde_json::Value;

use super::form::Query;
use super::session::Signed;
use super::{layout, render};
use crate::api::auth::Admin;
use crate::api::ops::{summary, verify};
use crate::state::AppState;

pub async fn page(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let operator = session.operator();
    let query = Query::of(&request);
    let current = |name: &str| query.value(name);
    let answer = render::json(summary::get(operator, state, request.clone()).await).await;
    let body = html! {
        form class="filters" method="get" action="/ops/ledger" {
            label { "From " input name="from" value=(current("from")) placeholder="RFC 3339; 24 h before to"; }
            " " label { "To " input name="to" value=(current("to")) placeholder="RFC 3339; now"; }
            " " button type="submit" id="range" { "Show" }
        }
        @match &answer {
            Ok(summary) => (totals(summary, &layout::here(&request))),
            Err(error) => (render::error(error)),
        }
        h2 { "Invariants" }
        @if session.may_act {
            p { button id="verify" hx-post="/ops/verify" hx-target="#verify-result" hx-swap="innerHTML" {
                "Run verify" } " " span class="note" { "the check `atelier verify` runs, over one snapshot" } }
        } @else {
            p class="note" { "Running the check takes the admin token." }
        }
        div id="verify-result" {}
    };
    layout::page(&session, "/ops/ledger", "Ledger and verify", body)
}

fn totals(summary: &Value, here: &str) -> Markup {
    html! {
        section id="ledger" data-live hx-get=(here) hx-select="#ledger" hx-swap="outerHTML" hx-trigger="refresh" {
            p class="note" { "Credits each kind of entry moved from " (summary["from"].as_str().unwrap_or("?"))
                " to " (summary["to"].as_str().unwrap_or("?")) "." }
            div id="ledger-totals" { (render::object(&summary["ledger"])) }
        }
    }
}

/// `POST /ops/verify`: the check's outcome, for the page to show where it asked.
pub async fn run(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    if let Err(refused) = super::acting(session, &request) {
        return refused.into_response();
    }
    match render::json(verify::run(Admin, state, request).await).await {
        Ok(outcome) => layout::fragment(outcome_markup(&outcome)),
        Err(error) => error.into_response(),
    }
}

fn outcome_markup(outcome: &Value) -> Markup {
    html! {
        @if outcome["ok"] == true {
            p id="verify-ok" class="ok" { "Every invariant holds." }
        } @else {
            p id="verify-broken" class="error" { "Invariants are broken: "
                (outcome["violations"].as_array().map_or(0, Vec::len)) " violations." }
            (render::value(&outcome["violations"]))
        }
        h3 { "Checked" } (render::object(&outcome["checked"]))
    }
}
