//! The pruner: every `retention.interval_secs`, where the engine runs, one pass deletes what
//! generations that ended more than `retention.days` ago leave behind
//! (`workflow::retention::prune_batch`) and the result objects of those settled more than
//! `retention.results_days` ago, in batches of `retention.batch_size` with a rest of
//! `retention.pause_ms` between two, until a batch comes back short.
//!
//! A plain task on its own thread, as the webhook sender: nothing is sent to it, a batch
//! holds a write transaction (on SQLite, the process's writer turn) across awaits, and a
//! panic in one pass must not end it (actix restarts nothing), so each pass runs under
//! `catch_unwind`. Everything it knows is in the rows: a pass cut short by a crash or a
//! stop is finished by the next, here or in another process.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::config::RetentionConfig;
use crate::Clock;
use crate::storage::Storage;
use crate::workflow::retention::{self, Pruned};

/// Most result objects deleted at once.
const DELETE_CONCURRENCY: usize = 8;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub pruned: Pruned,
    pub results_expired: u64,
    pub batches: u64,
}

/// The running pruner: dropping it stops the pruner's thread (a batch cut short rolls back).
pub struct PrunerHandle(actix::Arbiter);

impl PrunerHandle {
    /// Stops the pruner's thread now, for an owner that cannot drop it (one about to remove
    /// the database it prunes).
    pub fn stop(&self) {
        self.0.stop();
    }
}

impl Drop for PrunerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
pub struct Pruner {
    db: DatabaseConnection,
    storage: Storage,
    clock: Arc<dyn Clock>,
    config: RetentionConfig,
}

impl Pruner {
    pub fn new(
        db: DatabaseConnection,
        storage: Storage,
        clock: Arc<dyn Clock>,
        config: RetentionConfig,
    ) -> Self {
        Self {
            db,
            storage,
            clock,
            config,
        }
    }

    /// Runs a pass every `interval_secs` (the first at once) on a thread of its own until the
    /// handle is dropped.
    pub fn spawn(self) -> PrunerHandle {
        let arbiter = actix::Arbiter::new();
        arbiter.spawn(async move {
            let mut ticks = tokio::time::interval(self.config.interval());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.logged_pass().await;
            }
        });
        PrunerHandle(arbiter)
    }

    /// One `pass`, what it did, its failure or its panic logged.
    async fn logged_pass(&self) {
        match AssertUnwindSafe(self.pass()).catch_unwind().await {
            Ok(Ok(pass)) if pass.pruned.workflows == 0 && pass.results_expired == 0 => {}
            Ok(Ok(pass)) => tracing::info!(
                workflows = pass.pruned.workflows,
                events = pass.pruned.events,
                callbacks = pass.pruned.callbacks,
                idempotency_keys = pass.pruned.keys,
                webhook_deliveries = pass.pruned.deliveries,
                results_expired = pass.results_expired,
                batches = pass.batches,
                "retention pass"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "retention pass failed; will retry"),
            Err(_) => tracing::error!("retention pass panicked; the pruner goes on"),
        }
    }

    /// Prunes every workflow due, then expires every result due, batch by batch.
    pub async fn pass(&self) -> Result<Pass, DbErr> {
        let mut pass = Pass::default();
        let now = self.clock.now();
        let batch = self.config.batch_size;
        if let Some(keep) = self.config.rows() {
            let cutoff = now - keep;
            loop {
                let pruned =
                    retention::prune_batch(&self.db, cutoff, self.clock.now(), batch).await?;
                pass.pruned.add(pruned);
                pass.batches += 1;
                if pruned.workflows < batch {
                    break;
                }
                tokio::time::sleep(self.config.pause()).await;
            }
        }
        if let Some(keep) = self.config.results() {
            let cutoff = now - keep;
            loop {
                let (expired, full) = self.expire_results(cutoff).await?;
                pass.results_expired += expired;
                pass.batches += 1;
                if !full {
                    break;
                }
                tokio::time::sleep(self.config.pause()).await;
            }
        }
        Ok(pass)
    }

    /// Deletes one batch of result objects settled before `cutoff`, then marks their rows:
    /// how many it marked, and whether the batch was full and went through (more may be due).
    async fn expire_results(&self, cutoff: DateTime<Utc>) -> Result<(u64, bool), DbErr> {
        let due = retention::results_to_expire(&self.db, cutoff, self.config.batch_size).await?;
        let full = due.len() as u64 == self.config.batch_size;
        let deleted: Vec<Option<Uuid>> = futures::stream::iter(due)
            .map(|(id, key)| async move {
                match self.storage.delete(&key).await {
                    Ok(()) => Some(id),
                    Err(error) => {
                        tracing::warn!(generation_id = %id, %error, "cannot delete an expired result; will retry");
                        None
                    }
                }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let failed = deleted.iter().any(Option::is_none);
        let ids: Vec<Uuid> = deleted.into_iter().flatten().collect();
        let marked = retention::mark_results_expired(&self.db, &ids, self.clock.now()).await?;
        // Storage that fails is left to the next pass rather than asked again at once.
        Ok((marked, full && !failed))
    }
}
