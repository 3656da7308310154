//! `GET /ops/audit`: every operator action, newest first (`GET /v1/ops/audit`), filtered by
//! action, target kind or target, the filters in the URL.
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde_json::Value;

use super::form::Query;
use super::session::Signed;
use super::{layout, render};
use crate::api::ops::audit;
use crate::state::AppState;

const COLUMNS: [&str; 8] = [
    "at",
    "operator",
    "action",
    "target_kind",
    "target_id",
    "reason",
    "filter",
    "source",
];

/// The filter form's fields: (query parameter, label, placeholder).
const FILTERS: [(&str, &str, &str); 3] = [
    ("action", "Action", "provider.pause"),
    ("target_kind", "Target kind", "generation"),
    ("target_id", "Target", "an id or a provider name"),
];

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
    let answer = render::json(audit::list(operator, state, request.clone()).await).await;
    let body = html! {
        (render::filters("/ops/audit", &FILTERS, &query))
        @match &answer {
            Ok(page) => (rows(page, &query, &layout::here(&request))),
            Err(error) => (render::error(error)),
        }
    };
    layout::page(&session, "/ops/audit", "Audit log", body)
}

fn rows(page: &Value, query: &Query, here: &str) -> Markup {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let next = page["next_cursor"]
        .as_str()
        .map(|cursor| render::next_page(query, cursor));
    html! {
        section id="audit" data-live hx-get=(here) hx-select="#audit" hx-swap="outerHTML" hx-trigger="refresh" {
            @if items.is_empty() { p class="note" { "No action recorded matches." } }
            @else { (render::columns(&items, &COLUMNS, None)) }
        }
        @if let Some(next) = next { p { a id="next" href=(next) { "Next page" } } }
    }
}
