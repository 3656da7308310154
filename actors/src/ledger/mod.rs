//! The credit ledger (DESIGN.md §3): packages that expire, holds taken FIFO by expiry, settle
//! and release exactly once, and an append-only record of every movement.
//!
//! - `book`: the rules, pure and in memory;
//! - `store`: runs a batch of commands in one database transaction;
//! - `actor`: serialises and batches commands in-process;
//! - `read`: balances and the entry list, straight from the database;
//! - `verify`: checks invariants 1–3 of DESIGN.md §4 over the whole database.

pub mod actor;
pub mod book;
pub mod outcome;
pub mod read;
pub mod store;
pub mod sweeper;
pub mod verify;
mod write_pg;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use actor::{DEFAULT_MAX_BATCH, Ledger, LedgerError};
pub use book::HoldRecord;
pub use outcome::{ExpireOutcome, GrantOutcome, HoldOutcome, ReleaseOutcome, SettleOutcome};
pub use store::LedgerStore;

use crate::Credits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Grant {
        account_id: Uuid,
        credits: Credits,
        expires_at: Option<DateTime<Utc>>,
        reference: String,
    },
    Hold {
        hold_id: Uuid,
        account_id: Uuid,
        credits: Credits,
        generation_id: Option<Uuid>,
    },
    Settle {
        hold_id: Uuid,
        amount: i64,
    },
    Release {
        hold_id: Uuid,
    },
    ExpireDue {
        account_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Grant(GrantOutcome),
    Hold(HoldOutcome),
    Settle(SettleOutcome),
    Release(ReleaseOutcome),
    Expire(ExpireOutcome),
}

impl Command {
    /// The account this command locks, when it names one directly.
    pub fn account_id(&self) -> Option<Uuid> {
        match self {
            Command::Grant { account_id, .. }
            | Command::Hold { account_id, .. }
            | Command::ExpireDue { account_id } => Some(*account_id),
            Command::Settle { .. } | Command::Release { .. } => None,
        }
    }

    /// The existing hold this command resolves.
    pub fn resolves_hold(&self) -> Option<Uuid> {
        match self {
            Command::Settle { hold_id, .. } | Command::Release { hold_id } => Some(*hold_id),
            _ => None,
        }
    }
}
