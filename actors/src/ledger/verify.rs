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
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::progress::{Progress, Silent};

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

    fn add(&mut self, entry: &ledger_entry::Model) {
        *self.by_kind.entry(entry.kind).or_default() += entry.amount;
    }
}

#[derive(Default, Clone, Copy)]
struct Running {
    available: i64,
    held: i64,
    broken: bool,
}

/// Violations found, in the order found.
#[derive(Default)]
struct Report(Vec<Violation>);

impl Report {
    fn add(&mut self, invariant: u8, subject: String, detail: String) {
        self.0.push(Violation {
            invariant,
            subject,
            detail,
        });
    }
}

/// What the entries say, replayed in id order.
#[derive(Default)]
struct Replayed {
    packages: HashMap<Uuid, PackageFlows>,
    holds: HashMap<Uuid, PackageFlows>,
    accounts: HashMap<Uuid, Running>,
}

pub async fn verify_ledger<C: ConnectionTrait>(db: &C) -> Result<Vec<Violation>, DbErr> {
    verify_ledger_with(db, &Silent).await
}

/// As `verify_ledger`, telling `progress` how many entries it replayed.
pub async fn verify_ledger_with<C: ConnectionTrait>(
    db: &C,
    progress: &dyn Progress,
) -> Result<Vec<Violation>, DbErr> {
    let mut report = Report::default();
    progress.phase(
        "ledger entries",
        Some(ledger_entry::Entity::find().count(db).await?),
    );
    let packages: HashMap<Uuid, credit_package::Model> = credit_package::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let replayed = replay_entries(db, &packages, &mut report, progress).await?;
    progress.finish();
    check_packages(&packages, &replayed, &mut report);
    let allocations = hold_allocation::Entity::find().all(db).await?;
    check_allocations(db, &packages, &allocations, &mut report).await?;
    check_holds(db, &replayed, &allocations, &mut report).await?;
    Ok(report.0)
}

/// Replays every entry, checking invariant 2 as it goes: each entry names a package of its
/// account, and records the running balances of the entries before it.
async fn replay_entries<C: ConnectionTrait>(
    db: &C,
    packages: &HashMap<Uuid, credit_package::Model>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Replayed, DbErr> {
    let mut replayed = Replayed::default();
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
        progress.advance(page.len() as u64);
        for entry in page {
            match packages.get(&entry.package_id) {
                Some(package) if package.account_id == entry.account_id => {}
                _ => report.add(
                    2,
                    format!("ledger entry {}", entry.id),
                    "names a package the account does not own".into(),
                ),
            }
            replayed
                .packages
                .entry(entry.package_id)
                .or_default()
                .add(&entry);
            if let Some(hold_id) = entry.hold_id {
                replayed.holds.entry(hold_id).or_default().add(&entry);
            }
            let running = replayed.accounts.entry(entry.account_id).or_default();
            running.apply(&entry, report);
        }
    }
    Ok(replayed)
}

impl Running {
    fn apply(&mut self, entry: &ledger_entry::Model, report: &mut Report) {
        let (available_delta, held_delta) = balance_delta(entry.kind, entry.amount);
        self.available += available_delta;
        self.held += held_delta;
        if !self.broken && (self.available, self.held) != (entry.available_after, entry.held_after)
        {
            self.broken = true;
            report.add(
                2,
                format!("account {}", entry.account_id),
                format!(
                    "entry {} records available={} held={}, the entries before it sum to available={} held={}",
                    entry.id, entry.available_after, entry.held_after, self.available, self.held
                ),
            );
        }
    }
}

/// Invariant 1 for each package, then invariant 2's last clause: each account's replayed
/// balances equal the sums over its packages.
fn check_packages(
    packages: &HashMap<Uuid, credit_package::Model>,
    replayed: &Replayed,
    report: &mut Report,
) {
    let mut stored: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for package in packages.values() {
        check_package(package, replayed.packages.get(&package.id), report);
        let sums = stored.entry(package.account_id).or_default();
        sums.0 += package.remaining;
        sums.1 += package.held;
    }
    for (account_id, (remaining, held)) in &stored {
        let running = replayed
            .accounts
            .get(account_id)
            .copied()
            .unwrap_or_default();
        if (running.available, running.held) != (*remaining, *held) {
            report.add(
                2,
                format!("account {account_id}"),
                format!(
                    "packages hold available={remaining} held={held}, the ledger sums to available={} held={}",
                    running.available, running.held
                ),
            );
        }
    }
}

fn check_package(
    package: &credit_package::Model,
    flows: Option<&PackageFlows>,
    report: &mut Report,
) {
    let subject = format!("package {}", package.id);
    let buckets = [
        package.remaining,
        package.held,
        package.consumed,
        package.expired,
        package.voided,
    ];
    if buckets.iter().any(|bucket| *bucket < 0) {
        report.add(
            1,
            subject.clone(),
            format!("a bucket is negative: {buckets:?}"),
        );
    }
    if buckets.iter().sum::<i64>() != package.credits {
        report.add(
            1,
            subject.clone(),
            format!(
                "credits {} but buckets {buckets:?} sum to {}",
                package.credits,
                buckets.iter().sum::<i64>()
            ),
        );
    }
    let none = PackageFlows::default();
    let flows = flows.unwrap_or(&none);
    let derived = [
        flows.get(EntryKind::Grant) - flows.get(EntryKind::Hold) + flows.get(EntryKind::Release)
            - flows.get(EntryKind::Expire)
            - flows.get(EntryKind::Void),
        flows.get(EntryKind::Hold) - flows.get(EntryKind::Settle) - flows.get(EntryKind::Release),
        flows.get(EntryKind::Settle),
        flows.get(EntryKind::Expire),
        flows.get(EntryKind::Void),
    ];
    if flows.get(EntryKind::Grant) != package.credits || derived != buckets {
        report.add(
            1,
            subject,
            format!(
                "stored credits {} buckets {buckets:?}, ledger says credits {} buckets {derived:?}",
                package.credits,
                flows.get(EntryKind::Grant)
            ),
        );
    }
}

/// Invariant 3's last clause: what each package holds is exactly what its open holds
/// allocated from it.
async fn check_allocations<C: ConnectionTrait>(
    db: &C,
    packages: &HashMap<Uuid, credit_package::Model>,
    allocations: &[hold_allocation::Model],
    report: &mut Report,
) -> Result<(), DbErr> {
    let mut open_by_package: HashMap<Uuid, i64> = HashMap::new();
    let states: HashMap<Uuid, HoldState> = hold::Entity::find()
        .select_only()
        .column(hold::Column::Id)
        .column(hold::Column::State)
        .into_tuple::<(Uuid, HoldState)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    for allocation in allocations {
        if states.get(&allocation.hold_id) == Some(&HoldState::Open) {
            *open_by_package.entry(allocation.package_id).or_default() += allocation.amount;
        }
    }
    for package in packages.values() {
        let open = open_by_package.get(&package.id).copied().unwrap_or(0);
        if open != package.held {
            report.add(
                3,
                format!("package {}", package.id),
                format!("holds {} but its open holds allocated {open}", package.held),
            );
        }
    }
    Ok(())
}

/// Invariant 3 for each hold: its entries and allocations add up to its amount, and its state
/// matches what its entries did (resolved at most once, settled + returned = held).
async fn check_holds<C: ConnectionTrait>(
    db: &C,
    replayed: &Replayed,
    allocations: &[hold_allocation::Model],
    report: &mut Report,
) -> Result<(), DbErr> {
    let mut allocated: HashMap<Uuid, i64> = HashMap::new();
    for allocation in allocations {
        *allocated.entry(allocation.hold_id).or_default() += allocation.amount;
    }
    let none = PackageFlows::default();
    for row in hold::Entity::find().all(db).await? {
        let flows = replayed.holds.get(&row.id).unwrap_or(&none);
        check_hold(&row, flows, allocated.get(&row.id).copied(), report);
    }
    Ok(())
}

fn check_hold(
    row: &hold::Model,
    flows: &PackageFlows,
    allocated: Option<i64>,
    report: &mut Report,
) {
    let subject = format!("hold {}", row.id);
    let (held, settled, released) = (
        flows.get(EntryKind::Hold),
        flows.get(EntryKind::Settle),
        flows.get(EntryKind::Release),
    );
    if held != row.amount || allocated.unwrap_or(0) != row.amount {
        report.add(
            3,
            subject.clone(),
            format!(
                "amount {} but hold entries {held}, allocations {allocated:?}",
                row.amount
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
        report.add(
            3,
            subject,
            format!(
                "state {:?} settled_amount {} of {}: entries settled {settled}, returned {released}",
                row.state, row.settled_amount, row.amount
            ),
        );
    }
}
