//! Retention (docs/design.md §1, "Retention"): how long what ended generations leave behind is
//! kept, and the task that deletes it.
//!
//! - `config`: the `[retention]` section;
//! - `pruner`: the task, started where the engine runs, and one pass of it (`atelier prune`).
//!
//! The deletes themselves live with the tables' owners: `workflow::retention` (workflows,
//! events, callbacks, idempotency keys, through `webhooks_out::outbox` the finished
//! deliveries) and `storage` (result objects).
pub mod config;
pub mod pruner;

pub use config::RetentionConfig;
pub use pruner::{Pass, Pruner, PrunerHandle};
