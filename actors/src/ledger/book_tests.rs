//! The ledger's rules on small, hand-checked examples. The model test in `tests/` covers random
//! sequences against the real store.
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn credits(amount: i64) -> Credits {
    Credits::parse(amount).unwrap()
}

struct Fixture {
    book: Book,
    account: Uuid,
}

impl Fixture {
    fn new() -> Self {
        let mut book = Book::default();
        let account = Uuid::now_v7();
        book.add_account(account);
        Self { book, account }
    }

    fn grant(&mut self, amount: i64, expires_at: Option<DateTime<Utc>>) -> Uuid {
        let reference = Uuid::now_v7().to_string();
        match self.book.grant(
            self.account,
            credits(amount),
            expires_at,
            &reference,
            start(),
        ) {
            GrantOutcome::Created(package) => package.id,
            other => panic!("grant refused: {other:?}"),
        }
    }

    fn hold(&mut self, amount: i64, now: DateTime<Utc>) -> HoldOutcome {
        self.book
            .place_hold(Uuid::now_v7(), self.account, credits(amount), None, now)
    }

    fn held(&mut self, amount: i64, now: DateTime<Utc>) -> HoldRecord {
        match self.hold(amount, now) {
            HoldOutcome::Held(record) => record,
            other => panic!("hold refused: {other:?}"),
        }
    }

    /// (remaining, held, consumed, expired) of a package.
    fn buckets(&self, package: Uuid) -> (i64, i64, i64, i64) {
        let p = self.book.package(package).unwrap();
        (p.remaining, p.held, p.consumed, p.expired)
    }
}

#[test]
fn holds_take_the_soonest_expiring_credits_first_and_never_expiring_last() {
    let mut fx = Fixture::new();
    let never = fx.grant(10, None);
    let late = fx.grant(3, Some(start() + Duration::days(30)));
    let soon = fx.grant(2, Some(start() + Duration::days(1)));
    let record = fx.held(6, start());
    let taken: Vec<(Uuid, i64)> = record
        .allocations
        .iter()
        .map(|a| (a.package_id, a.amount))
        .collect();
    assert_eq!(taken, [(soon, 2), (late, 3), (never, 1)]);
    assert_eq!(fx.buckets(never), (9, 1, 0, 0));
}

#[test]
fn equal_expiry_takes_the_oldest_package_first() {
    let mut fx = Fixture::new();
    let older = fx.grant(2, None);
    let newer = fx.grant(2, None);
    let record = fx.held(3, start());
    assert_eq!(record.allocations[0].package_id, older);
    assert_eq!(record.allocations[1].package_id, newer);
}

#[test]
fn a_hold_larger_than_the_balance_is_refused_and_writes_nothing() {
    let mut fx = Fixture::new();
    let package = fx.grant(5, Some(start() + Duration::hours(1)));
    fx.book.changes = Changes::default();
    let later = start() + Duration::hours(2);
    // The package has expired, unswept: it must neither count nor be recorded by a refusal.
    let outcome = fx.hold(1, later);
    assert_eq!(
        outcome,
        HoldOutcome::InsufficientCredits {
            available: 0,
            requested: 1
        }
    );
    assert!(fx.book.changes.is_empty());
    assert_eq!(fx.buckets(package), (5, 0, 0, 0));
}

#[test]
fn partial_settle_consumes_in_order_and_returns_the_rest() {
    let mut fx = Fixture::new();
    let first = fx.grant(2, Some(start() + Duration::days(1)));
    let second = fx.grant(5, None);
    let record = fx.held(5, start());
    let outcome = fx.book.settle(record.row.id, 3, start());
    assert_eq!(
        outcome,
        SettleOutcome::Settled {
            consumed: 3,
            returned: 2
        }
    );
    assert_eq!(fx.buckets(first), (0, 0, 2, 0));
    assert_eq!(fx.buckets(second), (4, 0, 1, 0));
    assert_eq!(fx.book.totals(fx.account).unwrap().held, 0);
}

#[test]
fn settle_more_than_held_is_refused() {
    let mut fx = Fixture::new();
    fx.grant(5, None);
    let record = fx.held(2, start());
    assert_eq!(
        fx.book.settle(record.row.id, 3, start()),
        SettleOutcome::ExceedsHold { held: 2 }
    );
    assert_eq!(
        fx.book.settle(record.row.id, -1, start()),
        SettleOutcome::NegativeAmount
    );
    assert_eq!(
        fx.book.hold(record.row.id).unwrap().row.state,
        HoldState::Open
    );
}

#[test]
fn a_hold_resolves_at_most_once() {
    let mut fx = Fixture::new();
    let package = fx.grant(5, None);
    let settled = fx.held(2, start());
    assert!(matches!(
        fx.book.settle(settled.row.id, 2, start()),
        SettleOutcome::Settled { .. }
    ));
    let released = fx.held(1, start());
    assert!(matches!(
        fx.book.release(released.row.id, start()),
        ReleaseOutcome::Released { returned: 1 }
    ));
    let before = fx.buckets(package);
    let entries = fx.book.changes.entries.len();
    assert_eq!(
        fx.book.settle(settled.row.id, 1, start()),
        SettleOutcome::AlreadySettled
    );
    assert_eq!(
        fx.book.release(settled.row.id, start()),
        ReleaseOutcome::AlreadySettled
    );
    assert_eq!(
        fx.book.settle(released.row.id, 1, start()),
        SettleOutcome::AlreadyReleased
    );
    assert_eq!(
        fx.book.release(released.row.id, start()),
        ReleaseOutcome::AlreadyReleased
    );
    assert_eq!(fx.buckets(package), before);
    assert_eq!(fx.book.changes.entries.len(), entries);
}

#[test]
fn credits_returned_to_an_expired_package_expire_with_it() {
    let mut fx = Fixture::new();
    let package = fx.grant(5, Some(start() + Duration::hours(1)));
    let record = fx.held(4, start());
    let later = start() + Duration::hours(2);
    assert_eq!(
        fx.book.release(record.row.id, later),
        ReleaseOutcome::Released { returned: 4 }
    );
    // The unheld credit expired at the sweep the release ran; the returned four right after.
    assert_eq!(fx.buckets(package), (0, 0, 0, 5));
    assert_eq!(fx.book.spendable(fx.account, later), 0);
    let last = fx.book.changes.entries.last().unwrap();
    assert_eq!((last.kind, last.amount), (EntryKind::Expire, 4));
}

#[test]
fn grants_are_idempotent_by_reference() {
    let mut fx = Fixture::new();
    let expires_at = Some(start() + Duration::days(1));
    let first = fx
        .book
        .grant(fx.account, credits(5), expires_at, "order-1", start());
    let GrantOutcome::Created(created) = first else {
        panic!("{first:?}")
    };
    let again = fx
        .book
        .grant(fx.account, credits(5), expires_at, "order-1", start());
    assert_eq!(again, GrantOutcome::Existing(created.clone()));
    assert_eq!(
        fx.book
            .grant(fx.account, credits(6), expires_at, "order-1", start()),
        GrantOutcome::ReferenceConflict
    );
    assert_eq!(
        fx.book
            .grant(fx.account, credits(5), None, "order-1", start()),
        GrantOutcome::ReferenceConflict
    );
    assert_eq!(
        fx.book
            .grant(Uuid::now_v7(), credits(5), None, "order-2", start()),
        GrantOutcome::AccountNotFound
    );
    assert_eq!(
        fx.book
            .grant(fx.account, credits(5), Some(start()), "order-3", start()),
        GrantOutcome::AlreadyExpired
    );
    assert_eq!(fx.book.totals(fx.account).unwrap().available, 5);
}

#[test]
fn entries_carry_the_running_balances() {
    let mut fx = Fixture::new();
    fx.grant(5, None);
    let record = fx.held(2, start());
    fx.book.settle(record.row.id, 1, start());
    let running: Vec<(EntryKind, i64, i64)> = fx
        .book
        .changes
        .entries
        .iter()
        .map(|e| (e.kind, e.available_after, e.held_after))
        .collect();
    assert_eq!(
        running,
        [
            (EntryKind::Grant, 5, 0),
            (EntryKind::Hold, 3, 2),
            (EntryKind::Settle, 3, 1),
            (EntryKind::Release, 4, 0),
        ]
    );
}

#[test]
fn a_void_takes_the_unused_remainder_and_leaves_held_credits_held() {
    let mut fx = Fixture::new();
    let package = fx.grant(10, None);
    let record = fx.held(4, start());
    assert_eq!(
        fx.book.void(fx.account, package, start()),
        VoidOutcome::Voided {
            voided: 6,
            package: fx.book.package(package).unwrap().clone(),
        }
    );
    let p = fx.book.package(package).unwrap();
    assert_eq!((p.remaining, p.held, p.voided), (0, 4, 6));
    assert_eq!(
        fx.book.totals(fx.account).unwrap(),
        Totals {
            available: 0,
            held: 4
        }
    );
    // The hold settles 1 and returns 3, which are voided with their package at once.
    fx.book.settle(record.row.id, 1, start());
    let p = fx.book.package(package).unwrap();
    assert_eq!((p.remaining, p.held, p.consumed, p.voided), (0, 0, 1, 9));
    let last = fx.book.changes.entries.last().unwrap();
    assert_eq!(
        (last.kind, last.amount, last.hold_id),
        (EntryKind::Void, 3, Some(record.row.id))
    );
    assert_eq!(fx.book.spendable(fx.account, start()), 0);
}

#[test]
fn a_void_with_nothing_unused_is_refused_and_writes_nothing() {
    let mut fx = Fixture::new();
    let spent = fx.grant(2, None);
    let record = fx.held(2, start());
    let expiring = fx.grant(3, Some(start() + Duration::hours(1)));
    let voided = fx.grant(5, None);
    fx.book.void(fx.account, voided, start());
    let other = Fixture::new().account;
    fx.book.add_account(other);
    fx.book.changes = Changes::default();
    let later = start() + Duration::hours(2);
    // All held: nothing unused.
    assert_eq!(
        fx.book.void(fx.account, spent, start()),
        VoidOutcome::NothingToVoid
    );
    fx.book.settle(record.row.id, 2, start());
    fx.book.changes = Changes::default();
    assert_eq!(
        fx.book.void(fx.account, spent, start()),
        VoidOutcome::NothingToVoid
    );
    // Expired, unswept: the remainder is expiry's.
    assert_eq!(
        fx.book.void(fx.account, expiring, later),
        VoidOutcome::NothingToVoid
    );
    assert_eq!(
        fx.book.void(fx.account, voided, start()),
        VoidOutcome::AlreadyVoided
    );
    assert_eq!(
        fx.book.void(other, voided, start()),
        VoidOutcome::PackageNotFound
    );
    assert_eq!(
        fx.book.void(fx.account, Uuid::now_v7(), start()),
        VoidOutcome::PackageNotFound
    );
    assert_eq!(
        fx.book.void(Uuid::now_v7(), voided, start()),
        VoidOutcome::AccountNotFound
    );
    assert!(fx.book.changes.is_empty());
    assert_eq!(fx.buckets(expiring), (3, 0, 0, 0));
}
