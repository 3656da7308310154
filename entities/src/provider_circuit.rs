//! A provider whose circuit an engine process opened: the others open theirs until
//! `open_until` (the database's clock). Past that time the row says nothing.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_circuits")]
pub struct Model {
    /// The provider's name (its `[providers.<name>]` table).
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    pub open_until: DateTimeUtc,
    /// The engine process that opened it (an `engine_members` id).
    pub opened_by: Uuid,
    /// The error that opened it, as the provider's health keeps it (at most 200 characters).
    pub reason: String,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
