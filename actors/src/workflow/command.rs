//! What the workflow writer is asked to do: every write of `workflows`, `workflow_events` and
//! `webhook_inbox` is one of these commands, applied by `batch` in a shared transaction.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::machine::Event;
use crate::Credits;
use crate::cluster::Fence;

/// The scope under which generation creates claim their `Idempotency-Key`.
pub const IDEMPOTENCY_SCOPE: &str = "generation";

/// Everything a new workflow is made of.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub provider: String,
    pub cost: Credits,
    pub inputs: String,
    pub callback_token: String,
    pub deadline_at: DateTime<Utc>,
    /// The client's `Idempotency-Key` and a hash of what it sent with it.
    pub idempotency: Option<(String, String)>,
    /// The released generation this one re-runs (an operator's retry).
    pub retry_of: Option<Uuid>,
}

/// A provider's callback, authenticated, to keep in the inbox until its workflow acts on it.
#[derive(Debug, Clone)]
pub struct NewCallback {
    pub workflow_id: Uuid,
    pub provider: String,
    /// The same callback delivered twice has the same key and is stored once.
    pub dedup_key: String,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub enum WriteCommand {
    Create(NewWorkflow),
    Transition {
        id: Uuid,
        /// `None`: whatever version the row is at.
        expected_version: Option<i64>,
        event: Event,
        /// When the engine should look at the workflow again (ignored when terminal).
        next_attempt_at: Option<DateTime<Utc>>,
        /// Inbox rows (callbacks) this transition acts on: marked processed in its
        /// transaction, so that a crash can never keep the callback's news and lose its effect.
        consumes: Vec<i64>,
        /// The engine's lease on the workflow's shard; `None` for writes no lease fences (a
        /// client's cancel, the only engine on SQLite).
        fence: Option<Fence>,
    },
    /// Records another attempt in the current state and when to look again, if the row is
    /// still at `expected_version`.
    Reschedule {
        id: Uuid,
        expected_version: i64,
        attempt: i32,
        next_attempt_at: DateTime<Utc>,
        fence: Option<Fence>,
    },
    /// Stores a callback in the inbox (a replay, by its dedup key, is stored once).
    StoreCallback(NewCallback),
    /// Marks stored callbacks as dealt with (ones that decide nothing).
    CallbacksProcessed {
        inbox_ids: Vec<i64>,
        fence: Option<Fence>,
    },
}

impl WriteCommand {
    /// The idempotency key a create claims; a batch carries each key at most once.
    pub fn claimed_key(&self) -> Option<(Uuid, &str)> {
        match self {
            WriteCommand::Create(new) => new
                .idempotency
                .as_ref()
                .map(|(key, _)| (new.account_id, key.as_str())),
            _ => None,
        }
    }

    /// The inbox dedup key a stored callback claims; a batch carries each at most once.
    pub fn claimed_callback(&self) -> Option<&str> {
        match self {
            WriteCommand::StoreCallback(callback) => Some(&callback.dedup_key),
            _ => None,
        }
    }

    /// The lease the command is fenced by: it applies only if its writer still holds it.
    pub fn fence(&self) -> Option<Fence> {
        match self {
            WriteCommand::Transition { fence, .. }
            | WriteCommand::Reschedule { fence, .. }
            | WriteCommand::CallbacksProcessed { fence, .. } => *fence,
            WriteCommand::Create(_) | WriteCommand::StoreCallback(_) => None,
        }
    }

    /// The workflow row the command changes, if it names one.
    pub fn row_id(&self) -> Option<Uuid> {
        match self {
            WriteCommand::Transition { id, .. } | WriteCommand::Reschedule { id, .. } => Some(*id),
            WriteCommand::Create(_)
            | WriteCommand::StoreCallback(_)
            | WriteCommand::CallbacksProcessed { .. } => None,
        }
    }
}
