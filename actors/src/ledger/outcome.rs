//! Typed results of ledger commands. A refusal is an outcome, not an error: it wrote nothing.
use atelier_entities::credit_package::Model as Package;
use atelier_entities::hold::Model as HoldRow;
use atelier_entities::hold_allocation::Model as Allocation;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Grant(GrantOutcome),
    Hold(HoldOutcome),
    Settle(SettleOutcome),
    Release(ReleaseOutcome),
    Expire(ExpireOutcome),
    Void(VoidOutcome),
}

/// An open or resolved hold with the allocations it took, in consumption order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub row: HoldRow,
    pub allocations: Vec<Allocation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    Created(Package),
    /// The same reference on the same account with the same fields: the grant that already
    /// exists.
    Existing(Package),
    /// The account already has a grant with this reference and other fields.
    ReferenceConflict,
    AlreadyExpired,
    AccountNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Held(HoldRecord),
    InsufficientCredits { available: i64, requested: i64 },
    AccountNotFound,
    DuplicateHoldId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    Settled { consumed: i64, returned: i64 },
    AlreadySettled,
    AlreadyReleased,
    ExceedsHold { held: i64 },
    NegativeAmount,
    HoldNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released { returned: i64 },
    AlreadySettled,
    AlreadyReleased,
    HoldNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpireOutcome {
    pub expired: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidOutcome {
    /// `voided` credits left the package; the package as it is now.
    Voided {
        voided: i64,
        package: Package,
    },
    /// Nothing is left unused: every credit is consumed, held or expired (or the package has
    /// expired, and its remainder is expiry's).
    NothingToVoid,
    /// The package was voided before.
    AlreadyVoided,
    /// The account has no such package.
    PackageNotFound,
    AccountNotFound,
}

// One conversion per outcome type, from the ledger's answer to what its command expects.
crate::outcome_conversion!(Outcome, GrantOutcome, Outcome::Grant(outcome) => outcome);
crate::outcome_conversion!(Outcome, HoldOutcome, Outcome::Hold(outcome) => outcome);
crate::outcome_conversion!(Outcome, SettleOutcome, Outcome::Settle(outcome) => outcome);
crate::outcome_conversion!(Outcome, ReleaseOutcome, Outcome::Release(outcome) => outcome);
crate::outcome_conversion!(Outcome, ExpireOutcome, Outcome::Expire(outcome) => outcome);
crate::outcome_conversion!(Outcome, VoidOutcome, Outcome::Void(outcome) => outcome);

/// Counts the credits committed `outcomes` moved in the metrics (`crate::metrics`): what new
/// holds held, settles consumed, releases and the unused part of settles returned, the
/// sweeper expired, grants granted, voids took. Called only once their transaction committed.
pub fn count_committed(outcomes: &[Outcome]) {
    let (mut granted, mut held, mut consumed, mut released, mut expired) = (0, 0, 0, 0, 0);
    let mut voided = 0;
    for outcome in outcomes {
        match outcome {
            Outcome::Grant(GrantOutcome::Created(package)) => granted += package.credits,
            Outcome::Hold(HoldOutcome::Held(hold)) => held += hold.row.amount,
            Outcome::Settle(SettleOutcome::Settled {
                consumed: charged,
                returned,
            }) => {
                consumed += charged;
                released += returned;
            }
            Outcome::Release(ReleaseOutcome::Released { returned }) => released += returned,
            Outcome::Expire(expire) => expired += expire.expired,
            Outcome::Void(VoidOutcome::Voided { voided: took, .. }) => voided += took,
            _ => {}
        }
    }
    for (movement, credits) in [
        ("granted", granted),
        ("held", held),
        ("consumed", consumed),
        ("released", released),
        ("expired", expired),
        ("voided", voided),
    ] {
        crate::metrics::ledger_credits(movement, credits);
    }
}
