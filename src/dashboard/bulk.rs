//! The generations list's bulk action, in three steps on the page: count what the list's
//! filter matches (the API's dry run), confirm with that count and a reason (the real run,
//! which starts a background job), then follow the job's progress until it ends. The
//! confirmation carries the dry run's filter with its time range made absolute, so the job
//! acts on what was counted and not on a window that moved.
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::form;
use super::form::Query;
use super::session::Signed;
use super::{layout, render};
use crate::api::auth::Admin;
use crate::api::ops::bulk;
use crate::api::ops::generation_filter::FILTER_PARAMS;
use crate::state::AppState;

/// The bulk section of the list page: the list's filter, an action, and the count button.
pub fn section(query: &Query) -> Markup {
    html! {
        section id="bulk" {
            h2 { "Bulk action on every live generation this filter matches" }
            form hx-post="/ops/generations/bulk/dry-run" hx-target="#bulk-result" hx-swap="innerHTML" {
                @for (name, value) in &query.0 {
                    @if FILTER_PARAMS.contains(&name.as_str()) {
                        input type="hidden" name=(name) value=(value);
                    }
                }
                select name="action" id="bulk-action" {
                    option value="cancel" { "cancel (releases their credits)" }
                    option value="wake" { "wake (run the next step now)" }
                }
                " " button type="submit" id="bulk-dry-run" { "Count matches" }
            }
            div id="bulk-result" {}
        }
    }
}

/// `POST /ops/generations/bulk/dry-run`: how many match, and the form that confirms.
pub async fn dry_run(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let fields = match super::acting_form(session, &request, &body) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let body = json!({
        "filter": fields.object(&FILTER_PARAMS),
        "action": fields.get("action"),
        "dry_run": true,
    });
    match started(state, request, body).await {
        Ok(counted) => layout::fragment(confirmation(&counted)),
        Err(refused) => refused,
    }
}

fn confirmation(counted: &Value) -> Markup {
    let count = counted["count"].as_u64().unwrap_or(0);
    let action = counted["action"].as_str().unwrap_or("cancel");
    html! {
        @if count == 0 {
            p id="bulk-count" data-count="0" { "No live generation matches this filter." }
        } @else {
            form id="bulk-confirm-form" hx-post="/ops/generations/bulk" hx-target="#bulk-result"
                hx-swap="innerHTML" hx-confirm={ (action) " " (count) " generations?" } {
                p id="bulk-count" data-count=(count) { (count) " live generations match. " }
                @if let Some(filter) = counted["filter"].as_object() {
                    @for (name, value) in filter {
                        input type="hidden" name=(name) value=(value.as_str().unwrap_or_default());
                    }
                }
                input type="hidden" name="action" value=(action);
                input type="hidden" name="expected_count" value=(count);
                input name="reason" id="bulk-reason" required maxlength="1000"
                    placeholder="reason (for the audit log)";
                " " button type="submit" class="danger" id="bulk-confirm" { (action) " " (count) }
            }
        }
    }
}

/// `POST /ops/generations/bulk`: the real run, with the count the operator saw.
pub async fn start(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let fields = match super::acting_form(session, &request, &body) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    // A count that does not read as one is sent as text, for the API to refuse by name.
    let expected = fields.get("expected_count").map(|raw| {
        raw.parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw))
    });
    let body = json!({
        "filter": fields.object(&FILTER_PARAMS),
        "action": fields.get("action"),
        "dry_run": false,
        "expected_count": expected,
        "reason": fields.get("reason"),
    });
    match started(state, request, body).await {
        Ok(job) => layout::fragment(progress(&job)),
        Err(refused) => refused,
    }
}

/// The ops API's bulk start with `body`: its JSON, or its refusal as the answer.
async fn started(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Value,
) -> Result<Value, HttpResponse> {
    let body = form::body(body).map_err(|error| error.into_response())?;
    render::json(bulk::start(Admin, state, request, body).await)
        .await
        .map_err(|error| error.into_response())
}

/// `GET /ops/bulk/{id}`: a job's progress, which reloads itself every second while it runs.
pub async fn job(
    Signed(session): Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let Ok(session) = session else {
        return super::no_session().into_response();
    };
    let operator = session.operator();
    match render::json(bulk::get(operator, state, path).await).await {
        Ok(job) => layout::fragment(progress(&job)),
        Err(error) => error.into_response(),
    }
}

fn progress(job: &Value) -> Markup {
    let id = job["id"].as_str().unwrap_or_default();
    let state = job["state"].as_str().unwrap_or("?");
    let running = state == "running";
    html! {
        div id="bulk-job" data-state=(state) hx-get={ "/ops/bulk/" (id) } hx-swap="outerHTML"
            hx-trigger=[running.then_some("every 1s")] {
            p { "Job " code { (id) } ": " strong id="bulk-state" { (state) } " — "
                span id="bulk-done" { (job["done"]) } " of " (job["total"]) " done, "
                (job["skipped"]) " skipped, " (job["failed"]) " failed." }
            progress max=(job["total"].as_i64().unwrap_or(0).max(1))
                value=(job["done"].as_i64().unwrap_or(0) + job["skipped"].as_i64().unwrap_or(0)) {}
            @if let Some(error) = job["error"].as_str() { p class="error" { (error) } }
        }
    }
}
