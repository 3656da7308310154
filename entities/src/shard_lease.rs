//! Who owns a shard of the workflows: one row per shard, fixed since the migration that made
//! them. The owner drives the shard's workflows while `expires_at` (the database's clock) is
//! ahead; `epoch` grows by one at every take and fences every workflow write.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "shard_leases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub shard: i16,
    /// The engine process (`engine_members.id`) that took it last; `None` before any.
    pub owner: Option<Uuid>,
    pub epoch: i64,
    pub expires_at: DateTimeUtc,
    pub acquired_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
