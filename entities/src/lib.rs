//! sea-orm entities: one module per table. Only data shapes live here; the rules that keep
//! the rows consistent live in `atelier-actors`.

pub mod account;
pub mod api_key;
pub mod credit_package;
pub mod engine_member;
pub mod hold;
pub mod hold_allocation;
pub mod idempotency_key;
pub mod ledger_entry;
pub mod ops_audit;
pub mod ops_bulk_job;
pub mod provider_circuit;
pub mod provider_pause;
pub mod shard_lease;
pub mod upload;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_inbox;
pub mod workflow;
pub mod workflow_event;
