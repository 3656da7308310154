//! One event for one endpoint (the outbox): written with the terminal transition it reports,
//! then sent, retried and finally `delivered` or `failed`.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    /// Also the `webhook-id` of every attempt (`msg_` + the id without dashes).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub workflow_id: Uuid,
    pub event_type: String,
    /// The JSON body, fixed at the transition: every retry sends the same bytes.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts begun (counted when one is claimed, so a crash mid-send counts too).
    pub attempts: i32,
    /// When the next attempt is due (pending only); while an attempt runs, when its claim
    /// lapses.
    pub next_attempt_at: Option<DateTimeUtc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
