//! Provider callbacks, stored before they are acknowledged and delivered until processed.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_inbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workflow_id: Uuid,
    pub provider: String,
    /// Identifies a delivery, so that a replay is stored once.
    #[sea_orm(unique)]
    pub dedup_key: String,
    pub payload: String,
    pub received_at: DateTimeUtc,
    pub processed_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
