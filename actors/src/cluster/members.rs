//! Every statement on `engine_members`: the engine processes of the deployment and their
//! heartbeats, on the database's clock. A process counts as live while its row's
//! `expires_at` is ahead; each process aims at an equal share of the shards among the live,
//! and takes an equal part of each provider's account limits (`providers/share.rs`).
use std::time::Duration;

use atelier_entities::engine_member;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, Statement};
use uuid::Uuid;

/// Who this process is, as its row says.
#[derive(Debug, Clone)]
pub struct Member {
    /// New at every start (Oban #862: a reused name made a restarted node look like the dead
    /// one, whose work was then never rescued).
    pub id: Uuid,
    pub host: String,
    pub pid: i32,
}

impl Member {
    /// This process, under `id` (fresh at every start).
    pub fn this_process(id: Uuid) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().chars().take(255).collect())
            .unwrap_or_else(|_| "unknown".into());
        Self {
            id,
            host,
            pid: std::process::id() as i32,
        }
    }
}

/// The live processes as one heartbeat saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// How many, this one included (at least 1).
    pub count: usize,
    /// How many of them have a smaller id: this process's place among them, from 0.
    pub rank: usize,
}

/// Keeps `member` live for `ttl` more, and answers which processes are live, itself
/// included. Rows of processes that lapsed an hour ago go (a crash leaves its row behind).
pub async fn heartbeat<C: ConnectionTrait>(
    db: &C,
    member: &Member,
    ttl: Duration,
) -> Result<Live, DbErr> {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let upsert = "INSERT INTO engine_members (id, host, pid, started_at, expires_at) \
                  VALUES ($1, $2, $3, now(), now() + $4 * interval '1 millisecond') \
                  ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at";
    let values = [
        member.id.into(),
        member.host.clone().into(),
        member.pid.into(),
        ttl.into(),
    ];
    db.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        upsert,
        values,
    ))
    .await?;
    db.execute_unprepared(
        "DELETE FROM engine_members WHERE expires_at < now() - interval '1 hour'",
    )
    .await?;
    let counted = db
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT count(*) AS live, count(*) FILTER (WHERE id < $1) AS below \
             FROM engine_members WHERE expires_at > now()",
            [member.id.into()],
        ))
        .await?;
    let (live, below) = match counted {
        Some(row) => (
            row.try_get::<i64>("", "live")?,
            row.try_get::<i64>("", "below")?,
        ),
        None => (1, 0),
    };
    let count = usize::try_from(live).unwrap_or(1).max(1);
    let rank = usize::try_from(below).unwrap_or(0).min(count - 1);
    Ok(Live { count, rank })
}

/// This process leaves: the others' next tick counts one fewer and takes its shards.
pub async fn leave<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), DbErr> {
    engine_member::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Every member row, for operators and tests.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<engine_member::Model>, DbErr> {
    engine_member::Entity::find().all(db).await
}
