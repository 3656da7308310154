//! Completion webhooks to customers (outgoing, the way Stripe and Svix deliver), and the one
//! owner of the `webhook_endpoints` and `webhook_deliveries` tables.
//!
//! - `event`: which transitions are events, and the body each carries;
//! - `endpoints`: an account's endpoints, and which destinations may be registered;
//! - `outbox`: the deliveries, written in the transaction of the transition they report
//!   (called by the workflow writer), claimed and finished by the sender;
//! - `sender`: the task that signs and sends due deliveries, with retries;
//! - `config`: the `[webhooks]` section;
//! - `verify`: the outbox invariant checked by `atelier verify`.
pub mod config;
pub mod endpoints;
pub mod event;
pub mod outbox;
pub mod sender;
pub mod verify;

pub use config::WebhooksConfig;
pub use event::EventType;
