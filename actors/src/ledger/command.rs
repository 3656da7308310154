//! What the ledger is asked to do. Every movement of credits is one of these commands, run
//! by `store` in a shared transaction against the rules of `book`.
use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    /// Voids the package's unused remainder (docs/design.md §3).
    Void {
        account_id: Uuid,
        package_id: Uuid,
    },
}

impl Command {
    /// The account this command locks, when it names one directly.
    pub fn account_id(&self) -> Option<Uuid> {
        match self {
            Command::Grant { account_id, .. }
            | Command::Hold { account_id, .. }
            | Command::ExpireDue { account_id }
            | Command::Void { account_id, .. } => Some(*account_id),
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
