//! Generation workflows (docs/design.md §1): the state machine, and the one owner of the
//! `workflows`, `workflow_events` and `webhook_inbox` tables.
//!
//! - `machine`: the states, the transition table and what each transition does to the row and
//!   to the ledger;
//! - `command` and `outcome`: what the writer is asked and what it answers;
//! - `batch`: applies a batch of commands in one transaction (`WorkflowStore`);
//! - `committed`: what a batch did, counted in the metrics once it committed;
//! - `handle`: `Workflows`, the batching writer's handle, through which every write goes;
//! - `read`: every read of the three tables;
//! - `feed`: committed transitions, read back for live status streams;
//! - `seed`: bulk loads for the benchmark;
//! - `inputs`: a generation's inputs as persisted;
//! - `retention`: the deletes of what ended generations leave behind, in small batches;
//! - `verify`: the workflow invariants of docs/design.md §4.
pub mod batch;
pub mod command;
mod committed;
pub mod feed;
pub mod feed_event;
mod feed_frontier;
pub mod handle;
pub mod inputs;
pub mod machine;
pub mod outcome;
pub mod read;
pub mod retention;
pub mod seed;
pub mod verify;

pub use atelier_entities::workflow::WorkflowState;
pub use batch::BatchFault;
pub use command::{IDEMPOTENCY_SCOPE, NewCallback, NewWorkflow, WriteCommand};
pub use handle::{DEFAULT_MAX_BATCH, Workflows};
pub use machine::{Event, FailureCode, Via};
pub use outcome::{CreateOutcome, TransitionOutcome, WriteOutcome};
