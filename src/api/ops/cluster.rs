//! `GET /v1/ops/cluster`: the engine processes the database knows (their heartbeats) and the
//! shards' leases — who holds how many, at which epochs, and how many are lapsed or unowned.
//! Both tables are small and bounded (256 leases; members lapsed for an hour are purged), so
//! the view reads them whole. Liveness is judged on this process's clock; the leases
//! themselves are always decided on the database's.
use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use atelier_actors::cluster::{SHARDS, leases, members};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
struct MemberView {
    /// New at every start of the process.
    id: Uuid,
    host: String,
    pid: i32,
    started_at: DateTime<Utc>,
    /// Its heartbeat keeps this ahead of the clock while it runs.
    expires_at: DateTime<Utc>,
    live: bool,
    /// Leases it holds that have not lapsed.
    shards_held: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct ClusterView {
    /// The fixed number of shards.
    shards: usize,
    /// Shards whose lease is held and has not lapsed.
    held: usize,
    /// Shards whose owner's lease lapsed (another process takes them at its next renewal).
    lapsed: usize,
    /// Shards nobody holds (handed back, or never taken; on SQLite the one engine holds every
    /// shard without a lease, so all are unowned here).
    unowned: usize,
    /// The highest epoch of any shard: how many times shards changed hands, at most.
    max_epoch: i64,
    /// Newest first.
    members: Vec<MemberView>,
}

#[utoipa::path(
    get, path = "/v1/ops/cluster", tag = "ops",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The engine processes and the shards' leases", body = ClusterView)
    )
)]
pub async fn get(_: Operator, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let leases = leases::all(&state.db).await?;
    let mut held_by: HashMap<Uuid, usize> = HashMap::new();
    let (mut held, mut lapsed, mut unowned) = (0, 0, 0);
    for lease in &leases {
        match lease.owner {
            Some(owner) if lease.expires_at > now => {
                held += 1;
                *held_by.entry(owner).or_default() += 1;
            }
            Some(_) => lapsed += 1,
            None => unowned += 1,
        }
    }
    let mut members: Vec<MemberView> = members::all(&state.db)
        .await?
        .into_iter()
        .map(|member| MemberView {
            shards_held: held_by.get(&member.id).copied().unwrap_or(0),
            live: member.expires_at > now,
            id: member.id,
            host: member.host,
            pid: member.pid,
            started_at: member.started_at,
            expires_at: member.expires_at,
        })
        .collect();
    members.sort_by_key(|member| std::cmp::Reverse(member.started_at));
    Ok(HttpResponse::Ok().json(ClusterView {
        shards: SHARDS,
        held,
        lapsed,
        unowned,
        max_epoch: leases.iter().map(|lease| lease.epoch).max().unwrap_or(0),
        members,
    }))
}
