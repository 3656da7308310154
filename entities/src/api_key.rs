//! An account's API key. Only its SHA-256 is kept, with its last four characters so that a
//! listing can tell keys apart; the key itself is shown once, when it is made.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// SHA-256 of the key, hex.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// The key's last four characters; `None` for a key made before keys were listed.
    pub last_four: Option<String>,
    pub created_at: DateTimeUtc,
    /// When the key stops working: `None` until a rotation gives it a grace period.
    pub expires_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
