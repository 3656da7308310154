//! `Ledger`: the cloneable handle through which the rest of the system moves credits. Behind
//! it runs one `Batcher` over the `LedgerStore` per process, which serialises credit commands
//! and batches whatever queued up while the previous batch was in the database into the next
//! transaction. The handle turns the batcher's replies into typed outcomes.
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::Command;
use super::outcome::{
    ExpireOutcome, GrantOutcome, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome, VoidOutcome,
};
use super::store::LedgerStore;
use crate::Credits;
use crate::batcher::{self, BatchError, BatchLimits, Batcher, WriterHealth};

/// The most commands one transaction carries; bounds transaction time and lock hold time.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// Failures of the ledger itself; refusals are outcomes.
pub type LedgerError = BatchError;

/// The handle to the ledger actor.
#[derive(Clone)]
pub struct Ledger {
    actor: Addr<Batcher<LedgerStore>>,
    store: LedgerStore,
    health: Arc<WriterHealth>,
}

impl Ledger {
    /// Starts the actor on its own arbiter (thread), so that batching never waits behind
    /// HTTP handlers or generation actors.
    pub fn start(store: LedgerStore, max_batch: usize) -> Self {
        Self::start_with(store, BatchLimits::new(max_batch))
    }

    pub fn start_with(store: LedgerStore, limits: BatchLimits) -> Self {
        let (actor, health) = Batcher::start(store.clone(), limits);
        Self {
            actor,
            store,
            health,
        }
    }

    /// Whether the ledger's writer runs and is not stuck.
    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    pub fn store(&self) -> &LedgerStore {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.store.clock().now()
    }

    pub async fn execute(&self, command: Command) -> Result<Outcome, LedgerError> {
        batcher::execute(&self.actor, command).await
    }

    pub async fn grant(
        &self,
        account_id: Uuid,
        credits: Credits,
        expires_at: Option<DateTime<Utc>>,
        reference: String,
    ) -> Result<GrantOutcome, LedgerError> {
        batcher::execute_as(
            &self.actor,
            Command::Grant {
                account_id,
                credits,
                expires_at,
                reference,
            },
        )
        .await
    }

    pub async fn hold(
        &self,
        account_id: Uuid,
        credits: Credits,
        generation_id: Option<Uuid>,
    ) -> Result<HoldOutcome, LedgerError> {
        let hold_id = Uuid::now_v7();
        batcher::execute_as(
            &self.actor,
            Command::Hold {
                hold_id,
                account_id,
                credits,
                generation_id,
            },
        )
        .await
    }

    pub async fn settle(&self, hold_id: Uuid, amount: i64) -> Result<SettleOutcome, LedgerError> {
        batcher::execute_as(&self.actor, Command::Settle { hold_id, amount }).await
    }

    pub async fn release(&self, hold_id: Uuid) -> Result<ReleaseOutcome, LedgerError> {
        batcher::execute_as(&self.actor, Command::Release { hold_id }).await
    }

    pub async fn expire_due(&self, account_id: Uuid) -> Result<ExpireOutcome, LedgerError> {
        batcher::execute_as(&self.actor, Command::ExpireDue { account_id }).await
    }

    /// Voids what is left unused of the account's package `package_id` (docs/design.md §3).
    pub async fn void(
        &self,
        account_id: Uuid,
        package_id: Uuid,
    ) -> Result<VoidOutcome, LedgerError> {
        batcher::execute_as(
            &self.actor,
            Command::Void {
                account_id,
                package_id,
            },
        )
        .await
    }
}
