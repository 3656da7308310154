//! A generation workflow: one paid try-on walking the state machine of docs/design.md §1. The row is
//! the truth; the generation actor is a cache of it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
pub enum WorkflowState {
    #[sea_orm(string_value = "reserved")]
    Reserved,
    #[sea_orm(string_value = "submitted")]
    Submitted,
    #[sea_orm(string_value = "awaiting_callback")]
    AwaitingCallback,
    #[sea_orm(string_value = "uploading")]
    Uploading,
    #[sea_orm(string_value = "settled")]
    Settled,
    #[sea_orm(string_value = "released")]
    Released,
}

impl WorkflowState {
    pub const ALL: [WorkflowState; 6] = [
        WorkflowState::Reserved,
        WorkflowState::Submitted,
        WorkflowState::AwaitingCallback,
        WorkflowState::Uploading,
        WorkflowState::Settled,
        WorkflowState::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Reserved => "reserved",
            WorkflowState::Submitted => "submitted",
            WorkflowState::AwaitingCallback => "awaiting_callback",
            WorkflowState::Uploading => "uploading",
            WorkflowState::Settled => "settled",
            WorkflowState::Released => "released",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, WorkflowState::Settled | WorkflowState::Released)
    }
}

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workflows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub state: WorkflowState,
    /// Bumped by every transition; a transition names the version it read (compare-and-set).
    pub version: i64,
    pub provider: String,
    /// Credits held (the most a settle can charge).
    pub cost: i64,
    /// What the settle charges when less than `cost`: the provider reported a lower actual
    /// cost, or the task failed over to a cheaper provider.
    pub charge: Option<i64>,
    #[sea_orm(unique)]
    pub hold_id: Uuid,
    /// The request's inputs as JSON (`workflow::Inputs`).
    pub inputs: String,
    /// The secret in this workflow's webhook URL.
    pub callback_token: String,
    pub provider_task_id: Option<String>,
    /// Where the provider said the result is, until it is copied into our storage.
    pub result_source: Option<String>,
    /// The result's key in our storage, once settled.
    pub result_key: Option<String>,
    /// Attempts made in the current state.
    pub attempt: i32,
    /// When the engine must next act on this workflow: a retry, a poll or a deadline.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Past this instant the workflow is released with `timeout`.
    pub deadline_at: DateTimeUtc,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The released generation an operator re-ran as this one (`POST /v1/ops/generations/{id}/retry`).
    pub retry_of: Option<Uuid>,
    /// The shard it belongs to (`shard_leases`): the last byte of its id, fixed at create.
    pub shard: i16,
    /// When retention deleted this ended workflow's events, callbacks, idempotency key and
    /// finished webhook deliveries (the row stays: the ledger names it).
    pub pruned_at: Option<DateTimeUtc>,
    /// When retention deleted its result object from storage.
    pub result_expired_at: Option<DateTimeUtc>,
}

impl Model {
    /// What settling this workflow charges: `charge` when set (always less), else `cost`.
    pub fn charge_due(&self) -> i64 {
        self.charge.unwrap_or(self.cost)
    }
}

impl ActiveModelBehavior for ActiveModel {}
