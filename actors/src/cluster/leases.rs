//! Every statement on `shard_leases`. Each one that takes, renews or hands back a lease is a
//! single statement on the database's clock (`now()`), never this process's: two machines'
//! clocks need not agree, the database's is the one they share. PostgreSQL only: on SQLite
//! one engine holds every shard (`engine_lock`) and no lease is written.
//!
//! Locks, and why: the fence check in a workflow write takes `FOR KEY SHARE` on the lease
//! rows of its shards; a take locks the row `FOR UPDATE SKIP LOCKED`, which conflicts with it.
//! So a takeover can never slip between a write's check and its commit (it waits for the
//! next tick, skipping that shard), while a renewal, a plain `UPDATE` of non-key columns,
//! does not conflict with it: renewing never waits behind workflow writes, nor they behind it.
use std::collections::HashMap;
use std::time::Duration;

use atelier_entities::shard_lease;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Statement,
};
use uuid::Uuid;

use super::shard::Fence;

/// A lease this process holds, as the database answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub shard: i16,
    pub epoch: i64,
}

/// Extends every lease `owner` holds to `now() + ttl`, also one that lapsed while nobody took
/// it (its epoch unchanged, so nobody wrote under another). Answers the leases it holds.
pub async fn renew<C: ConnectionTrait>(
    db: &C,
    owner: Uuid,
    ttl: Duration,
) -> Result<Vec<Held>, DbErr> {
    let sql = "UPDATE shard_leases SET expires_at = now() + $2 * interval '1 millisecond' \
               WHERE owner = $1 RETURNING shard, epoch";
    held(db, sql, vec![owner.into(), millis(ttl).into()]).await
}

/// Takes up to `limit` leases nobody holds (never held, handed back, or lapsed), in random
/// order so that processes taking at once rarely want the same ones, bumping each one's
/// epoch: from now on, a write under an earlier epoch is refused.
pub async fn take<C: ConnectionTrait>(
    db: &C,
    owner: Uuid,
    ttl: Duration,
    limit: usize,
) -> Result<Vec<Held>, DbErr> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let sql = "UPDATE shard_leases SET owner = $1, epoch = epoch + 1, acquired_at = now(), \
               expires_at = now() + $2 * interval '1 millisecond' \
               WHERE shard IN (SELECT shard FROM shard_leases \
                 WHERE owner IS NULL OR expires_at <= now() \
                 ORDER BY random() LIMIT $3 FOR UPDATE SKIP LOCKED) \
               RETURNING shard, epoch";
    let values = vec![owner.into(), millis(ttl).into(), (limit as i64).into()];
    held(db, sql, values).await
}

/// Hands `shards` back: owned by nobody and lapsed, so that another process takes them on its
/// next tick (bumping the epoch).
pub async fn hand_back<C: ConnectionTrait>(
    db: &C,
    owner: Uuid,
    shards: &[i16],
) -> Result<u64, DbErr> {
    if shards.is_empty() {
        return Ok(0);
    }
    let list = shards
        .iter()
        .map(i16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // The list is this process's own numbers, never input: inlined, it needs no array type.
    let sql = format!(
        "UPDATE shard_leases SET owner = NULL, expires_at = now() \
         WHERE owner = $1 AND shard IN ({list})"
    );
    let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, [owner.into()]);
    Ok(db.execute_raw(statement).await?.rows_affected())
}

/// The fence check of a workflow write, inside its transaction: each fenced shard's lease as
/// it is now, locked against a takeover until the transaction ends (`FOR KEY SHARE`, above).
pub async fn fences<C: ConnectionTrait>(
    txn: &C,
    fences: &[Fence],
) -> Result<HashMap<i16, (Option<Uuid>, i64)>, DbErr> {
    let mut shards: Vec<i16> = fences.iter().map(|fence| fence.shard).collect();
    shards.sort_unstable();
    shards.dedup();
    if shards.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i16, Option<Uuid>, i64)> = shard_lease::Entity::find()
        .select_only()
        .column(shard_lease::Column::Shard)
        .column(shard_lease::Column::Owner)
        .column(shard_lease::Column::Epoch)
        .filter(shard_lease::Column::Shard.is_in(shards))
        .lock(LockType::KeyShare)
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(shard, owner, epoch)| (shard, (owner, epoch)))
        .collect())
}

/// Every lease, for operators and tests.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<shard_lease::Model>, DbErr> {
    shard_lease::Entity::find().all(db).await
}

async fn held<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<Held>, DbErr> {
    let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| {
            Ok(Held {
                shard: row.try_get("", "shard")?,
                epoch: row.try_get("", "epoch")?,
            })
        })
        .collect()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
