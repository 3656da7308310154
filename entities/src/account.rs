//! An account: the owner of credit packages and generations.
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
    /// When an operator disabled the account; `None` while it is enabled. A disabled account's
    /// keys answer 403 `account_disabled` on every client route.
    pub disabled_at: Option<DateTimeUtc>,
    /// Why, as the operator said.
    pub disabled_reason: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
