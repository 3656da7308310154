//! A provider an operator paused: new work fails over or waits until the resume deletes it.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_pauses")]
pub struct Model {
    /// The provider's name (its `[providers.<name>]` table).
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    /// Why, as the operator said it (kept for operators only; the timeline does not quote it).
    pub reason: String,
    pub paused_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
