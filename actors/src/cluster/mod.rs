//! Several engine processes on one PostgreSQL database (design §5, issue 13). Workflows are
//! split into a fixed number of shards; a process drives a shard's workflows only while it
//! holds the shard's lease, and every workflow write it makes checks, inside its own
//! transaction, that it still holds the lease at the epoch it believes (the fence).
//!
//! - `config`: `ClusterConfig`, the `[cluster]` section;
//! - `shard`: which shard a workflow is in, and the `Fence` a write carries;
//! - `leases`: every statement on `shard_leases` (take, renew, hand back, the fence check);
//! - `members`: every statement on `engine_members` (heartbeat, who is live);
//! - `ownership`: this process's in-memory view of the shards it holds, which the engine asks
//!   before it starts or continues a step;
//! - `keeper`: the task that renews, balances and hands back the leases;
//! - `wakeups`: `NOTIFY`/`LISTEN` wake-ups of a workflow's owner from any process;
//! - `listener`: an engine process's one `LISTEN` connection, for every channel it listens on;
//! - `engine_lock`: SQLite's single engine, held through a lock on a file beside the database.
pub mod config;
pub mod engine_lock;
pub mod keeper;
pub mod leases;
pub mod listener;
pub mod members;
pub mod ownership;
pub mod shard;
pub mod wakeups;

pub use config::ClusterConfig;
pub use ownership::{Claim, Ownership};
pub use shard::{Fence, SHARDS, shard_of};
