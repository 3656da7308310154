//! How much a hold took from one package, and in which order (settle consumes in that order).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hold_allocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hold_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub package_id: Uuid,
    pub position: i32,
    pub amount: i64,
}

impl ActiveModelBehavior for ActiveModel {}
