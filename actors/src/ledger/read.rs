//! Read-only views of the ledger. Expiry is applied here, at read time: a package past its
//! `expires_at` contributes nothing available even before the sweeper has recorded it.
use std::collections::HashMap;

use atelier_entities::ledger_entry::EntryKind;
use atelier_entities::{credit_package, hold, hold_allocation, ledger_entry};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, ExprTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::db::page_of;

use super::book::{consumption_order, is_expired};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub available: i64,
    pub held: i64,
    /// Unexpired packages with credits left or held, in the order holds consume them.
    pub packages: Vec<credit_package::Model>,
}

/// The balance as of `now` from an account's live packages.
pub fn balance_from(mut live: Vec<credit_package::Model>, now: DateTime<Utc>) -> Balance {
    let held = live.iter().map(|package| package.held).sum();
    live.retain(|package| !is_expired(package, now));
    live.sort_by_key(consumption_order);
    let available = live.iter().map(|package| package.remaining).sum();
    Balance {
        available,
        held,
        packages: live,
    }
}

pub async fn balance<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Balance, DbErr> {
    let live = credit_package::Entity::find()
        .filter(credit_package::Column::AccountId.eq(account_id))
        .filter(
            credit_package::Column::Remaining
                .gt(0)
                .or(credit_package::Column::Held.gt(0)),
        )
        .all(db)
        .await?;
    Ok(balance_from(live, now))
}

/// Which of an account's entries a page shows; every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    pub kind: Option<EntryKind>,
    pub generation_id: Option<Uuid>,
    /// Entries made at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries made before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// One page of an account's entries that pass `filter`, newest first. `before` is the id the
/// previous page ended at; the returned cursor is `Some` while older entries remain.
pub async fn entries_page<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    filter: &EntryFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<(Vec<ledger_entry::Model>, Option<i64>), DbErr> {
    let mut query = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::AccountId.eq(account_id))
        .order_by_desc(ledger_entry::Column::Id)
        .limit(limit + 1);
    if let Some(before) = before {
        query = query.filter(ledger_entry::Column::Id.lt(before));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(ledger_entry::Column::Kind.eq(kind));
    }
    if let Some(generation_id) = filter.generation_id {
        query = query.filter(ledger_entry::Column::GenerationId.eq(generation_id));
    }
    if let Some(from) = filter.from {
        query = query.filter(ledger_entry::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(ledger_entry::Column::CreatedAt.lt(to));
    }
    let entries = query.all(db).await?;
    Ok(page_of(entries, limit, |entry| entry.id))
}

/// Accounts holding credits that expired and are not yet recorded as such: the sweeper's work.
pub async fn accounts_with_due_expiry<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, DbErr> {
    credit_package::Entity::find()
        .select_only()
        .column(credit_package::Column::AccountId)
        .distinct()
        .filter(credit_package::Column::Remaining.gt(0))
        .filter(credit_package::Column::ExpiresAt.lte(now))
        .into_tuple()
        .all(db)
        .await
}

/// These holds, by id (a missing one is absent from the map).
pub async fn holds<C: ConnectionTrait>(
    db: &C,
    hold_ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, hold::Model>, DbErr> {
    let rows = hold::Entity::find()
        .filter(hold::Column::Id.is_in(hold_ids))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// A hold as an operator reads it: the hold, what it took from each package (in consumption
/// order) and every ledger entry made under it, oldest first.
#[derive(Debug, Clone)]
pub struct HoldStory {
    pub hold: hold::Model,
    pub allocations: Vec<hold_allocation::Model>,
    pub entries: Vec<ledger_entry::Model>,
}

pub async fn hold_story<C: ConnectionTrait>(
    db: &C,
    hold_id: Uuid,
) -> Result<Option<HoldStory>, DbErr> {
    let Some(hold) = hold::Entity::find_by_id(hold_id).one(db).await? else {
        return Ok(None);
    };
    let allocations = hold_allocation::Entity::find()
        .filter(hold_allocation::Column::HoldId.eq(hold_id))
        .order_by_asc(hold_allocation::Column::Position)
        .all(db)
        .await?;
    // Narrowed to the account first: `ledger_entries_by_account` serves it.
    let entries = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::AccountId.eq(hold.account_id))
        .filter(ledger_entry::Column::HoldId.eq(hold_id))
        .order_by_asc(ledger_entry::Column::Id)
        .all(db)
        .await?;
    Ok(Some(HoldStory {
        hold,
        allocations,
        entries,
    }))
}

/// The recorded (available, held) balances of these accounts as of `now`, expiry applied: one
/// query over their live packages. An account without any is absent.
pub async fn balances_of<C: ConnectionTrait>(
    db: &C,
    account_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, (i64, i64)>, DbErr> {
    let live = credit_package::Entity::find()
        .filter(credit_package::Column::AccountId.is_in(account_ids.iter().copied()))
        .filter(
            credit_package::Column::Remaining
                .gt(0)
                .or(credit_package::Column::Held.gt(0)),
        )
        .all(db)
        .await?;
    let mut by_account: HashMap<Uuid, Vec<credit_package::Model>> = HashMap::new();
    for package in live {
        by_account
            .entry(package.account_id)
            .or_default()
            .push(package);
    }
    Ok(by_account
        .into_iter()
        .map(|(account_id, packages)| {
            let balance = balance_from(packages, now);
            (account_id, (balance.available, balance.held))
        })
        .collect())
}

/// An account's packages, spent or not, newest first: at most `limit`.
pub async fn packages_of<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    limit: u64,
) -> Result<Vec<credit_package::Model>, DbErr> {
    credit_package::Entity::find()
        .filter(credit_package::Column::AccountId.eq(account_id))
        .order_by_desc(credit_package::Column::CreatedAt)
        .order_by_desc(credit_package::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// An account's open holds, oldest first: at most `limit`.
pub async fn open_holds<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    limit: u64,
) -> Result<Vec<hold::Model>, DbErr> {
    hold::Entity::find()
        .filter(hold::Column::AccountId.eq(account_id))
        .filter(hold::Column::State.eq(hold::HoldState::Open))
        .order_by_asc(hold::Column::CreatedAt)
        .order_by_asc(hold::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The credits every entry kind moved in [`from`, `to`), over all accounts (kinds that moved
/// none are absent).
pub async fn totals_by_kind<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<EntryKind, i64>, DbErr> {
    let rows: Vec<(EntryKind, i64)> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::Kind)
        // A sum of up to 10^12 per entry: cast, as PostgreSQL sums bigints into a numeric.
        .column_as(
            sea_orm::sea_query::Expr::cust("CAST(SUM(amount) AS BIGINT)"),
            "total",
        )
        .filter(ledger_entry::Column::CreatedAt.gte(from))
        .filter(ledger_entry::Column::CreatedAt.lt(to))
        .group_by(ledger_entry::Column::Kind)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// How many rows the ledger holds: what a verify reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowCounts {
    pub packages: u64,
    pub holds: u64,
    pub ledger_entries: u64,
}

pub async fn row_counts<C: ConnectionTrait>(db: &C) -> Result<RowCounts, DbErr> {
    use sea_orm::PaginatorTrait;
    Ok(RowCounts {
        packages: credit_package::Entity::find().count(db).await?,
        holds: hold::Entity::find().count(db).await?,
        ledger_entries: ledger_entry::Entity::find().count(db).await?,
    })
}
