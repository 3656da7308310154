//! A credit package (grant). Its credits are always split over five buckets:
//! `credits = remaining + held + consumed + expired + voided` (docs/design.md §4, invariant 1).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_packages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// Caller-chosen idempotency reference, unique within the account (two accounts may each
    /// have a grant named "welcome").
    pub reference: String,
    pub credits: i64,
    pub remaining: i64,
    pub held: i64,
    pub consumed: i64,
    pub expired: i64,
    pub voided: i64,
    /// `None` never expires.
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
