//! PostgreSQL writes for a ledger batch: each table in ONE statement whose only parameter is the
//! batch's rows as a JSON array, unpacked by `jsonb_to_recordset`.
//!
//! A multi-row `VALUES` list binds thousands of parameters, and every batch size is a new
//! statement to parse and plan: measured at ~100 ms per 256-row insert, which capped the ledger
//! at ~1,600 pairs/s. These statement texts never change, so each is prepared once per
//! connection and costs about as much as the rows it carries.
use atelier_entities::credit_package::Model as Package;
use atelier_entities::hold::Model as HoldRow;
use atelier_entities::hold_allocation::Model as Allocation;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement};
use serde_json::{Value as Json, json};

use super::book::NewEntry;

const UPSERT_PACKAGES: &str = "\
INSERT INTO credit_packages
    (id, account_id, reference, credits, remaining, held, consumed, expired, voided, expires_at, created_at)
SELECT id, account_id, reference, credits, remaining, held, consumed, expired, voided, expires_at, created_at
FROM jsonb_to_recordset($1::jsonb) AS r(
    id uuid, account_id uuid, reference text, credits bigint, remaining bigint, held bigint,
    consumed bigint, expired bigint, voided bigint, expires_at timestamptz, created_at timestamptz)
ON CONFLICT (id) DO UPDATE SET
    remaining = EXCLUDED.remaining, held = EXCLUDED.held, consumed = EXCLUDED.consumed,
    expired = EXCLUDED.expired, voided = EXCLUDED.voided";

const UPSERT_HOLDS: &str = "\
INSERT INTO holds (id, account_id, amount, state, settled_amount, generation_id, created_at, resolved_at)
SELECT id, account_id, amount, state, settled_amount, generation_id, created_at, resolved_at
FROM jsonb_to_recordset($1::jsonb) AS r(
    id uuid, account_id uuid, amount bigint, state text, settled_amount bigint,
    generation_id uuid, created_at timestamptz, resolved_at timestamptz)
ON CONFLICT (id) DO UPDATE SET
    state = EXCLUDED.state, settled_amount = EXCLUDED.settled_amount,
    resolved_at = EXCLUDED.resolved_at";

const INSERT_ALLOCATIONS: &str = "\
INSERT INTO hold_allocations (hold_id, package_id, position, amount)
SELECT hold_id, package_id, position, amount
FROM jsonb_to_recordset($1::jsonb) AS r(hold_id uuid, package_id uuid, position integer, amount bigint)";

// `seq` keeps the entries' ids in the order the book appended them: `verify` replays entries
// by id.
const INSERT_ENTRIES: &str = "\
INSERT INTO ledger_entries
    (account_id, package_id, kind, amount, hold_id, generation_id, available_after, held_after, created_at)
SELECT account_id, package_id, kind, amount, hold_id, generation_id, available_after, held_after, created_at
FROM jsonb_to_recordset($1::jsonb) AS r(
    account_id uuid, package_id uuid, kind text, amount bigint, hold_id uuid, generation_id uuid,
    available_after bigint, held_after bigint, created_at timestamptz, seq bigint)
ORDER BY seq";

pub async fn write(
    txn: &DatabaseTransaction,
    packages: &[&Package],
    holds: &[&HoldRow],
    allocations: &[Allocation],
    entries: &[NewEntry],
) -> Result<(), DbErr> {
    let package_rows = packages.iter().map(|package| {
        json!({
            "id": package.id, "account_id": package.account_id, "reference": package.reference,
            "credits": package.credits, "remaining": package.remaining, "held": package.held,
            "consumed": package.consumed, "expired": package.expired, "voided": package.voided,
            "expires_at": package.expires_at, "created_at": package.created_at,
        })
    });
    execute(txn, UPSERT_PACKAGES, package_rows).await?;

    let hold_rows = holds.iter().map(|hold| {
        json!({
            "id": hold.id, "account_id": hold.account_id, "amount": hold.amount,
            "state": hold.state.as_str(), "settled_amount": hold.settled_amount,
            "generation_id": hold.generation_id, "created_at": hold.created_at,
            "resolved_at": hold.resolved_at,
        })
    });
    execute(txn, UPSERT_HOLDS, hold_rows).await?;

    let allocation_rows = allocations.iter().map(|allocation| {
        json!({
            "hold_id": allocation.hold_id, "package_id": allocation.package_id,
            "position": allocation.position, "amount": allocation.amount,
        })
    });
    execute(txn, INSERT_ALLOCATIONS, allocation_rows).await?;

    let entry_rows = entries.iter().enumerate().map(|(seq, entry)| {
        json!({
            "seq": seq,
            "account_id": entry.account_id, "package_id": entry.package_id,
            "kind": entry.kind.as_str(), "amount": entry.amount, "hold_id": entry.hold_id,
            "generation_id": entry.generation_id, "available_after": entry.available_after,
            "held_after": entry.held_after, "created_at": entry.at,
        })
    });
    execute(txn, INSERT_ENTRIES, entry_rows).await
}

async fn execute(
    txn: &DatabaseTransaction,
    sql: &str,
    rows: impl Iterator<Item = Json>,
) -> Result<(), DbErr> {
    let rows: Vec<Json> = rows.collect();
    if rows.is_empty() {
        return Ok(());
    }
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [Json::Array(rows).into()]);
    txn.execute_raw(statement).await.map(drop)
}
