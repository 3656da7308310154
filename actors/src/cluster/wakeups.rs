//! Waking the owner of a workflow that another process touched (a callback or a cancel that
//! landed there, a generation created there): `NOTIFY atelier_wake` with `shard:id` items in the
//! payload, and a `LISTEN` in every engine process (`listener.rs`), which wakes the workflow if
//! it holds the shard. PostgreSQL only. The owner's tick stays the correctness path: a notification lost
//! (the listener reconnecting) costs a tick, never the work.
//!
//! A NOTIFY inside a transaction takes a database-wide lock at its commit, so notifications
//! are sent on their own, after the writes they announce committed — never from a ledger or
//! workflow transaction — and a few at a time: the sender gathers what arrived meanwhile into
//! one statement.
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::listener::{self, OnNotify};
use super::shard::shard_of;

/// The channel every process notifies and every engine listens on.
pub const CHANNEL: &str = "atelier_wake";
/// Ids per notification: a payload stays far below PostgreSQL's 8,000 bytes.
const PER_NOTIFY: usize = 100;
/// Ids waiting to be sent; past this, a wake is dropped (the tick finds the work anyway).
const QUEUE: usize = 10_000;

/// Sends wake-ups; cheap to clone.
#[derive(Clone)]
pub struct Wakeups {
    queue: Option<mpsc::Sender<Uuid>>,
}

impl Wakeups {
    /// Sends on `db` when it is PostgreSQL (the sending task on the current runtime); a no-op
    /// elsewhere.
    pub fn start(db: &DatabaseConnection) -> Self {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return Self { queue: None };
        }
        let (queue, ids) = mpsc::channel(QUEUE);
        tokio::spawn(send_all(db.clone(), ids));
        Self { queue: Some(queue) }
    }

    /// Asks the process that holds `id`'s shard to look at it now.
    pub fn wake(&self, id: Uuid) {
        if let Some(queue) = &self.queue
            && queue.try_send(id).is_err()
        {
            tracing::debug!(generation_id = %id, "wake-up queue full; the owner's tick will find it");
        }
    }
}

async fn send_all(db: DatabaseConnection, mut ids: mpsc::Receiver<Uuid>) {
    let mut batch = Vec::with_capacity(PER_NOTIFY);
    while ids.recv_many(&mut batch, PER_NOTIFY).await > 0 {
        let payload: Vec<String> = batch
            .drain(..)
            .map(|id| format!("{}:{id}", shard_of(id)))
            .collect();
        if let Err(error) = listener::notify(&db, CHANNEL, &payload.join(",")).await {
            tracing::warn!(%error, "could not send wake-ups; the owners' ticks will find the work");
        }
    }
}

/// The ids a payload names (malformed items are skipped).
pub fn parse(payload: &str) -> impl Iterator<Item = Uuid> + '_ {
    payload.split(',').filter_map(|item| {
        let (shard, id) = item.split_once(':')?;
        let id: Uuid = id.parse().ok()?;
        (shard.parse::<i16>().ok()? == shard_of(id)).then_some(id)
    })
}

/// The engine's channel for `listener::listen`: `wake` is called with every id notified.
pub fn channel(wake: impl Fn(Uuid) + Send + Sync + 'static) -> (&'static str, OnNotify) {
    (
        CHANNEL,
        Box::new(move |payload| parse(payload).for_each(&wake)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_ids_with_their_shards() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let payload = format!("{}:{a},{}:{b},junk,7:{a}", shard_of(a), shard_of(b));
        let ids: Vec<Uuid> = parse(&payload).collect();
        // The last item names the wrong shard for its id: skipped (7 is a's only by chance).
        let expected = if shard_of(a) == 7 {
            vec![a, b, a]
        } else {
            vec![a, b]
        };
        assert_eq!(ids, expected);
    }
}
