//! Generation workflows (DESIGN.md §1): the state machine, its persistence and the actors that
//! drive each workflow through it.
pub mod batch;
pub mod inputs;
pub mod machine;
pub mod store;
pub mod verify;
pub mod writer;

pub use atelier_entities::workflow::WorkflowState;
pub use machine::{Event, FailureCode, Via};
