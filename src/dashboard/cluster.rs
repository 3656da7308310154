//! `GET /ops/cluster`: the engine processes and how the shards are split between them (from
//! `GET /v1/ops/cluster`). Read-only: leases move by themselves; an engine is drained by
//! stopping it (SIGTERM), not from here.
use actix_web::{HttpResponse, web};
use maud::html;
use serde_json::Value;

use super::session::Signed;
use super::{layout, render};
use crate::api::ops::cluster;
use crate::state::AppState;

/// The members' columns, in the order an operator reads them.
const COLUMNS: [&str; 7] = [
    "host",
    "pid",
    "live",
    "shards_held",
    "started_at",
    "expires_at",
    "id",
];

pub async fn page(Signed(session): Signed, state: web::Data<AppState>) -> HttpResponse {
    let Ok(session) = session else {
        return super::signin::redirect("/ops/login");
    };
    let answer = render::json(cluster::get(session.operator(), state).await).await;
    let body = html! {
        section id="cluster" data-live hx-get="/ops/cluster" hx-select="#cluster"
            hx-swap="outerHTML" hx-trigger="refresh" {
            @match &answer {
                Ok(view) => {
                    p class="facts shards" {
                        (count(&view["shards"])) " shards: "
                        strong { (count(&view["held"])) " held" } ", "
                        (count(&view["lapsed"])) " lapsed, "
                        (count(&view["unowned"])) " unowned · highest epoch "
                        (count(&view["max_epoch"]))
                    }
                    @let members = view["members"].as_array().cloned().unwrap_or_default();
                    @if members.is_empty() {
                        p class="note" { "No engine process has a heartbeat here (SQLite runs one engine, which holds every shard without a lease)." }
                    } @else {
                        (render::columns(&members, &COLUMNS, None))
                    }
                },
                Err(error) => (render::error(error)),
            }
        }
    };
    layout::page(&session, "/ops/cluster", "Cluster", body)
}

fn count(value: &Value) -> String {
    value
        .as_i64()
        .map_or_else(|| "?".to_owned(), |n| n.to_string())
}
