//! Typed results of ledger commands. A refusal is an outcome, not an error: it wrote nothing.
use atelier_entities::credit_package::Model as Package;

use super::book::HoldRecord;

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
