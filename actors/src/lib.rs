//! The Atelier engine: the actors and the rules they enforce. The HTTP service in `src/` is a
//! thin shell around what lives here.

pub mod batcher;
pub mod clock;
pub mod cluster;
pub mod config_check;
pub mod credits;
pub mod db;
pub mod engine;
pub mod images;
pub mod ledger;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod progress;
pub mod providers;
pub mod retention;
pub mod secret;
pub mod storage;
pub mod webhooks_out;
pub mod workflow;

pub use clock::{Clock, ManualClock, SystemClock};
pub use credits::Credits;
