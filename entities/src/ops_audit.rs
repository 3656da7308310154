//! One operator action, as the audit log keeps it (appended before the action runs).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ops_audit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    /// Who acted: `admin` (the admin token) for now.
    pub operator: String,
    /// What was done, e.g. `generation.cancel`.
    pub action: String,
    /// What kind of thing it was done to, e.g. `generation`, `account`, `provider`.
    pub target_kind: String,
    /// Which one; `None` for an action over a filter.
    pub target_id: Option<String>,
    /// The filter a bulk action matched, as JSON.
    pub filter: Option<String>,
    pub reason: Option<String>,
    /// The peer address the request came from.
    pub source: String,
}

impl ActiveModelBehavior for ActiveModel {}
