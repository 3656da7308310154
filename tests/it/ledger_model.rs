//! The ledger against a plain in-memory model: random batches of grant / hold / settle (partial)
//! / release / expire / void / clock advance over several accounts — with invalid commands among them
//! (unknown and duplicate hold ids, negative settles, grants already expired) and amounts near
//! `MAX_CREDITS` — applied on a real database through the store in one transaction, or sent all
//! at once through the `Ledger` handle and its batcher. After every batch each outcome matches
//! the model's, every package row and balance matches, and `verify` finds no violation. The case
//! count is proptest's: `PROPTEST_CASES`, 256 by default.
use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use crate::common::{Backend, start_of_test_time};
use atelier::scratch::ScratchDatabase;
use atelier::startup::open_database;
use atelier_actors::credits::MAX_CREDITS;
use atelier_actors::ledger::verify::verify_ledger;
use atelier_actors::ledger::{
    Command, ExpireOutcome, GrantOutcome, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome,
    VoidOutcome, read,
};
use atelier_actors::ledger::{DEFAULT_MAX_BATCH, Ledger, LedgerStore};
use atelier_actors::{Clock, Credits, ManualClock};
use atelier_entities::credit_package;
use atelier_entities::hold::{self, HoldState};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};
use uuid::Uuid;

const ACCOUNTS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Grant {
        account: usize,
        credits: i64,
        expires_in_secs: Option<i64>,
    },
    /// Grants again under an earlier grant's reference, with the same fields or not, to the
    /// same account or (`account`) to any account: references are unique per account.
    RepeatGrant {
        pick: usize,
        same_fields: bool,
        account: Option<usize>,
    },
    Hold {
        account: usize,
        credits: i64,
    },
    /// A hold under the id of an earlier one.
    DuplicateHold {
        pick: usize,
        credits: i64,
    },
    /// Settles `amount` (negative ones included).
    Settle {
        pick: usize,
        amount: i64,
    },
    /// Settles the hold's amount less `under` (-1: one more than was held).
    SettleNear {
        pick: usize,
        under: i64,
    },
    Release {
        pick: usize,
    },
    /// A settle or release of a hold that does not exist.
    Unknown {
        settle: Option<i64>,
    },
    Expire {
        account: usize,
    },
    /// Voids an earlier grant's remainder, for its own account or (`account`) any account.
    Void {
        pick: usize,
        account: Option<usize>,
    },
    /// Ends the batch: the clock moves between transactions, never inside one.
    Advance {
        secs: i64,
    },
}

/// Mostly small amounts, sometimes within `small` of `MAX_CREDITS`.
fn credits(small: i64) -> impl Strategy<Value = i64> {
    prop_oneof![6 => 1..small, 1 => (MAX_CREDITS - small)..=MAX_CREDITS]
}

fn step() -> impl Strategy<Value = Step> {
    let account = 0..ACCOUNTS;
    // Some grants expire in the past: they are refused as already expired.
    let expires_in_secs = proptest::option::weighted(0.7, -300..1_200_i64);
    prop_oneof![
        3 => (account.clone(), credits(20), expires_in_secs)
            .prop_map(|(account, credits, expires_in_secs)| Step::Grant { account, credits, expires_in_secs }),
        1 => (any::<usize>(), any::<bool>(), proptest::option::weighted(0.3, account.clone()))
            .prop_map(|(pick, same_fields, account)| Step::RepeatGrant { pick, same_fields, account }),
        4 => (account.clone(), credits(25)).prop_map(|(account, credits)| Step::Hold { account, credits }),
        1 => (any::<usize>(), 1..5_i64).prop_map(|(pick, credits)| Step::DuplicateHold { pick, credits }),
        3 => (any::<usize>(), -3..14_i64).prop_map(|(pick, amount)| Step::Settle { pick, amount }),
        1 => (any::<usize>(), -1..3_i64).prop_map(|(pick, under)| Step::SettleNear { pick, under }),
        2 => any::<usize>().prop_map(|pick| Step::Release { pick }),
        1 => proptest::option::of(-1..3_i64).prop_map(|settle| Step::Unknown { settle }),
        1 => account.clone().prop_map(|account| Step::Expire { account }),
        1 => (any::<usize>(), proptest::option::weighted(0.2, account))
            .prop_map(|(pick, account)| Step::Void { pick, account }),
        2 => (1..900_i64).prop_map(|secs| Step::Advance { secs }),
    ]
}

#[derive(Debug, Clone)]
struct Package {
    id: Uuid,
    account: usize,
    reference: String,
    credits: i64,
    remaining: i64,
    held: i64,
    consumed: i64,
    expired: i64,
    voided: i64,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl Package {
    fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Soonest expiry first, never-expiring last, then oldest. `sequence` is the package's
    /// place in creation order (its index in the model), for grants made at the same instant.
    fn order(&self, sequence: usize) -> (bool, Option<DateTime<Utc>>, DateTime<Utc>, usize) {
        (
            self.expires_at.is_none(),
            self.expires_at,
            self.created_at,
            sequence,
        )
    }
}

#[derive(Debug, Clone)]
struct Hold {
    id: Uuid,
    account: usize,
    amount: i64,
    /// (index into `Model::packages`, credits), in the order they were taken.
    taken: Vec<(usize, i64)>,
    state: HoldState,
    settled: i64,
}

/// What the ledger should do, written as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    packages: Vec<Package>,
    holds: Vec<Hold>,
}

impl Model {
    fn spendable(&self, account: usize, now: DateTime<Utc>) -> i64 {
        self.packages
            .iter()
            .filter(|p| p.account == account && !p.is_expired(now))
            .map(|p| p.remaining)
            .sum()
    }

    fn expire_due(&mut self, account: usize, now: DateTime<Utc>) -> i64 {
        let mut total = 0;
        for package in &mut self.packages {
            if package.account == account && package.is_expired(now) && package.remaining > 0 {
                total += package.remaining;
                package.expired += package.remaining;
                package.remaining = 0;
            }
        }
        total
    }

    fn hold(&mut self, id: Uuid, account: usize, credits: i64, now: DateTime<Utc>) -> Expected {
        let available = self.spendable(account, now);
        if credits > available {
            return Expected::Insufficient { available };
        }
        self.expire_due(account, now);
        let mut order: Vec<usize> = (0..self.packages.len())
            .filter(|&i| self.packages[i].account == account && self.packages[i].remaining > 0)
            .collect();
        order.sort_by_key(|&i| self.packages[i].order(i));
        let mut left = credits;
        let mut taken = Vec::new();
        for index in order {
            let package = &mut self.packages[index];
            let take = package.remaining.min(left);
            if take > 0 {
                package.remaining -= take;
                package.held += take;
                left -= take;
                taken.push((index, take));
            }
        }
        assert_eq!(left, 0, "model: spendable said there was enough");
        let allocations = taken.clone();
        self.holds.push(Hold {
            id,
            account,
            amount: credits,
            taken,
            state: HoldState::Open,
            settled: 0,
        });
        Expected::Held { allocations }
    }

    /// Settles `consume` of the hold (0 = release); returns the credits that went back.
    fn resolve(&mut self, pick: usize, consume: i64, state: HoldState, now: DateTime<Utc>) -> i64 {
        let account = self.holds[pick].account;
        self.expire_due(account, now);
        let mut left = consume;
        let mut returned = 0;
        for &(index, amount) in &self.holds[pick].taken {
            let package = &mut self.packages[index];
            let consumed_here = amount.min(left);
            left -= consumed_here;
            let back = amount - consumed_here;
            package.held -= amount;
            package.consumed += consumed_here;
            // Returned credits leave an expired package as expired, a voided one as voided.
            if package.is_expired(now) {
                package.expired += back;
            } else if package.voided > 0 {
                package.voided += back;
            } else {
                package.remaining += back;
            }
            returned += back;
        }
        let hold = &mut self.holds[pick];
        hold.state = state;
        hold.settled = consume;
        returned
    }
}

impl Model {
    /// Voids the unused, unexpired remainder of package `index` for `account`, at most once.
    fn void(&mut self, index: usize, account: usize, now: DateTime<Utc>) -> Expected {
        let package = &mut self.packages[index];
        if package.account != account {
            Expected::PackageNotFound
        } else if package.voided > 0 {
            Expected::AlreadyVoided
        } else if package.remaining == 0 || package.is_expired(now) {
            Expected::NothingToVoid
        } else {
            let amount = std::mem::take(&mut package.remaining);
            package.voided = amount;
            Expected::Voided(amount)
        }
    }
}

/// A settle (of `settle`) or a release of a hold id nobody made.
fn plan_unknown(settle: Option<i64>) -> (Command, Expected) {
    let hold_id = Uuid::now_v7();
    match settle {
        Some(amount) => (Command::Settle { hold_id, amount }, Expected::HoldNotFound),
        None => (Command::Release { hold_id }, Expected::HoldNotFound),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Granted,
    /// Named by reference: the id may not be known yet when both are in one batch.
    Existing(String),
    ReferenceConflict,
    AlreadyExpired,
    /// (index into `Model::packages`, credits taken), in the order taken.
    Held {
        allocations: Vec<(usize, i64)>,
    },
    Insufficient {
        available: i64,
    },
    Settled {
        consumed: i64,
        returned: i64,
    },
    Released {
        returned: i64,
    },
    AlreadySettled,
    AlreadyReleased,
    ExceedsHold {
        held: i64,
    },
    NegativeAmount,
    HoldNotFound,
    DuplicateHoldId,
    Expired(i64),
    Voided(i64),
    NothingToVoid,
    AlreadyVoided,
    PackageNotFound,
}

/// How a batch reaches the ledger.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// `LedgerStore::apply`: the batch is one transaction.
    Store,
    /// Every command sent at once through the `Ledger` handle: its batcher groups them.
    Batcher,
}

struct Case {
    db: DatabaseConnection,
    store: LedgerStore,
    /// Set on `Route::Batcher`.
    ledger: Option<Ledger>,
    /// Commands per batch.
    batch_size: usize,
    clock: ManualClock,
    accounts: Vec<Uuid>,
    model: Model,
    references: usize,
    /// The batch being assembled: commands with what the model expects of each.
    batch: Vec<(Command, Expected)>,
}

impl Case {
    fn account_index(&self, id: Uuid) -> usize {
        self.accounts.iter().position(|a| *a == id).unwrap()
    }

    /// Adds `step` to the batch, or ends the batch when it moves the clock.
    async fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        let now = self.clock.now();
        let planned = match step {
            Step::Grant {
                account,
                credits,
                expires_in_secs,
            } => {
                self.references += 1;
                let reference = format!("grant-{}", self.references);
                let expires_at = expires_in_secs.map(|secs| now + Duration::seconds(secs));
                Some(self.plan_grant(account, credits, expires_at, reference, now))
            }
            Step::RepeatGrant {
                pick,
                same_fields,
                account,
            } => self.plan_repeat_grant(pick, same_fields, account, now),
            Step::Hold { account, credits } => {
                Some(self.plan_hold(Uuid::now_v7(), account, credits, now))
            }
            Step::DuplicateHold { pick, credits } => self.picked(pick).map(|pick| {
                let hold = &self.model.holds[pick];
                let (id, account) = (hold.id, hold.account);
                self.plan_hold(id, account, credits, now)
            }),
            Step::Settle { pick, amount } => self
                .picked(pick)
                .map(|pick| self.plan_settle(pick, amount, now)),
            Step::SettleNear { pick, under } => self.picked(pick).map(|pick| {
                let amount = self.model.holds[pick].amount - under;
                self.plan_settle(pick, amount, now)
            }),
            Step::Release { pick } => self.picked(pick).map(|pick| self.plan_release(pick, now)),
            Step::Unknown { settle } => Some(plan_unknown(settle)),
            Step::Expire { account } => Some((
                Command::ExpireDue {
                    account_id: self.accounts[account],
                },
                Expected::Expired(self.model.expire_due(account, now)),
            )),
            Step::Void { pick, account } => self.plan_void(pick, account, now),
            Step::Advance { secs } => {
                self.flush().await?;
                self.clock.advance(Duration::seconds(secs));
                return self.check_state().await;
            }
        };
        self.batch.extend(planned);
        if self.batch.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// The index of an earlier hold `pick` chooses, if there is any.
    fn picked(&self, pick: usize) -> Option<usize> {
        (!self.model.holds.is_empty()).then(|| pick % self.model.holds.len())
    }

    /// A void of an earlier grant whose id the store has told (one granted in the batch being
    /// assembled has none yet).
    fn plan_void(
        &mut self,
        pick: usize,
        account: Option<usize>,
        now: DateTime<Utc>,
    ) -> Option<(Command, Expected)> {
        if self.model.packages.is_empty() {
            return None;
        }
        let index = pick % self.model.packages.len();
        let package = &self.model.packages[index];
        if package.id.is_nil() {
            return None;
        }
        let (package_id, account) = (package.id, account.unwrap_or(package.account));
        let command = Command::Void {
            account_id: self.accounts[account],
            package_id,
        };
        Some((command, self.model.void(index, account, now)))
    }

    fn plan_repeat_grant(
        &mut self,
        pick: usize,
        same_fields: bool,
        account: Option<usize>,
        now: DateTime<Utc>,
    ) -> Option<(Command, Expected)> {
        if self.model.packages.is_empty() {
            return None;
        }
        let original = self.model.packages[pick % self.model.packages.len()].clone();
        let credits = original.credits + if same_fields { 0 } else { 1 };
        // One more than the most is not a valid grant; one less conflicts all the same.
        let credits = if credits > MAX_CREDITS {
            credits - 2
        } else {
            credits
        };
        Some(self.plan_grant(
            account.unwrap_or(original.account),
            credits,
            original.expires_at,
            original.reference,
            now,
        ))
    }

    fn plan_hold(
        &mut self,
        hold_id: Uuid,
        account: usize,
        credits: i64,
        now: DateTime<Utc>,
    ) -> (Command, Expected) {
        let expected = if self.model.holds.iter().any(|hold| hold.id == hold_id) {
            Expected::DuplicateHoldId
        } else {
            self.model.hold(hold_id, account, credits, now)
        };
        let command = Command::Hold {
            hold_id,
            account_id: self.accounts[account],
            credits: Credits::parse(credits).unwrap(),
            generation_id: None,
        };
        (command, expected)
    }

    fn plan_settle(&mut self, pick: usize, amount: i64, now: DateTime<Utc>) -> (Command, Expected) {
        let hold = &self.model.holds[pick];
        let command = Command::Settle {
            hold_id: hold.id,
            amount,
        };
        let expected = match hold.state {
            HoldState::Settled => Expected::AlreadySettled,
            HoldState::Released => Expected::AlreadyReleased,
            HoldState::Open if amount < 0 => Expected::NegativeAmount,
            HoldState::Open if amount > hold.amount => Expected::ExceedsHold { held: hold.amount },
            HoldState::Open => Expected::Settled {
                consumed: amount,
                returned: self.model.resolve(pick, amount, HoldState::Settled, now),
            },
        };
        (command, expected)
    }

    fn plan_release(&mut self, pick: usize, now: DateTime<Utc>) -> (Command, Expected) {
        let hold = &self.model.holds[pick];
        let command = Command::Release { hold_id: hold.id };
        let expected = match hold.state {
            HoldState::Settled => Expected::AlreadySettled,
            HoldState::Released => Expected::AlreadyReleased,
            HoldState::Open => Expected::Released {
                returned: self.model.resolve(pick, 0, HoldState::Released, now),
            },
        };
        (command, expected)
    }

    fn plan_grant(
        &mut self,
        account: usize,
        credits: i64,
        expires_at: Option<DateTime<Utc>>,
        reference: String,
        now: DateTime<Utc>,
    ) -> (Command, Expected) {
        let expected = match self
            .model
            .packages
            .iter()
            .find(|p| p.account == account && p.reference == reference)
        {
            Some(existing) if existing.credits == credits && existing.expires_at == expires_at => {
                Expected::Existing(existing.reference.clone())
            }
            Some(_) => Expected::ReferenceConflict,
            None if expires_at.is_some_and(|at| at <= now) => Expected::AlreadyExpired,
            None => {
                // The id is the store's to choose; `flush` fills it in from the outcome.
                self.model.packages.push(Package {
                    id: Uuid::nil(),
                    account,
                    reference: reference.clone(),
                    credits,
                    remaining: credits,
                    held: 0,
                    consumed: 0,
                    expired: 0,
                    voided: 0,
                    expires_at,
                    created_at: now,
                });
                Expected::Granted
            }
        };
        let command = Command::Grant {
            account_id: self.accounts[account],
            credits: Credits::parse(credits).unwrap(),
            expires_at,
            reference,
        };
        (command, expected)
    }

    /// Applies the batch in one transaction and compares every outcome, then the state.
    async fn flush(&mut self) -> Result<(), TestCaseError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let commands: Vec<Command> = batch.iter().map(|(command, _)| command.clone()).collect();
        let outcomes = self.apply(commands).await?;
        prop_assert_eq!(outcomes.len(), batch.len());
        for ((command, expected), outcome) in batch.into_iter().zip(outcomes) {
            let actual = self.observe(&command, outcome);
            prop_assert_eq!(actual, expected, "for {:?}", command);
        }
        self.check_state().await
    }

    /// Applies `commands` by the case's route. Through the batcher they are all sent before any
    /// answer is awaited; it applies them in the order sent, in batches of its choosing.
    async fn apply(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, TestCaseError> {
        let failed = |error: String| TestCaseError::fail(format!("ledger failed: {error}"));
        match &self.ledger {
            None => self
                .store
                .apply(&commands)
                .await
                .map_err(|error| failed(error.to_string())),
            Some(ledger) => {
                let sent = commands.into_iter().map(|command| ledger.execute(command));
                let outcomes = futures::future::join_all(sent).await;
                let outcomes: Result<Vec<Outcome>, _> = outcomes.into_iter().collect();
                outcomes.map_err(|error| failed(error.to_string()))
            }
        }
    }

    /// Turns a store outcome into the model's vocabulary; learns the ids of new packages.
    fn observe(&mut self, command: &Command, outcome: Outcome) -> Expected {
        match outcome {
            Outcome::Grant(GrantOutcome::Created(row)) => {
                let Command::Grant {
                    account_id,
                    reference,
                    ..
                } = command
                else {
                    unreachable!()
                };
                let account = self.account_index(row.account_id);
                let asked = self.account_index(*account_id);
                if let Some(package) = self
                    .model
                    .packages
                    .iter_mut()
                    .find(|p| p.account == asked && &p.reference == reference && p.id.is_nil())
                {
                    package.id = row.id;
                    assert_eq!(package.account, account, "granted to the wrong account");
                    assert_eq!(package.created_at, row.created_at);
                }
                Expected::Granted
            }
            Outcome::Grant(GrantOutcome::Existing(row)) => Expected::Existing(row.reference),
            Outcome::Grant(GrantOutcome::ReferenceConflict) => Expected::ReferenceConflict,
            Outcome::Grant(GrantOutcome::AlreadyExpired) => Expected::AlreadyExpired,
            Outcome::Hold(HoldOutcome::Held(record)) => Expected::Held {
                allocations: record
                    .allocations
                    .iter()
                    .map(|a| {
                        let index = self
                            .model
                            .packages
                            .iter()
                            .position(|p| p.id == a.package_id);
                        (
                            index.expect("hold took from a package the model knows"),
                            a.amount,
                        )
                    })
                    .collect(),
            },
            Outcome::Hold(HoldOutcome::InsufficientCredits { available, .. }) => {
                Expected::Insufficient { available }
            }
            Outcome::Settle(SettleOutcome::Settled { consumed, returned }) => {
                Expected::Settled { consumed, returned }
            }
            Outcome::Settle(SettleOutcome::AlreadySettled)
            | Outcome::Release(ReleaseOutcome::AlreadySettled) => Expected::AlreadySettled,
            Outcome::Settle(SettleOutcome::AlreadyReleased)
            | Outcome::Release(ReleaseOutcome::AlreadyReleased) => Expected::AlreadyReleased,
            Outcome::Settle(SettleOutcome::ExceedsHold { held }) => Expected::ExceedsHold { held },
            Outcome::Settle(SettleOutcome::NegativeAmount) => Expected::NegativeAmount,
            Outcome::Settle(SettleOutcome::HoldNotFound)
            | Outcome::Release(ReleaseOutcome::HoldNotFound) => Expected::HoldNotFound,
            Outcome::Hold(HoldOutcome::DuplicateHoldId) => Expected::DuplicateHoldId,
            Outcome::Release(ReleaseOutcome::Released { returned }) => {
                Expected::Released { returned }
            }
            Outcome::Expire(ExpireOutcome { expired }) => Expected::Expired(expired),
            Outcome::Void(VoidOutcome::Voided { voided, .. }) => Expected::Voided(voided),
            Outcome::Void(VoidOutcome::NothingToVoid) => Expected::NothingToVoid,
            Outcome::Void(VoidOutcome::AlreadyVoided) => Expected::AlreadyVoided,
            Outcome::Void(VoidOutcome::PackageNotFound) => Expected::PackageNotFound,
            other => panic!("outcome the model never expects: {other:?}"),
        }
    }

    /// Every package row, hold row and balance equals the model's; `verify` is clean.
    async fn check_state(&self) -> Result<(), TestCaseError> {
        let now = self.clock.now();
        let db_error = |error: sea_orm::DbErr| TestCaseError::fail(error.to_string());
        let rows: HashMap<Uuid, credit_package::Model> = credit_package::Entity::find()
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        prop_assert_eq!(rows.len(), self.model.packages.len());
        for package in &self.model.packages {
            let row = &rows[&package.id];
            prop_assert_eq!(
                (
                    row.credits,
                    row.remaining,
                    row.held,
                    row.consumed,
                    row.expired,
                    row.voided
                ),
                (
                    package.credits,
                    package.remaining,
                    package.held,
                    package.consumed,
                    package.expired,
                    package.voided
                ),
                "package {}",
                package.reference
            );
        }
        for hold in &self.model.holds {
            let row = hold::Entity::find_by_id(hold.id)
                .one(&self.db)
                .await
                .map_err(db_error)?
                .expect("hold row");
            prop_assert_eq!((row.state, row.settled_amount), (hold.state, hold.settled));
        }
        for (index, account_id) in self.accounts.iter().enumerate() {
            let balance = read::balance(&self.db, *account_id, now)
                .await
                .map_err(db_error)?;
            let mut listed: Vec<(usize, &Package)> = self
                .model
                .packages
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.account == index && !p.is_expired(now) && (p.remaining > 0 || p.held > 0)
                })
                .collect();
            listed.sort_by_key(|(sequence, p)| p.order(*sequence));
            let held: i64 = self
                .model
                .packages
                .iter()
                .filter(|p| p.account == index)
                .map(|p| p.held)
                .sum();
            prop_assert_eq!(balance.available, self.model.spendable(index, now));
            prop_assert_eq!(balance.held, held);
            prop_assert_eq!(
                balance.packages.iter().map(|p| p.id).collect::<Vec<_>>(),
                listed.iter().map(|(_, p)| p.id).collect::<Vec<_>>()
            );
        }
        let violations = verify_ledger(&self.db).await.map_err(db_error)?;
        prop_assert!(violations.is_empty(), "verify: {:?}", violations);
        Ok(())
    }
}

/// What every case of one test shares: the database (migrated once) with its connections,
/// the clock, the store and, on `Route::Batcher`, one batcher. Opening connections per case
/// cost most of a case's time on PostgreSQL; the clock only moves forward, and the model only
/// reads time relative to it, so cases need no reset of it.
struct Shared {
    db: DatabaseConnection,
    clock: ManualClock,
    store: LedgerStore,
    ledger: Option<Ledger>,
    batch_size: usize,
}

impl Shared {
    async fn open(url: &str, route: Route) -> anyhow::Result<Self> {
        let db = open_database(url).await?;
        let clock = ManualClock::new(start_of_test_time());
        let store = LedgerStore::new(db.clone(), Arc::new(clock.clone()));
        let (ledger, batch_size) = match route {
            Route::Store => (None, 4),
            // Larger batches, so that the batcher has several commands to group.
            Route::Batcher => (Some(Ledger::start(store.clone(), DEFAULT_MAX_BATCH)), 12),
        };
        Ok(Self {
            db,
            clock,
            store,
            ledger,
            batch_size,
        })
    }
}

/// One case on the test's database, emptied first: a fresh database per case would cost a
/// second each on PostgreSQL.
async fn run_case(shared: &Shared, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let failed = |error: sea_orm::DbErr| TestCaseError::fail(error.to_string());
    // Children first: the foreign keys point from allocations and entries to holds,
    // packages and accounts, and from API keys to accounts.
    for table in [
        "hold_allocations",
        "ledger_entries",
        "holds",
        "credit_packages",
        "api_keys",
        "accounts",
    ] {
        shared
            .db
            .execute_unprepared(&format!("DELETE FROM {table}"))
            .await
            .map_err(failed)?;
    }
    let mut case = Case::start(shared).await?;
    for step in steps {
        case.step(step).await?;
    }
    case.flush().await
}

impl Case {
    /// A case with `ACCOUNTS` new accounts, on what the test's cases share.
    async fn start(shared: &Shared) -> Result<Self, TestCaseError> {
        let mut accounts = Vec::new();
        for _ in 0..ACCOUNTS {
            let created = atelier::accounts::create(&shared.db, None, shared.clock.now())
                .await
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            accounts.push(created.account.id);
        }
        Ok(Case {
            store: shared.store.clone(),
            ledger: shared.ledger.clone(),
            batch_size: shared.batch_size,
            db: shared.db.clone(),
            clock: shared.clock.clone(),
            accounts,
            model: Model::default(),
            references: 0,
            batch: Vec::new(),
        })
    }
}

/// The test's database. On PostgreSQL its sessions commit without waiting for the disk: the
/// cases never crash the server, and a flush to disk per batch would make 256 of them take
/// minutes.
async fn scratch_database(like_url: &str, backend: Backend) -> anyhow::Result<ScratchDatabase> {
    let scratch = ScratchDatabase::create(like_url, "model").await?;
    if backend == Backend::Postgres {
        let db = atelier_actors::db::connect(&scratch.url).await?;
        db.execute_unprepared(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', \
             current_database()); END $$",
        )
        .await?;
        db.close().await?;
    }
    Ok(scratch)
}

/// Runs proptest's number of cases (`PROPTEST_CASES`, 256 by default) of the model test on
/// one database of `backend` by `route`, all in one actix system (the batcher's home).
fn run_model_test(backend: Backend, route: Route) {
    let Some(like_url) = common::server_url(backend) else {
        return;
    };
    let config = Config {
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let system = actix::System::new();
    let scratch = system
        .block_on(scratch_database(&like_url, backend))
        .expect("create scratch database");
    let shared = system
        .block_on(Shared::open(&scratch.url, route))
        .expect("open scratch database");
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&proptest::collection::vec(step(), 1..60), |steps| {
        system.block_on(run_case(&shared, steps))
    });
    system.block_on(shared.db.clone().close()).ok();
    drop(shared);
    system
        .block_on(scratch.destroy())
        .expect("drop scratch database");
    if let Err(error) = outcome {
        panic!("{error}");
    }
}

#[test]
fn ledger_matches_model_on_sqlite() {
    run_model_test(Backend::Sqlite, Route::Store);
}

#[test]
fn ledger_matches_model_on_postgres() {
    run_model_test(Backend::Postgres, Route::Store);
}

#[test]
fn ledger_through_the_batcher_matches_model_on_sqlite() {
    run_model_test(Backend::Sqlite, Route::Batcher);
}

#[test]
fn ledger_through_the_batcher_matches_model_on_postgres() {
    run_model_test(Backend::Postgres, Route::Batcher);
}
