//! Generation workflows (DESIGN.md §1): the state machine, its persistence and the actors that
//! drive each workflow through it.
pub mod batch;
pub mod inputs;
pub mod machine;
pub mod store;
pub mod verify;
pub mod writer;

pub use atelier_entities::workflow::WorkflowState;
pub use batch::{IDEMPOTENCY_SCOPE, WriteCommand, WriteOutcome};
pub use machine::{Event, FailureCode, Via};
pub use store::{CreateOutcome, NewWorkflow, TransitionOutcome};
pub use writer::{BatchFault, DEFAULT_MAX_BATCH, Workflows};
