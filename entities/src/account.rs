//! An account: the owner of credit packages and (later) generations.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: Option<String>,
    /// SHA-256 of the account's first API key, hex. Written at creation and no longer read:
    /// since keys can be rotated they live in `api_keys`, which is what authenticates.
    #[sea_orm(unique)]
    pub api_key_hash: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
