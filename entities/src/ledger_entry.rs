//! The append-only ledger: every change to a package's buckets is one row, carrying the
//! account's recorded balances after it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum EntryKind {
    #[sea_orm(string_value = "grant")]
    Grant,
    #[sea_orm(string_value = "hold")]
    Hold,
    #[sea_orm(string_value = "settle")]
    Settle,
    #[sea_orm(string_value = "release")]
    Release,
    #[sea_orm(string_value = "expire")]
    Expire,
    #[sea_orm(string_value = "void")]
    Void,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Grant => "grant",
            EntryKind::Hold => "hold",
            EntryKind::Settle => "settle",
            EntryKind::Release => "release",
            EntryKind::Expire => "expire",
            EntryKind::Void => "void",
        }
    }
}

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: Uuid,
    pub package_id: Uuid,
    pub kind: EntryKind,
    /// Always positive; `kind` says which buckets it moved between.
    pub amount: i64,
    pub hold_id: Option<Uuid>,
    pub generation_id: Option<Uuid>,
    pub available_after: i64,
    pub held_after: i64,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
