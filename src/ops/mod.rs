//! What operators do to the system beyond what the engine and the ledger own: the audit log
//! of their actions (`audit`). The ops API (`crate::api::ops`) and the dashboard call these.
pub mod audit;
pub mod bulk;
pub mod verify;
