//! A URL an account asked us to call when its generations end (completion webhooks).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    /// The event types sent there, comma-separated (`generation.settled,generation.released`).
    pub events: String,
    /// The `whsec_` signing secret, kept as given out: signing needs it back. Never log a row.
    pub secret: String,
    pub created_at: DateTimeUtc,
    /// Deleted endpoints are kept (their deliveries refer to them) but receive nothing more.
    pub deleted_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
