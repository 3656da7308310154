//! The ledger's rules, in memory and free of I/O: FIFO-by-expiry holds, partial settles,
//! releases, expiry. A batch of commands runs against a `Book` loaded with exactly the rows it
//! needs; the `Changes` it accumulates are what the store writes back in the same transaction.
//!
//! Every change to a package's buckets goes through `move_credits`, which also appends the
//! ledger entry and keeps the account's recorded balances, so the rows and the ledger cannot
//! disagree.
use std::collections::{BTreeSet, HashMap};

use atelier_entities::credit_package::Model as Package;
use atelier_entities::hold::{HoldState, Model as HoldRow};
use atelier_entities::hold_allocation::Model as Allocation;
use atelier_entities::ledger_entry::EntryKind;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::Command;
use super::outcome::{
    ExpireOutcome, GrantOutcome, HoldOutcome, HoldRecord, Outcome, ReleaseOutcome, SettleOutcome,
    VoidOutcome,
};
use crate::Credits;

/// A ledger entry not yet written; the store assigns its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub account_id: Uuid,
    pub package_id: Uuid,
    pub kind: EntryKind,
    pub amount: i64,
    pub hold_id: Option<Uuid>,
    pub generation_id: Option<Uuid>,
    pub available_after: i64,
    pub held_after: i64,
    pub at: DateTime<Utc>,
}

/// Everything a batch changed, in the order it has to be written.
#[derive(Debug, Default)]
pub struct Changes {
    pub packages: BTreeSet<Uuid>,
    pub holds: BTreeSet<Uuid>,
    pub allocations: Vec<Allocation>,
    pub entries: Vec<NewEntry>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.holds.is_empty() && self.entries.is_empty()
    }
}

/// An account's recorded balances: the sums over its packages' `remaining` and `held`.
/// `available` can still include credits past their expiry until a sweep records it; reads
/// (`read::balance`, `Book::spendable`) never count them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub available: i64,
    pub held: i64,
}

/// The slice of the ledger one batch works on. Loaded by the store with every account the
/// batch touches and, for each, every package that still has credits `remaining` or `held`.
#[derive(Debug, Default)]
pub struct Book {
    accounts: HashMap<Uuid, Totals>,
    packages: HashMap<Uuid, Package>,
    packages_by_account: HashMap<Uuid, Vec<Uuid>>,
    /// Packages by (account, reference): references are unique per account.
    references: HashMap<(Uuid, String), Uuid>,
    holds: HashMap<Uuid, HoldRecord>,
    pub changes: Changes,
}

/// The order in which a hold takes from packages: nearest expiry first, never-expiring last,
/// then the oldest, then by id so that the order is total.
pub fn consumption_order(package: &Package) -> (bool, Option<DateTime<Utc>>, DateTime<Utc>, Uuid) {
    (
        package.expires_at.is_none(),
        package.expires_at,
        package.created_at,
        package.id,
    )
}

/// Whether an operator voided the package: its remainder, and whatever a hold returns to it
/// later, are void.
pub fn is_voided(package: &Package) -> bool {
    package.voided > 0
}

pub fn is_expired(package: &Package, now: DateTime<Utc>) -> bool {
    package
        .expires_at
        .is_some_and(|expires_at| expires_at <= now)
}

impl Book {
    /// Registers an account that exists; `packages` must be all of its live packages.
    pub fn add_account(&mut self, account_id: Uuid) {
        self.accounts.entry(account_id).or_default();
        self.packages_by_account.entry(account_id).or_default();
    }

    /// Adds a package row. Live packages of a registered account count towards its totals;
    /// others (looked up by reference only) are kept for idempotency checks.
    pub fn add_package(&mut self, package: Package) {
        if self.packages.contains_key(&package.id) {
            return;
        }
        self.references
            .insert((package.account_id, package.reference.clone()), package.id);
        if let Some(totals) = self.accounts.get_mut(&package.account_id) {
            totals.available += package.remaining;
            totals.held += package.held;
            let ids = self
                .packages_by_account
                .entry(package.account_id)
                .or_default();
            ids.push(package.id);
        }
        self.packages.insert(package.id, package);
    }

    pub fn add_hold(&mut self, row: HoldRow, mut allocations: Vec<Allocation>) {
        allocations.sort_by_key(|allocation| allocation.position);
        self.holds.insert(row.id, HoldRecord { row, allocations });
    }

    pub fn hold(&self, hold_id: Uuid) -> Option<&HoldRecord> {
        self.holds.get(&hold_id)
    }

    pub fn package(&self, package_id: Uuid) -> Option<&Package> {
        self.packages.get(&package_id)
    }

    /// The account's recorded balances (what the book tests inspect).
    #[cfg(test)]
    pub fn totals(&self, account_id: Uuid) -> Option<Totals> {
        self.accounts.get(&account_id).copied()
    }

    pub fn account_packages(&self, account_id: Uuid) -> impl Iterator<Item = &Package> {
        self.packages_by_account
            .get(&account_id)
            .into_iter()
            .flatten()
            .map(|id| &self.packages[id])
    }

    /// The account's package ids in consumption order.
    fn ordered_package_ids(&mut self, account_id: Uuid) -> Vec<Uuid> {
        let packages = &self.packages;
        let ids = self.packages_by_account.entry(account_id).or_default();
        ids.sort_by_key(|id| consumption_order(&packages[id]));
        ids.clone()
    }

    pub fn apply(&mut self, command: &Command, now: DateTime<Utc>) -> Outcome {
        match command {
            Command::Grant {
                account_id,
                credits,
                expires_at,
                reference,
            } => Outcome::Grant(self.grant(*account_id, *credits, *expires_at, reference, now)),
            Command::Hold {
                hold_id,
                account_id,
                credits,
                generation_id,
            } => {
                Outcome::Hold(self.place_hold(*hold_id, *account_id, *credits, *generation_id, now))
            }
            Command::Settle { hold_id, amount } => {
                Outcome::Settle(self.settle(*hold_id, *amount, now))
            }
            Command::Release { hold_id } => Outcome::Release(self.release(*hold_id, now)),
            Command::ExpireDue { account_id } => Outcome::Expire(self.expire_due(*account_id, now)),
            Command::Void {
                account_id,
                package_id,
            } => Outcome::Void(self.void(*account_id, *package_id, now)),
        }
    }

    /// A new package. An unknown account answers `AccountNotFound` first; then the reference
    /// is looked up within the account (references are unique per account): with the same
    /// credits and `expires_at` it answers `Existing` (also when that package has since expired
    /// or been used), with other fields `ReferenceConflict`; then an `expires_at` at or before
    /// `now` is `AlreadyExpired`.
    pub fn grant(
        &mut self,
        account_id: Uuid,
        credits: Credits,
        expires_at: Option<DateTime<Utc>>,
        reference: &str,
        now: DateTime<Utc>,
    ) -> GrantOutcome {
        if !self.accounts.contains_key(&account_id) {
            return GrantOutcome::AccountNotFound;
        }
        let key = (account_id, reference.to_owned());
        if let Some(existing) = self.references.get(&key).map(|id| &self.packages[id]) {
            let same = existing.credits == credits.get() && existing.expires_at == expires_at;
            return if same {
                GrantOutcome::Existing(existing.clone())
            } else {
                GrantOutcome::ReferenceConflict
            };
        }
        if expires_at.is_some_and(|expires_at| expires_at <= now) {
            return GrantOutcome::AlreadyExpired;
        }
        let package = Package {
            id: Uuid::now_v7(),
            account_id,
            reference: reference.to_owned(),
            credits: credits.get(),
            remaining: 0,
            held: 0,
            consumed: 0,
            expired: 0,
            voided: 0,
            expires_at,
            created_at: now,
        };
        let package_id = package.id;
        self.add_package(package);
        self.move_credits(package_id, EntryKind::Grant, credits.get(), None, now);
        GrantOutcome::Created(self.packages[&package_id].clone())
    }

    /// Holds `credits` from the account's unexpired packages in `consumption_order`, one
    /// allocation (and `hold` entry) per package. When the spendable sum is short it answers
    /// `InsufficientCredits` and changes nothing, not even pending expiries; otherwise the
    /// account's due expiries are recorded first, so the hold cannot take expired credits.
    pub fn place_hold(
        &mut self,
        hold_id: Uuid,
        account_id: Uuid,
        credits: Credits,
        generation_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> HoldOutcome {
        if !self.accounts.contains_key(&account_id) {
            return HoldOutcome::AccountNotFound;
        }
        if self.holds.contains_key(&hold_id) {
            return HoldOutcome::DuplicateHoldId;
        }
        let available = self.spendable(account_id, now);
        if credits.get() > available {
            return HoldOutcome::InsufficientCredits {
                available,
                requested: credits.get(),
            };
        }
        // Expired remainders are recorded first so that the hold cannot take from them.
        self.expire_due(account_id, now);

        let row = HoldRow {
            id: hold_id,
            account_id,
            amount: credits.get(),
            state: HoldState::Open,
            settled_amount: 0,
            generation_id,
            created_at: now,
            resolved_at: None,
        };
        let allocations = self.allocate(hold_id, account_id, credits.get());
        let record = HoldRecord { row, allocations };
        self.holds.insert(hold_id, record.clone());
        self.changes.holds.insert(hold_id);
        for allocation in &record.allocations {
            self.move_credits(
                allocation.package_id,
                EntryKind::Hold,
                allocation.amount,
                Some(&record.row),
                now,
            );
        }
        self.changes
            .allocations
            .extend(record.allocations.iter().cloned());
        HoldOutcome::Held(record)
    }

    /// Allocations for a hold of `amount` from the account's packages, in `consumption_order`.
    /// The caller has checked that the spendable sum covers it: falling short is a broken
    /// money invariant, and stops the process before anything is written.
    fn allocate(&mut self, hold_id: Uuid, account_id: Uuid, amount: i64) -> Vec<Allocation> {
        let mut allocations = Vec::new();
        let mut left = amount;
        for package_id in self.ordered_package_ids(account_id) {
            if left == 0 {
                break;
            }
            let take = self.packages[&package_id].remaining.min(left);
            if take == 0 {
                continue;
            }
            left -= take;
            allocations.push(Allocation {
                hold_id,
                package_id,
                position: allocations.len() as i32,
                amount: take,
            });
        }
        assert_eq!(
            left,
            0,
            "{}: available said there was enough for hold {hold_id}",
            crate::batcher::INVARIANT_VIOLATED
        );
        allocations
    }

    /// Consumes `amount` (0 to the held amount; 0 returns everything) from the hold's
    /// allocations in the order the hold took them and returns the rest, after recording the
    /// account's due expiries. A hold is resolved once: a second settle or release writes
    /// nothing.
    pub fn settle(&mut self, hold_id: Uuid, amount: i64, now: DateTime<Utc>) -> SettleOutcome {
        let Some(record) = self.holds.get(&hold_id) else {
            return SettleOutcome::HoldNotFound;
        };
        match record.row.state {
            HoldState::Settled => return SettleOutcome::AlreadySettled,
            HoldState::Released => return SettleOutcome::AlreadyReleased,
            HoldState::Open => {}
        }
        if amount < 0 {
            return SettleOutcome::NegativeAmount;
        }
        if amount > record.row.amount {
            return SettleOutcome::ExceedsHold {
                held: record.row.amount,
            };
        }
        let returned = self.resolve(hold_id, amount, HoldState::Settled, now);
        SettleOutcome::Settled {
            consumed: amount,
            returned,
        }
    }

    /// Returns the whole hold to the packages it came from, as `settle` with nothing consumed.
    pub fn release(&mut self, hold_id: Uuid, now: DateTime<Utc>) -> ReleaseOutcome {
        let Some(record) = self.holds.get(&hold_id) else {
            return ReleaseOutcome::HoldNotFound;
        };
        match record.row.state {
            HoldState::Settled => ReleaseOutcome::AlreadySettled,
            HoldState::Released => ReleaseOutcome::AlreadyReleased,
            HoldState::Open => ReleaseOutcome::Released {
                returned: self.resolve(hold_id, 0, HoldState::Released, now),
            },
        }
    }

    /// Credits a hold could take now: what is left in unexpired packages.
    pub fn spendable(&self, account_id: Uuid, now: DateTime<Utc>) -> i64 {
        self.account_packages(account_id)
            .filter(|package| !is_expired(package, now))
            .map(|package| package.remaining)
            .sum()
    }

    /// Records the expiry of whatever is still `remaining` in the account's expired packages.
    pub fn expire_due(&mut self, account_id: Uuid, now: DateTime<Utc>) -> ExpireOutcome {
        let due: Vec<(Uuid, i64)> = self
            .account_packages(account_id)
            .filter(|package| package.remaining > 0 && is_expired(package, now))
            .map(|package| (package.id, package.remaining))
            .collect();
        let expired = due.iter().map(|(_, amount)| amount).sum();
        for (package_id, amount) in due {
            self.move_credits(package_id, EntryKind::Expire, amount, None, now);
        }
        ExpireOutcome { expired }
    }

    /// Voids the package's unused remainder: what is neither consumed, held nor expired leaves
    /// the account with one `void` entry. Credits held at the time stay held; when their hold
    /// returns them they are voided too (`resolve`), so a voided package never has credits
    /// remaining again. An expired package has nothing to void (its remainder is expiry's, as
    /// the sweeper records it). A refusal writes nothing.
    pub fn void(&mut self, account_id: Uuid, package_id: Uuid, now: DateTime<Utc>) -> VoidOutcome {
        if !self.accounts.contains_key(&account_id) {
            return VoidOutcome::AccountNotFound;
        }
        let Some(package) = self
            .packages
            .get(&package_id)
            .filter(|package| package.account_id == account_id)
        else {
            return VoidOutcome::PackageNotFound;
        };
        if is_voided(package) {
            return VoidOutcome::AlreadyVoided;
        }
        if package.remaining == 0 || is_expired(package, now) {
            return VoidOutcome::NothingToVoid;
        }
        let amount = package.remaining;
        self.move_credits(package_id, EntryKind::Void, amount, None, now);
        let package = self.packages[&package_id].clone();
        assert!(
            package.remaining == 0 && package.voided == amount,
            "{}: a void left credits remaining: {package:?}",
            crate::batcher::INVARIANT_VIOLATED
        );
        VoidOutcome::Voided {
            voided: amount,
            package,
        }
    }

    /// Consumes `consume` credits from the hold's allocations in order and returns the rest to
    /// their packages (where a package has expired meanwhile, the returned credits expire with
    /// it). Returns how many credits went back.
    fn resolve(
        &mut self,
        hold_id: Uuid,
        consume: i64,
        state: HoldState,
        now: DateTime<Utc>,
    ) -> i64 {
        let mut record = self.holds[&hold_id].clone();
        self.expire_due(record.row.account_id, now);
        let mut left = consume;
        let mut returned = 0;
        for allocation in &record.allocations {
            let consumed_here = allocation.amount.min(left);
            left -= consumed_here;
            let back = allocation.amount - consumed_here;
            if consumed_here > 0 {
                self.move_credits(
                    allocation.package_id,
                    EntryKind::Settle,
                    consumed_here,
                    Some(&record.row),
                    now,
                );
            }
            if back > 0 {
                returned += back;
                self.move_credits(
                    allocation.package_id,
                    EntryKind::Release,
                    back,
                    Some(&record.row),
                    now,
                );
                self.retire_returned(allocation.package_id, back, &record.row, now);
            }
        }
        record.row.state = state;
        record.row.settled_amount = consume;
        record.row.resolved_at = Some(now);
        self.holds.insert(hold_id, record);
        self.changes.holds.insert(hold_id);
        returned
    }

    /// Credits a hold just returned to a package that can no longer spend them leave it again
    /// at once: they expire with an expired package (they were never spendable past its
    /// expiry), and are voided with a voided one (the operator voided all of it that was not in
    /// use; these were in use then).
    fn retire_returned(&mut self, package_id: Uuid, back: i64, hold: &HoldRow, now: DateTime<Utc>) {
        let package = &self.packages[&package_id];
        let kind = if is_expired(package, now) {
            EntryKind::Expire
        } else if is_voided(package) {
            EntryKind::Void
        } else {
            return;
        };
        self.move_credits(package_id, kind, back, Some(hold), now);
        let package = &self.packages[&package_id];
        assert!(
            !is_voided(package) || package.remaining == 0,
            "{}: a voided package has credits remaining: {package:?}",
            crate::batcher::INVARIANT_VIOLATED
        );
    }

    /// The only place package buckets change: moves `amount` between buckets as `kind` says,
    /// updates the account's recorded totals and appends the matching ledger entry.
    fn move_credits(
        &mut self,
        package_id: Uuid,
        kind: EntryKind,
        amount: i64,
        hold: Option<&HoldRow>,
        now: DateTime<Utc>,
    ) {
        let package = self.packages.get_mut(&package_id).expect("package loaded");
        let totals = self
            .accounts
            .get_mut(&package.account_id)
            .expect("account loaded");
        let (available_delta, held_delta) = balance_delta(kind, amount);
        match kind {
            EntryKind::Grant => package.remaining += amount,
            EntryKind::Hold => {
                package.remaining -= amount;
                package.held += amount;
            }
            EntryKind::Settle => {
                package.held -= amount;
                package.consumed += amount;
            }
            EntryKind::Release => {
                package.held -= amount;
                package.remaining += amount;
            }
            EntryKind::Expire => {
                package.remaining -= amount;
                package.expired += amount;
            }
            EntryKind::Void => {
                package.remaining -= amount;
                package.voided += amount;
            }
        }
        totals.available += available_delta;
        totals.held += held_delta;
        assert!(
            package.remaining >= 0 && package.held >= 0,
            "{}: a bucket went negative: {package:?}",
            crate::batcher::INVARIANT_VIOLATED
        );
        self.changes.packages.insert(package_id);
        self.changes.entries.push(NewEntry {
            account_id: package.account_id,
            package_id,
            kind,
            amount,
            hold_id: hold.map(|hold| hold.id),
            generation_id: hold.and_then(|hold| hold.generation_id),
            available_after: totals.available,
            held_after: totals.held,
            at: now,
        });
    }
}

/// How an entry of `kind` moves the account's recorded (available, held) balances.
pub fn balance_delta(kind: EntryKind, amount: i64) -> (i64, i64) {
    match kind {
        EntryKind::Grant => (amount, 0),
        EntryKind::Hold => (-amount, amount),
        EntryKind::Settle => (0, -amount),
        EntryKind::Release => (amount, -amount),
        EntryKind::Expire | EntryKind::Void => (-amount, 0),
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
