//! What a provider's actor knows about the provider's health, for operators
//! (`GET /v1/ops/providers`): its circuit and since when, its calls in flight against the
//! cap, its rate limit (this process's share of the account's, and the account's), the recent
//! calls' error rate, 429s and latency, and the last error.
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::window::Summary;

/// Longest last error kept, in characters: provider answers are quoted at their start.
pub const MAX_ERROR_CHARS: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `closed`, `half_open` (a probe is out) or `open`.
    pub circuit: &'static str,
    /// When the circuit last changed (the actor's start, when it never did).
    pub circuit_since: DateTime<Utc>,
    pub in_flight: usize,
    /// This process's cap: its share of `account_max_concurrency`.
    pub max_concurrency: usize,
    /// Calls waiting for a slot or for the rate limit.
    pub queued: usize,
    /// Calls this process starts per second at most, its share of
    /// `account_requests_per_second` (may be fractional); `None`: no limit of ours.
    pub requests_per_second: Option<f64>,
    /// How many live engine processes split the account's limits (1 alone, and on SQLite).
    pub share_of: usize,
    /// The provider's `max_concurrency` and `requests_per_second` as configured: the
    /// account's limits for all processes together.
    pub account_max_concurrency: usize,
    pub account_requests_per_second: Option<u32>,
    /// Until when a 429's `Retry-After` pauses every call, while it does.
    pub throttled_until: Option<DateTime<Utc>>,
    pub last_5m: Summary,
    pub last_60m: Summary,
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub at: DateTime<Utc>,
    /// The error class and the start of the provider's answer (no credentials: adapters put
    /// none in errors).
    pub message: String,
}

/// The error's text as kept: at most `MAX_ERROR_CHARS` characters.
pub fn truncated(error: &super::ProviderError) -> String {
    let text = error.to_string();
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
