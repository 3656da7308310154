//! `GET /ops`: what an operator opens first, from `GET /v1/ops/summary` — generations per state
//! now, settled and released per hour as a sparkline, releases per error code, the watchlist
//! of generations live for too long, and what the ledger moved; refreshed live while the tab
//! is open.
use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use atelier_entities::workflow::WorkflowState;
use maud::{Markup, html};
use serde_json::Value;

use super::session::Signed;
use super::{layout, render, sparkline};
use crate::api::ops::summary;
use crate::state::AppState;

pub async fn page(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let body = overview(&session, state, request).await;
    layout::page(&session, "/ops", "Overview", body)
}

/// `GET /ops/fragments/overview`: the overview alone, for htmx to swap in.
pub async fn fragment(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    match session {
        Ok(session) => layout::fragment(overview(&session, state, request).await),
        Err(_) => super::no_session().into_response(),
    }
}

async fn overview(
    session: &super::session::Session,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Markup {
    let operator = session.operator();
    let answer = render::json(summary::get(operator, state, request).await).await;
    html! {
        section id="overview" data-live hx-get="/ops/fragments/overview" hx-trigger="refresh"
            hx-swap="outerHTML" {
            @match &answer {
                Ok(summary) => (summary_body(summary)),
                Err(error) => (render::error(error)),
            }
        }
    }
}

fn summary_body(summary: &Value) -> Markup {
    let hours = summary["hours"].as_array().cloned().unwrap_or_default();
    html! {
        section id="counts" class="cards" {
            // In the order a generation goes through them.
            @for name in WorkflowState::ALL.map(WorkflowState::as_str) {
                @if let Some(count) = summary["states"].get(name) {
                    a class="card" data-state=(name) href={ "/ops/generations?state=" (name) } {
                        div class="n" { (count) }
                        div class="label" { (name) }
                    }
                }
            }
        }
        h2 { "Settled and released per hour" }
        (sparkline::hours(&hours))
        h2 { "Releases per error code" }
        (error_codes(&hours))
        h2 { "Watchlist: live for more than " (summary["watch_after_secs"]) " s" }
        div id="watchlist" {
            @match summary["watchlist"].as_array() {
                Some(items) if !items.is_empty() => (render::table(items, Some("/ops/generations/"))),
                _ => p class="note" { "No generation has been live that long." },
            }
        }
        h2 { "Ledger over the range" }
        div id="ledger-totals" { (render::object(&summary["ledger"])) }
        p class="note" { "From " (summary["from"].as_str().unwrap_or("?")) " to "
            (summary["to"].as_str().unwrap_or("?")) "." }
    }
}

/// Releases over the range summed per error code, the most frequent first, each linking to
/// the list of those generations.
fn error_codes(hours: &[Value]) -> Markup {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for hour in hours {
        if let Some(released) = hour["released"].as_object() {
            for (code, count) in released {
                *totals.entry(code.clone()).or_default() += count.as_i64().unwrap_or(0);
            }
        }
    }
    let mut rows: Vec<(String, i64)> = totals.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    html! {
        @if rows.is_empty() { p class="note" id="error-codes" { "Nothing was released." } }
        @else {
            table id="error-codes" {
                tr { th { "Error code" } th { "Released" } }
                @for (code, count) in &rows {
                    tr {
                        td { a href={ "/ops/generations?state=released&error_code=" (code) } { (code) } }
                        td data-code=(code) { (count) }
                    }
                }
            }
        }
    }
}
