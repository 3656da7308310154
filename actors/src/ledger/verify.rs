//! Checks docs/design.md §4 invariants 1–3 over the whole database, independently of `Book`: it
//! re-derives every package's buckets and every account's balances from the append-only
//! entries and compares them with the stored rows.
//!
//! 1. Per package: `credits = remaining + held + consumed + expired + voided`, none negative,
//!    and each bucket equals what the package's entries moved into it.
//! 2. Per account: every entry's `available_after` / `held_after` equals the running sum of the
//!    entries before it, and the last one equals the sums over the account's packages.
//! 3. Per hold: resolved at most once; settled + returned = held; an open hold's allocations
//!    are exactly what its packages hold.
use std::collections::HashMap;
use std::fmt;

use atelier_entities::hold::HoldState;
use atelier_entities::ledger_entry::EntryKind;
use atelier_entities::{credit_package, hold, hold_allocation, ledger_entry};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::book::balance_delta;

const PAGE: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: u8,
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} violated by {}: {}",
            self.invariant, self.subject, self.detail
        )
    }
}

#[derive(Default)]
struct PackageFlows {
    by_kind: HashMap<EntryKind, i64>,
}

impl PackageFlows {
    fn get(&self, kind: EntryKind) -> i64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }
}

#[derive(Default, Clone, Copy)]
struct Running {
    available: i64,
    held: i64,
    broken: bool,
}

pub async fn verify_ledger<C: ConnectionTrait>(db: &C) -> Result<Vec<Violation>, DbErr> {
    let mut violations = Vec::new();
    let mut report = |invariant: u8, subject: String, detail: String| {
        violations.push(Violation {
            invariant,
            subject,
            detail,
        });
    };

    let packages: HashMap<Uuid, credit_package::Model> = credit_package::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();

    let mut package_flows: HashMap<Uuid, PackageFlows> = HashMap::new();
    let mut hold_flows: HashMap<Uuid, PackageFlows> = HashMap::new();
    let mut accounts: HashMap<Uuid, Running> = HashMap::new();
    let mut after_id = 0_i64;
    loop {
        let page = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::Id.gt(after_id))
            .order_by_asc(ledger_entry::Column::Id)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        for entry in page {
            match packages.get(&entry.package_id) {
                Some(package) if package.account_id == entry.account_id => {}
                _ => report(
                    2,
                    format!("ledger entry {}", entry.id),
                    "names a package the account does not own".into(),
                ),
            }
            *package_flows
                .entry(entry.package_id)
                .or_default()
                .by_kind
                .entry(entry.kind)
                .or_default() += entry.amount;
            if let Some(hold_id) = entry.hold_id {
                *hold_flows
                    .entry(hold_id)
                    .or_default()
                    .by_kind
                    .entry(entry.kind)
                    .or_default() += entry.amount;
            }
            let running = accounts.entry(entry.account_id).or_default();
            let (available_delta, held_delta) = balance_delta(entry.kind, entry.amount);
            running.available += available_delta;
            running.held += held_delta;
            if !running.broken
                && (running.available, running.held) != (entry.available_after, entry.held_after)
            {
                running.broken = true;
                report(
                    2,
                    format!("account {}", entry.account_id),
                    format!(
                        "entry {} records available={} held={}, the entries before it sum to available={} held={}",
                        entry.id,
                        entry.available_after,
                        entry.held_after,
                        running.available,
                        running.held
                    ),
                );
            }
        }
    }

    let mut stored: HashMap<Uuid, (i64, i64)> = HashMap::new();
    let none = PackageFlows::default();
    for package in packages.values() {
        let subject = format!("package {}", package.id);
        let buckets = [
            package.remaining,
            package.held,
            package.consumed,
            package.expired,
            package.voided,
        ];
        if buckets.iter().any(|bucket| *bucket < 0) {
            report(
                1,
                subject.clone(),
                format!("a bucket is negative: {buckets:?}"),
            );
        }
        if buckets.iter().sum::<i64>() != package.credits {
            report(
                1,
                subject.clone(),
                format!(
                    "credits {} but buckets {buckets:?} sum to {}",
                    package.credits,
                    buckets.iter().sum::<i64>()
                ),
            );
        }
        let flows = package_flows.get(&package.id).unwrap_or(&none);
        let derived = [
            flows.get(EntryKind::Grant) - flows.get(EntryKind::Hold)
                + flows.get(EntryKind::Release)
                - flows.get(EntryKind::Expire)
                - flows.get(EntryKind::Void),
            flows.get(EntryKind::Hold)
                - flows.get(EntryKind::Settle)
                - flows.get(EntryKind::Release),
            flows.get(EntryKind::Settle),
            flows.get(EntryKind::Expire),
            flows.get(EntryKind::Void),
        ];
        if flows.get(EntryKind::Grant) != package.credits || derived != buckets {
            report(
                1,
                subject,
                format!(
                    "stored credits {} buckets {buckets:?}, ledger says credits {} buckets {derived:?}",
                    package.credits,
                    flows.get(EntryKind::Grant)
                ),
            );
        }
        let sums = stored.entry(package.account_id).or_default();
        sums.0 += package.remaining;
        sums.1 += package.held;
    }
    for (account_id, (remaining, held)) in &stored {
        let running = accounts.get(account_id).copied().unwrap_or_default();
        if (running.available, running.held) != (*remaining, *held) {
            report(
                2,
                format!("account {account_id}"),
                format!(
                    "packages hold available={remaining} held={held}, the ledger sums to available={} held={}",
                    running.available, running.held
                ),
            );
        }
    }

    let mut allocated: HashMap<Uuid, i64> = HashMap::new();
    let mut open_by_package: HashMap<Uuid, i64> = HashMap::new();
    let open_holds: HashMap<Uuid, HoldState> = hold::Entity::find()
        .select_only()
        .column(hold::Column::Id)
        .column(hold::Column::State)
        .into_tuple::<(Uuid, HoldState)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    for allocation in hold_allocation::Entity::find().all(db).await? {
        *allocated.entry(allocation.hold_id).or_default() += allocation.amount;
        if open_holds.get(&allocation.hold_id) == Some(&HoldState::Open) {
            *open_by_package.entry(allocation.package_id).or_default() += allocation.amount;
        }
    }
    for package in packages.values() {
        let open = open_by_package.get(&package.id).copied().unwrap_or(0);
        if open != package.held {
            report(
                3,
                format!("package {}", package.id),
                format!("holds {} but its open holds allocated {open}", package.held),
            );
        }
    }

    let holds = hold::Entity::find().all(db).await?;
    for row in holds {
        let subject = format!("hold {}", row.id);
        let flows = hold_flows.get(&row.id).unwrap_or(&none);
        let (held, settled, released) = (
            flows.get(EntryKind::Hold),
            flows.get(EntryKind::Settle),
            flows.get(EntryKind::Release),
        );
        if held != row.amount || allocated.get(&row.id).copied().unwrap_or(0) != row.amount {
            report(
                3,
                subject.clone(),
                format!(
                    "amount {} but hold entries {held}, allocations {:?}",
                    row.amount,
                    allocated.get(&row.id)
                ),
            );
        }
        let expected = match row.state {
            HoldState::Open => (0, 0, 0),
            HoldState::Settled => (
                row.settled_amount,
                row.amount - row.settled_amount,
                row.settled_amount,
            ),
            HoldState::Released => (0, row.amount, 0),
        };
        if (settled, released, row.settled_amount) != expected
            || (row.state == HoldState::Open) != row.resolved_at.is_none()
        {
            report(
                3,
                subject,
                format!(
                    "state {:?} settled_amount {} of {}: entries settled {settled}, returned {released}",
                    row.state, row.settled_amount, row.amount
                ),
            );
        }
    }
    Ok(violations)
}
