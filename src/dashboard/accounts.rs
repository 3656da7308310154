//! `GET /ops/accounts` (search by id, its start or part of a name) and `GET /ops/accounts/{id}`
//! (balance, packages in the order a hold takes them, open holds, recent entries and
//! generations), with the account's actions: grant (idempotent by its reference), disable and
//! enable, revoke its keys, and void a package's unused remainder. Each is the ops API's own
//! handler, which checks the input and writes the audit row.
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde_json::Value;

use super::form::{self, Fields, Query};
use super::session::{Session, Signed};
use super::{layout, render};
use crate::api::accounts::GrantRequest;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::ops::accounts;
use crate::state::AppState;

pub async fn list(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let operator = session.operator();
    let query = Query::of(&request);
    let current = query.value("query");
    let answer = render::json(accounts::list(operator, state, request).await).await;
    let body = html! {
        form class="filters" method="get" action="/ops/accounts" {
            label { "Search " input name="query" id="query" value=(current)
                placeholder="account id, its start, or part of a name"; }
            " " button type="submit" id="search" { "Search" }
        }
        @match &answer {
            Ok(page) => (list_body(page, &query)),
            Err(error) => (render::error(error)),
        }
    };
    layout::page(&session, "/ops/accounts", "Accounts", body)
}

fn list_body(page: &Value, query: &Query) -> Markup {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    html! {
        section id="accounts" {
            @if items.is_empty() { p class="note" { "No account matches." } }
            @else { (render::table(&items, Some("/ops/accounts/"))) }
        }
        @if let Some(cursor) = page["next_cursor"].as_str() {
            p { a id="next" href=(render::next_page(query, cursor)) { "Next page" } }
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
        render::json(accounts::detail(operator, state, web::Path::from(id.clone())).await).await;
    let body = match &answer {
        Ok(detail) => detail_body(&session, &id, detail),
        Err(error) => render::error(error),
    };
    layout::page(&session, "/ops/accounts", "Account", body)
}

/// The lists an account's detail carries beside the account's own fields (which it flattens).
const LISTS: [&str; 5] = [
    "live_keys",
    "packages",
    "open_holds",
    "recent_entries",
    "recent_generations",
];

fn detail_body(session: &Session, id: &str, detail: &Value) -> Markup {
    let mut account = detail.clone();
    if let Some(fields) = account.as_object_mut() {
        fields.retain(|key, _| !LISTS.contains(&key.as_str()));
    }
    let account = &account;
    let packages = detail["packages"].as_array().cloned().unwrap_or_default();
    html! {
        section id="account" data-live hx-get={ "/ops/accounts/" (id) } hx-select="#account"
            hx-swap="outerHTML" hx-trigger="refresh" {
            p { "Available: " strong id="available" { (account["available"]) }
                " · held: " strong id="held" { (account["held"]) }
                " · live keys: " (detail["live_keys"])
                @if account["disabled"] == true { " · " span class="badge paused" id="disabled" { "disabled" } } }
            @if session.may_act { (actions(id, account)) }
            h2 { "Account" } (render::object(account))
            h2 { "Packages, in the order a hold takes them" }
            @if packages.is_empty() { p class="note" { "none" } }
            @else { (packages_table(session, id, &packages)) }
            h2 { "Open holds" } (render::value(&detail["open_holds"]))
            h2 { "Recent ledger entries" } (render::value(&detail["recent_entries"]))
            h2 { "Recent generations" }
            @match detail["recent_generations"].as_array() {
                Some(items) if !items.is_empty() => (render::table(items, Some("/ops/generations/"))),
                _ => p class="note" { "none" },
            }
        }
    }
}

/// Grant, disable or enable, revoke keys: one form each, posting to this account's actions.
fn actions(id: &str, account: &Value) -> Markup {
    let disabled = account["disabled"] == true;
    let post = |action: &str| format!("/ops/accounts/{id}/{action}");
    html! {
        div class="actions" {
            form id="grant" class="inline" hx-post=(post("grant")) hx-swap="none" {
                input name="credits" type="number" min="1" required placeholder="credits" id="grant-credits";
                " " input name="reference" required maxlength="255" placeholder="reference (unique per account)" id="grant-reference";
                " " input name="expires_at" placeholder="expires at (RFC 3339, optional)" id="grant-expires";
                " " button type="submit" id="grant-submit" { "Grant" }
            }
            form class="inline" hx-post=(post(if disabled { "enable" } else { "disable" })) hx-swap="none" {
                input name="reason" maxlength="1000" placeholder="reason" id="switch-reason";
                " " @if disabled { button type="submit" id="enable" { "Enable" } }
                @else { button type="submit" class="danger" id="disable" { "Disable" } }
            }
            form class="inline" hx-post=(post("revoke-keys")) hx-swap="none"
                hx-confirm="Revoke every API key of this account?" {
                input name="reason" maxlength="1000" placeholder="reason" id="revoke-reason";
                " " button type="submit" class="danger" id="revoke-keys" { "Revoke keys" }
            }
        }
    }
}

/// The packages, each with the button that voids its unused remainder (a reason required).
fn packages_table(session: &Session, id: &str, packages: &[Value]) -> Markup {
    html! {
        (render::table(packages, None))
        @if session.may_act {
            h2 { "Void a package's unused remainder" }
            @for package in packages {
                @if let (Some(package_id), Some(remaining)) = (package["id"].as_str(), package["remaining"].as_i64()) {
                    @if remaining > 0 {
                        form class="inline void" hx-post={ "/ops/accounts/" (id) "/grants/" (package_id) "/void" }
                            hx-swap="none" hx-confirm={ "Void " (remaining) " unused credits?" } {
                            code { (package["reference"].as_str().unwrap_or(package_id)) } " (" (remaining) " left) "
                            input name="reason" required maxlength="1000" placeholder="reason"
                                id={ "void-reason-" (package_id) };
                            " " button type="submit" class="danger" id={ "void-" (package_id) } { "Void" }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ops/accounts/{id}/{action}` for grant, disable, enable and revoke-keys.
pub async fn act(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    let fields = match super::acting_form(session, &request, &body) {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let account = web::Path::from(id);
    form::done(account_action(state, request, account, &action, &fields).await)
}

/// The ops handler `action` names, with the body the form gives it.
async fn account_action(
    state: web::Data<AppState>,
    request: HttpRequest,
    account: web::Path<String>,
    action: &str,
    fields: &Fields,
) -> Result<HttpResponse, ApiError> {
    match action {
        "grant" => accounts::grant(Admin, state, request, account, grant_body(fields)?).await,
        "disable" => accounts::disable(Admin, state, request, account, fields.reason_body()?).await,
        "enable" => accounts::enable(Admin, state, request, account, fields.reason_body()?).await,
        "revoke-keys" => {
            accounts::revoke_keys(Admin, state, request, account, fields.reason_body()?).await
        }
        _ => Err(ApiError::not_found("not_found", "no such account action")),
    }
}

/// The grant form as the API's body: credits as a number (the API refuses a bad one).
fn grant_body(fields: &Fields) -> Result<ApiJson<GrantRequest>, ApiError> {
    let mut body = fields.object(&["reference", "expires_at"]);
    // A number when it reads as one; otherwise as sent, for the API to refuse by name.
    if let Some(raw) = fields.get("credits") {
        body["credits"] = raw
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(raw.to_owned()));
    }
    form::body(body)
}

/// `POST /ops/accounts/{id}/grants/{package}/void`.
pub async fn void(
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
    form::done(match fields.reason_body() {
        Ok(body) => accounts::void(Admin, state, request, path, body).await,
        Err(error) => Err(error),
    })
}
