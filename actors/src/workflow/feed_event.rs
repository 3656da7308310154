//! What the feed of committed transitions carries, and who may see it: shared by the feed and
//! the reads that fill it.
use atelier_entities::workflow::WorkflowState;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One committed transition, with what subscribers filter on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub id: i64,
    pub workflow_id: Uuid,
    pub account_id: Uuid,
    pub provider: String,
    pub from: Option<WorkflowState>,
    pub to: WorkflowState,
    pub reason: String,
    pub attempt: i32,
    pub version: i64,
    pub at: DateTime<Utc>,
}

/// Which events a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every generation's (operators).
    All,
    /// One account's generations.
    Account(Uuid),
    /// One generation's.
    Workflow(Uuid),
}

impl Scope {
    pub fn admits(&self, event: &FeedEvent) -> bool {
        match self {
            Scope::All => true,
            Scope::Account(account_id) => event.account_id == *account_id,
            Scope::Workflow(workflow_id) => event.workflow_id == *workflow_id,
        }
    }
}
