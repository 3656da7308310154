//! `GET /ops/generations` (the filterable list; the filters are the URL's query, so a view can
//! be shared) and `GET /ops/generations/{id}` (the whole story: timeline, hold and ledger,
//! inbox, objects with previews one click away), and the cancel button. Each shows what the
//! ops API answers and acts through the same handlers.
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_entities::workflow::WorkflowState;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::form::{self, Query};
use super::layout;
use super::render;
use super::session::{Session, Signed};
use crate::api::auth::Admin;
use crate::api::error::ApiError;
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
    let answer = render::json(
        generation_detail::get(operator, state.clone(), web::Path::from(id.clone())).await,
    )
    .await;
    let mut providers: Vec<&str> = state
        .settings
        .providers
        .keys()
        .map(String::as_str)
        .collect();
    providers.sort_unstable();
    let body = match &answer {
        Ok(detail) => detail_body(&session, &id, detail, &providers),
        Err(error) => render::error(error),
    };
    layout::page(&session, "/ops/generations", "Generation", body)
}

fn detail_body(session: &Session, id: &str, detail: &Value, providers: &[&str]) -> Markup {
    let generation = &detail["generation"];
    html! {
        section id="detail" data-live hx-get={ "/ops/generations/" (id) } hx-select="#detail" hx-swap="outerHTML" hx-trigger="refresh" {
            p { "State: " strong id="state" { (generation["state"].as_str().unwrap_or("?")) } }
            @if session.may_act { (actions(id, generation, providers)) }
            h2 { "Generation" } (render::object(generation))
            h2 { "Timeline" } (render::value(&detail["timeline"]))
            h2 { "Hold and ledger" } (render::value(&detail["hold"]))
            h2 { "Callbacks received" } (render::value(&detail["inbox"]))
            h2 { "Objects" } (objects(&detail["objects"]))
        }
    }
}

/// Cancel and wake while it is live; retry as a new generation (on its provider or another)
/// once released.
fn actions(id: &str, generation: &Value, providers: &[&str]) -> Markup {
    let state = generation["state"].as_str().and_then(WorkflowState::parse);
    let live = state.is_some_and(|state| !state.is_terminal());
    let post = |action: &str| format!("/ops/generations/{id}/{action}");
    html! {
        @if live {
            div class="actions" {
                form class="inline" hx-post=(post("cancel")) hx-swap="none"
                    hx-confirm="Cancel this generation and release its credits?" {
                    button type="submit" class="danger" id="cancel" { "Cancel" }
                }
                form class="inline" hx-post=(post("wake")) hx-swap="none" {
                    button type="submit" id="wake" { "Wake: run the next step now" }
                }
            }
        }
        @if state == Some(WorkflowState::Released) {
            form class="inline" id="retry" hx-post=(post("retry")) hx-swap="none" {
                select name="provider" id="retry-provider" {
                    @for name in providers {
                        option value=(name) selected[generation["provider"] == *name] { (name) }
                    }
                }
                input name="reason" maxlength="1000" placeholder="reason (for the audit log)";
                button type="submit" id="retry-submit" { "Retry as a new generation" }
            }
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

/// `POST /ops/generations/{id}/{action}` (htmx, with the CSRF header): the ops API's cancel,
/// wake or retry as new, with the form's reason (and, for a retry, provider). A retry sends
/// the browser to the new generation's page.
pub async fn act(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> HttpResponse {
    let fields = match super::acting_form(session, &request, &body) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let (id, action) = path.into_inner();
    let generation = web::Path::from(id);
    let reason = fields.get("reason").unwrap_or("from the dashboard");
    let body = json!({ "reason": reason });
    let answer = match action.as_str() {
        "cancel" => match form::body(body) {
            Ok(body) => generation_actions::cancel(Admin, state, request, generation, body).await,
            Err(error) => Err(error),
        },
        "wake" => match form::body(body) {
            Ok(body) => generation_actions::wake(Admin, state, request, generation, body).await,
            Err(error) => Err(error),
        },
        "retry" => return retry(state, request, generation, reason, &fields).await,
        _ => Err(ApiError::not_found(
            "not_found",
            "no such generation action",
        )),
    };
    form::done(answer)
}

/// The ops API's retry as new, on the form's provider: the new generation's page to go to,
/// or the refusal.
async fn retry(
    state: web::Data<AppState>,
    request: HttpRequest,
    generation: web::Path<String>,
    reason: &str,
    fields: &form::Fields,
) -> HttpResponse {
    let body = match form::body(json!({ "reason": reason, "provider": fields.get("provider") })) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let retried = generation_actions::retry(Admin, state, request, generation, body).await;
    to_the_new_one(render::json(retried).await)
}

/// What a retry answers the page: the new generation's page to go to, or the refusal.
fn to_the_new_one(retried: Result<Value, ApiError>) -> HttpResponse {
    match retried {
        Ok(acted) => {
            let id = acted["generation"]["id"].as_str().unwrap_or_default();
            HttpResponse::NoContent()
                .insert_header(("hx-redirect", format!("/ops/generations/{id}")))
                .finish()
        }
        Err(error) => error.into_response(),
    }
}
