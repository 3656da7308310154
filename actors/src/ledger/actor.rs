//! The ledger actor: one per process, a `Batcher` over the `LedgerStore`. It serialises credit
//! commands and batches whatever queued up while the previous batch was in the database into
//! the next transaction.
//!
//! `Ledger` is the cloneable handle the rest of the system uses; it turns the actor's replies
//! into typed outcomes.
use actix::Addr;
use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use super::store::LedgerStore;
use super::{
    Command, ExpireOutcome, GrantOutcome, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome,
};
use crate::Credits;
use std::sync::Arc;

use crate::batcher::{self, BatchError, BatchLimits, BatchStore, Batcher, WriterHealth};

/// The most commands one transaction carries; bounds transaction time and lock hold time.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// Failures of the ledger itself; refusals are outcomes.
pub type LedgerError = BatchError;

#[async_trait::async_trait]
impl BatchStore for LedgerStore {
    type Command = Command;
    type Outcome = Outcome;
    const NAME: &'static str = "ledger";

    async fn apply(&self, commands: &[Command]) -> Result<Vec<Outcome>, DbErr> {
        LedgerStore::apply(self, commands).await
    }
}

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
        match self
            .execute(Command::Grant {
                account_id,
                credits,
                expires_at,
                reference,
            })
            .await?
        {
            Outcome::Grant(outcome) => Ok(outcome),
            other => unreachable!("grant answered with {other:?}"),
        }
    }

    pub async fn hold(
        &self,
        account_id: Uuid,
        credits: Credits,
        generation_id: Option<Uuid>,
    ) -> Result<HoldOutcome, LedgerError> {
        let hold_id = Uuid::now_v7();
        match self
            .execute(Command::Hold {
                hold_id,
                account_id,
                credits,
                generation_id,
            })
            .await?
        {
            Outcome::Hold(outcome) => Ok(outcome),
            other => unreachable!("hold answered with {other:?}"),
        }
    }

    pub async fn settle(&self, hold_id: Uuid, amount: i64) -> Result<SettleOutcome, LedgerError> {
        match self.execute(Command::Settle { hold_id, amount }).await? {
            Outcome::Settle(outcome) => Ok(outcome),
            other => unreachable!("settle answered with {other:?}"),
        }
    }

    pub async fn release(&self, hold_id: Uuid) -> Result<ReleaseOutcome, LedgerError> {
        match self.execute(Command::Release { hold_id }).await? {
            Outcome::Release(outcome) => Ok(outcome),
            other => unreachable!("release answered with {other:?}"),
        }
    }

    pub async fn expire_due(&self, account_id: Uuid) -> Result<ExpireOutcome, LedgerError> {
        match self.execute(Command::ExpireDue { account_id }).await? {
            Outcome::Expire(outcome) => Ok(outcome),
            other => unreachable!("expire answered with {other:?}"),
        }
    }
}
