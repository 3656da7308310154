//! `GET /ops/generations` (the filterable list; the filters are the URL's query, so a view can
//! be shared) and `GET /ops/generations/{id}` (the whole story: timeline, hold and ledger,
//! inbox, objects with previews one click away), and the cancel button. Each shows what the
//! ops API answers and acts through the same handlers.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_entities::workflow::WorkflowState;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::form::Query;
use super::layout;
use super::render;
use super::session::{Session, Signed};
use crate::api::auth::Admin;
use crate::api::json::ApiJson;
use crate::api::ops::{generation_actions, generation_detail, generations};
use crate::state::AppState;

/// The list's columns; the rest of a row is on the generation's page.
const COLUMNS: [&str; 9] = [
    "id",
    "state",
    "provider",
    "account_id",
    "attempt",
    "error_code",
    "cost",
    "created_at",
    "updated_at",
];

/// The list's filter form fields: (query parameter, label, placeholder).
const FILTERS: [(&str, &str, &str); 7] = [
    ("state", "State", "released,reserved"),
    ("provider", "Provider", "simulator"),
    ("account", "Account", "account id"),
    ("error_code", "Error code", "provider_failed"),
    ("q", "Id or task id", "generation or provider task id"),
    ("created_from", "Created from", "RFC 3339; 24 h ago"),
    ("created_to", "Created to", "RFC 3339; now"),
];

pub async fn list(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let operator = session.operator();
    let answer = render::json(generations::list(operator, state, request.clone()).await).await;
    let query = Query::of(&request);
    let body = html! {
        (render::filters("/ops/generations", &FILTERS, &query))
        @match &answer {
            Ok(page) => (list_body(page, &query, &layout::here(&request))),
            Err(error) => (render::error(error)),
        }
        @if session.may_act && answer.is_ok() { (super::bulk::section(&query)) }
    };
    layout::page(&session, "/ops/generations", "Generations", body)
}

fn list_body(page: &Value, query: &Query, here: &str) -> Markup {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    html! {
        h2 { "Totals for this filter" }
        section class="cards small" id="totals" {
            @for name in WorkflowState::ALL.map(WorkflowState::as_str) {
                div class="card" data-state=(name) {
                    div class="n" { (page["totals"][name]) } div class="label" { (name) }
                }
            }
        }
        @if page["totals_capped"] == true { p class="note" { "Counts stop at 100,000." } }
        h2 { "Generations" }
        section id="generations" data-live hx-get=(here) hx-select="#generations" hx-swap="outerHTML" hx-trigger="refresh" {
            @if items.is_empty() { p class="note" { "Nothing matches." } }
            @else { (render::columns(&items, &COLUMNS, Some("/ops/generations/"))) }
        }
        @if let Some(cursor) = page["next_cursor"].as_str() {
            p { a href=(render::next_page(query, cursor)) id="next" { "Next page" } }
        }
    }
}

pub async fn detail(
    Signed(session): Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let id = path.into_inner();
    let operator = session.operator();
    let answer =
        render::json(generation_detail::get(operator, state, web::Path::from(id.clone())).await)
            .await;
    let body = match &answer {
        Ok(detail) => detail_body(&session, &id, detail),
        Err(error) => render::error(error),
    };
    layout::page(&session, "/ops/generations", "Generation", body)
}

fn detail_body(session: &Session, id: &str, detail: &Value) -> Markup {
    let generation = &detail["generation"];
    let live = generation["state"]
        .as_str()
        .is_some_and(|state| state != "settled" && state != "released");
    html! {
        section id="detail" data-live hx-get={ "/ops/generations/" (id) } hx-select="#detail" hx-swap="outerHTML" hx-trigger="refresh" {
            p { "State: " strong id="state" { (generation["state"].as_str().unwrap_or("?")) } }
            @if live && session.may_act {
                button class="danger" id="cancel" hx-post={ "/ops/generations/" (id) "/cancel" }
                    hx-swap="none" hx-confirm="Cancel this generation and release its credits?" { "Cancel" }
            }
            h2 { "Generation" } (render::object(generation))
            h2 { "Timeline" } (render::value(&detail["timeline"]))
            h2 { "Hold and ledger" } (render::value(&detail["hold"]))
            h2 { "Callbacks received" } (render::value(&detail["inbox"]))
            h2 { "Objects" } (objects(&detail["objects"]))
        }
    }
}

/// Input and result objects: keys shown, each preview only when clicked (they may be
/// personal photos).
fn objects(objects: &Value) -> Markup {
    let mut rows: Vec<(String, &Value)> = objects["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .map(|input| (input["field"].as_str().unwrap_or("input").to_owned(), input))
                .collect()
        })
        .unwrap_or_default();
    if objects["result"].is_object() {
        rows.push(("result".to_owned(), &objects["result"]));
    }
    html! {
        table class="fields" id="objects" {
            @for (name, object) in &rows {
                tr {
                    th { (name) }
                    td {
                        @if let Some(key) = object["key"].as_str() { code { (key) } " " }
                        @if let Some(url) = object["url"].as_str() { code { (url) } " " }
                        @if let Some(url) = object["preview_url"].as_str() {
                            a href=(url) target="_blank" rel="noopener noreferrer" class="preview" { "Preview" }
                        }
                    }
                }
            }
        }
        p class="note" { "Preview links last " (objects["preview_ttl_secs"]) " s." }
    }
}

/// `POST /ops/generations/{id}/cancel` (htmx, with the CSRF header): the ops API's cancel.
pub async fn cancel(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let session = match super::acting(session, &request) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    tracing::debug!(may_act = session.may_act, "dashboard cancel");
    let body = serde_json::from_value(json!({"reason": "canceled from the dashboard"}))
        .expect("a valid action body");
    match generation_actions::cancel(Admin, state, request, path, ApiJson(body)).await {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(error) => error.into_response(),
    }
}
