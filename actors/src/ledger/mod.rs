//! The credit ledger (docs/design.md §3): packages that expire, holds taken FIFO by expiry,
//! settle and release exactly once, and an append-only record of every movement. The one
//! owner of `credit_packages`, `holds`, `hold_allocations` and
//! `ledger_entries`.
//!
//! - `command` and `outcome`: what the ledger is asked and what it answers;
//! - `book`: the rules, pure and in memory;
//! - `store`: `LedgerStore`, which runs a batch of commands in one database transaction;
//! - `handle`: `Ledger`, the batching handle everything else moves credits through;
//! - `read`: balances and the entry list, straight from the database;
//! - `sweeper`: expires due packages;
//! - `verify`: checks the ledger invariants of docs/design.md §4 over the whole database.

pub mod book;
pub mod command;
pub mod handle;
pub mod outcome;
pub mod read;
pub mod store;
pub mod sweeper;
pub mod verify;
mod write_pg;

pub use command::Command;
pub use handle::{DEFAULT_MAX_BATCH, Ledger, LedgerError};
pub use outcome::{
    ExpireOutcome, GrantOutcome, HoldOutcome, HoldRecord, Outcome, ReleaseOutcome, SettleOutcome,
    VoidOutcome,
};
pub use store::LedgerStore;
