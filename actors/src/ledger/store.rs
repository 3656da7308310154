//! Runs a batch of ledger commands in ONE database transaction: lock the accounts involved,
//! load their live packages and the holds named, apply the commands in order through `Book`,
//! write back what changed, commit. Either every command's effect is stored or none is.
//!
//! Cross-process safety comes from the transaction, not from the actor: SQLite's IMMEDIATE
//! transactions admit one writer at a time; on PostgreSQL the account rows are locked
//! `FOR UPDATE` in id order (so two processes cannot deadlock) before anything is read.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use atelier_entities::credit_package::Model as Package;
use atelier_entities::hold::Model as HoldRow;
use atelier_entities::{account, credit_package, hold, hold_allocation, ledger_entry};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, ExprTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::book::{Book, Changes, NewEntry};
use super::command::Command;
use super::outcome::Outcome;
use super::write_pg;
use crate::Clock;
use crate::batcher::BatchStore;
use crate::db;

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters at ≤ 12 columns.
const INSERT_CHUNK: usize = 2_000;

#[derive(Clone)]
pub struct LedgerStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl LedgerStore {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Applies `commands` in order, atomically, retrying the whole transaction on transient
    /// errors (lock timeouts, lost unique-key races with another process).
    pub async fn apply(&self, commands: &[Command]) -> Result<Vec<Outcome>, DbErr> {
        db::with_retries("ledger batch", || self.apply_once(commands)).await
    }

    async fn apply_once(&self, commands: &[Command]) -> Result<Vec<Outcome>, DbErr> {
        let started = Instant::now();
        let write = db::begin_write(&self.db).await?;
        let txn: &DatabaseTransaction = &write;
        let outcomes = apply_in(txn, commands, self.clock.now()).await?;
        let applied = started.elapsed();
        write.commit().await?;
        tracing::debug!(
            commands = commands.len(),
            apply_ms = applied.as_secs_f64() * 1e3,
            commit_ms = (started.elapsed() - applied).as_secs_f64() * 1e3,
            "ledger batch committed"
        );
        // Counted only once committed: a rolled-back batch moved nothing.
        super::outcome::count_committed(&outcomes);
        Ok(outcomes)
    }
}

/// Applies `commands` in order inside the caller's write transaction, for callers whose own
#[async_trait::async_trait]
impl BatchStore for LedgerStore {
    type Command = Command;
    type Outcome = Outcome;
    const NAME: &'static str = "ledger";

    async fn apply(&self, commands: &[Command]) -> Result<Vec<Outcome>, DbErr> {
        LedgerStore::apply(self, commands).await
    }
}

/// writes must commit together with the credit effect (a workflow and its hold).
pub async fn apply_in(
    txn: &DatabaseTransaction,
    commands: &[Command],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, DbErr> {
    let mut book = load(txn, commands).await?;
    let outcomes = commands
        .iter()
        .map(|command| book.apply(command, now))
        .collect();
    write(txn, &book, &book.changes).await?;
    Ok(outcomes)
}

/// Loads, under lock, every row the commands may read or change.
pub async fn load(txn: &DatabaseTransaction, commands: &[Command]) -> Result<Book, DbErr> {
    let hold_ids: BTreeSet<Uuid> = commands
        .iter()
        .filter_map(|command| match command {
            Command::Hold { hold_id, .. } => Some(*hold_id),
            other => other.resolves_hold(),
        })
        .collect();
    let mut book = Book::default();
    let locked = lock_accounts(txn, commands, &hold_ids).await?;
    for account_id in &locked {
        book.add_account(*account_id);
    }
    load_packages(txn, commands, &locked, &mut book).await?;
    load_holds(txn, &hold_ids, &mut book).await?;
    Ok(book)
}

/// Locks, in id order, every account the commands name or whose holds they resolve; returns
/// the ones that exist.
async fn lock_accounts(
    txn: &DatabaseTransaction,
    commands: &[Command],
    hold_ids: &BTreeSet<Uuid>,
) -> Result<Vec<Uuid>, DbErr> {
    // A hold's account never changes, so reading it before the lock is safe; its state is
    // read again later, under the lock.
    let mut account_ids: BTreeSet<Uuid> = commands.iter().filter_map(Command::account_id).collect();
    if !hold_ids.is_empty() {
        let owners: Vec<Uuid> = hold::Entity::find()
            .select_only()
            .column(hold::Column::AccountId)
            .filter(hold::Column::Id.is_in(hold_ids.iter().copied()))
            .into_tuple()
            .all(txn)
            .await?;
        account_ids.extend(owners);
    }
    account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .filter(account::Column::Id.is_in(account_ids.iter().copied()))
        .order_by_asc(account::Column::Id)
        .lock_exclusive()
        .into_tuple()
        .all(txn)
        .await
}

/// The locked accounts' live packages, and the packages the grants' references name.
async fn load_packages(
    txn: &DatabaseTransaction,
    commands: &[Command],
    locked: &[Uuid],
    book: &mut Book,
) -> Result<(), DbErr> {
    if !locked.is_empty() {
        let live = credit_package::Entity::find()
            .filter(credit_package::Column::AccountId.is_in(locked.iter().copied()))
            .filter(
                credit_package::Column::Remaining
                    .gt(0)
                    .or(credit_package::Column::Held.gt(0)),
            )
            .all(txn)
            .await?;
        for package in live {
            book.add_package(package);
        }
    }
    // References are unique per account; this may load a few more packages than the pairs
    // asked for (another granted account's reference), which the book keys by pair anyway.
    let (granted_accounts, references): (BTreeSet<Uuid>, BTreeSet<&str>) = commands
        .iter()
        .filter_map(|command| match command {
            Command::Grant {
                account_id,
                reference,
                ..
            } => Some((*account_id, reference.as_str())),
            _ => None,
        })
        .unzip();
    if !references.is_empty() {
        let granted = credit_package::Entity::find()
            .filter(credit_package::Column::AccountId.is_in(granted_accounts))
            .filter(credit_package::Column::Reference.is_in(references))
            .all(txn)
            .await?;
        for package in granted {
            book.add_package(package);
        }
    }
    load_voided(txn, commands, locked, book).await
}

/// The packages the voids name, live or not, so that a void can tell a package with nothing
/// left from one that does not exist.
async fn load_voided(
    txn: &DatabaseTransaction,
    commands: &[Command],
    locked: &[Uuid],
    book: &mut Book,
) -> Result<(), DbErr> {
    let voided: BTreeSet<Uuid> = commands
        .iter()
        .filter_map(|command| match command {
            Command::Void { package_id, .. } => Some(*package_id),
            _ => None,
        })
        .collect();
    if voided.is_empty() || locked.is_empty() {
        return Ok(());
    }
    let packages = credit_package::Entity::find()
        .filter(credit_package::Column::Id.is_in(voided))
        .filter(credit_package::Column::AccountId.is_in(locked.iter().copied()))
        .all(txn)
        .await?;
    for package in packages {
        book.add_package(package);
    }
    Ok(())
}

/// The holds the commands name, with their allocations.
async fn load_holds(
    txn: &DatabaseTransaction,
    hold_ids: &BTreeSet<Uuid>,
    book: &mut Book,
) -> Result<(), DbErr> {
    if hold_ids.is_empty() {
        return Ok(());
    }
    let holds = hold::Entity::find()
        .filter(hold::Column::Id.is_in(hold_ids.iter().copied()))
        .all(txn)
        .await?;
    let mut allocations = hold_allocation::Entity::find()
        .filter(hold_allocation::Column::HoldId.is_in(hold_ids.iter().copied()))
        .all(txn)
        .await?;
    for row in holds {
        let (own, rest): (Vec<_>, Vec<_>) =
            allocations.into_iter().partition(|a| a.hold_id == row.id);
        allocations = rest;
        book.add_hold(row, own);
    }
    Ok(())
}

/// Writes a batch's changes: packages and holds as upserts, allocations and entries as inserts,
/// one statement per table (per chunk on SQLite), whatever the batch size.
pub async fn write(txn: &DatabaseTransaction, book: &Book, changes: &Changes) -> Result<(), DbErr> {
    if changes.is_empty() {
        return Ok(());
    }
    let packages: Vec<&Package> = changes
        .packages
        .iter()
        .map(|id| book.package(*id).expect("changed package is loaded"))
        .collect();
    let holds: Vec<&HoldRow> = changes
        .holds
        .iter()
        .map(|id| &book.hold(*id).expect("changed hold is loaded").row)
        .collect();
    if txn.get_database_backend() == DbBackend::Postgres {
        return write_pg::write(
            txn,
            &packages,
            &holds,
            &changes.allocations,
            &changes.entries,
        )
        .await;
    }
    upsert_packages(txn, packages).await?;
    upsert_holds(txn, holds).await?;
    insert_allocations(txn, &changes.allocations).await?;
    insert_entries(txn, &changes.entries).await
}

async fn upsert_packages(txn: &DatabaseTransaction, packages: Vec<&Package>) -> Result<(), DbErr> {
    let packages: Vec<credit_package::ActiveModel> = packages
        .into_iter()
        .map(|package| package.clone().into_active_model())
        .collect();
    for chunk in packages.chunks(INSERT_CHUNK) {
        credit_package::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(credit_package::Column::Id)
                    .update_columns([
                        credit_package::Column::Remaining,
                        credit_package::Column::Held,
                        credit_package::Column::Consumed,
                        credit_package::Column::Expired,
                        credit_package::Column::Voided,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn upsert_holds(txn: &DatabaseTransaction, holds: Vec<&HoldRow>) -> Result<(), DbErr> {
    let holds: Vec<hold::ActiveModel> = holds
        .into_iter()
        .map(|row| row.clone().into_active_model())
        .collect();
    for chunk in holds.chunks(INSERT_CHUNK) {
        hold::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(hold::Column::Id)
                    .update_columns([
                        hold::Column::State,
                        hold::Column::SettledAmount,
                        hold::Column::ResolvedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn insert_allocations(
    txn: &DatabaseTransaction,
    allocations: &[hold_allocation::Model],
) -> Result<(), DbErr> {
    let allocations: Vec<hold_allocation::ActiveModel> = allocations
        .iter()
        .cloned()
        .map(IntoActiveModel::into_active_model)
        .collect();
    for chunk in allocations.chunks(INSERT_CHUNK) {
        hold_allocation::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn insert_entries(txn: &DatabaseTransaction, entries: &[NewEntry]) -> Result<(), DbErr> {
    let entries: Vec<ledger_entry::ActiveModel> = entries
        .iter()
        .map(|entry| ledger_entry::ActiveModel {
            id: NotSet,
            account_id: Set(entry.account_id),
            package_id: Set(entry.package_id),
            kind: Set(entry.kind),
            amount: Set(entry.amount),
            hold_id: Set(entry.hold_id),
            generation_id: Set(entry.generation_id),
            available_after: Set(entry.available_after),
            held_after: Set(entry.held_after),
            created_at: Set(entry.at),
        })
        .collect();
    for chunk in entries.chunks(INSERT_CHUNK) {
        ledger_entry::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}
