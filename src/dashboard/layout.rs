//! The page every dashboard view sits in: navigation, who is signed in, the sign-out form and
//! the CSRF token htmx requests carry. Pages hand it their title and body.
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// The dashboard's pages, in the order the navigation shows them.
pub const PAGES: [(&str, &str); 7] = [
    ("/ops", "Overview"),
    ("/ops/generations", "Generations"),
    ("/ops/providers", "Providers"),
    ("/ops/cluster", "Cluster"),
    ("/ops/accounts", "Accounts"),
    ("/ops/ledger", "Ledger and verify"),
    ("/ops/audit", "Audit log"),
];

/// A whole page for a signed-in operator; `current` is its path in `PAGES`.
pub fn page(session: &Session, current: &str, title: &str, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="csrf-token" content=(session.csrf);
                title { (title) " · Atelier ops" }
                link rel="stylesheet" href="/ops/assets/dashboard.css";
                script src="/ops/assets/htmx.min.js" {}
                script src="/ops/assets/dashboard.js" {}
            }
            body {
                header {
                    strong { "Atelier ops" }
                    @for (path, name) in PAGES {
                        a href=(path) class=[(path == current).then_some("current")] { (name) }
                    }
                    span class="who" {
                        @if session.may_act { "admin" } @else { "read-only" }
                    }
                    form method="post" action="/ops/logout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" id="sign-out" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    // Where an action's refusal is shown (dashboard.js).
                    div id="flash" class="error" role="alert" {}
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A page without the navigation (signing in, errors).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Atelier ops" }
                link rel="stylesheet" href="/ops/assets/dashboard.css";
            }
            body { (body) }
        }
    };
    html_response(status, markup)
}

/// This request's path and query, for a live part of its page to reload itself from.
pub fn here(request: &HttpRequest) -> String {
    match request.query_string() {
        "" => request.path().to_owned(),
        query => format!("{}?{query}", request.path()),
    }
}

/// A piece of a page, for htmx to swap in.
pub fn fragment(markup: Markup) -> HttpResponse {
    html_response(StatusCode::OK, markup)
}

fn html_response(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(markup.into_string())
}
