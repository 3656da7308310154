//! One transition of a workflow: its timeline, append-only.
use sea_orm::entity::prelude::*;

use crate::workflow::WorkflowState;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workflow_id: Uuid,
    /// `None` for the event that created the workflow.
    pub from_state: Option<WorkflowState>,
    pub to_state: WorkflowState,
    pub reason: String,
    pub attempt: i32,
    /// The workflow's version after this event: 0 for its creation, then one more each.
    pub version: i64,
    pub at: DateTimeUtc,
    /// The shard lease epoch the write was made under; `None` for writes no lease fences
    /// (creates, a client's cancel, a single engine on SQLite).
    pub epoch: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
