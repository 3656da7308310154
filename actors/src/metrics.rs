//! The service's Prometheus metrics: every name, what it measures and where it is recorded,
//! through the `metrics` facade (a no-op until the service installs its recorder). The README
//! (Operations, Metrics) lists them for operators; the histograms' buckets are here, beside
//! the names, so that the exporter and the recording sites cannot disagree.
//!
//! Labels carry states, providers, error codes, writer names and call kinds only: never an
//! account, a generation or anything a client sent, so that `/metrics` may be scraped without
//! a token and the series stay few.
use std::time::Duration;

use atelier_entities::workflow::WorkflowState;

/// Counter: committed transitions, by `from`, `to`, `provider` and `error_code` (`none` but
/// for releases). A creation counts as `from="none"`, `to="reserved"`.
pub const TRANSITIONS: &str = "atelier_transitions_total";
/// Gauge (computed at scrape): live generations per `state`, counted up to `LIVE_COUNT_CAP`.
pub const GENERATIONS_LIVE: &str = "atelier_generations_live";
/// Gauge (computed at scrape): seconds since the oldest live generation was created.
pub const OLDEST_LIVE_AGE: &str = "atelier_oldest_live_generation_age_seconds";
/// Histogram: one engine step, by the `state` it ran in.
pub const STEP_DURATION: &str = "atelier_step_duration_seconds";
/// Histogram: one call to a provider through its actor, by `provider`, `call` (`submit`,
/// `poll`, `cancel`) and `outcome` (`ok` or the error class).
pub const PROVIDER_CALL_DURATION: &str = "atelier_provider_call_duration_seconds";
/// Histogram: from the first stored callback of a generation to its settle commit, by
/// `provider`.
pub const WEBHOOK_TO_SETTLED: &str = "atelier_webhook_to_settled_seconds";
/// Histogram: commands per committed batch, by `writer` (`workflow`, `ledger`).
pub const BATCH_SIZE: &str = "atelier_batch_size";
/// Histogram: one batch transaction from begin to commit (or failure), by `writer` and
/// `outcome` (`committed`, `failed`).
pub const BATCH_DURATION: &str = "atelier_batch_duration_seconds";
/// Gauge: calls in flight to a `provider`.
pub const PROVIDER_IN_FLIGHT: &str = "atelier_provider_in_flight";
/// Gauge: a `provider`'s circuit: 0 closed, 1 half-open (a probe is out), 2 open.
pub const PROVIDER_CIRCUIT: &str = "atelier_provider_circuit_state";
/// Counter: 429 answers from a `provider`.
pub const PROVIDER_THROTTLED: &str = "atelier_provider_throttled_total";
/// Counter: times a `provider`'s `Retry-After` paused every call to it.
pub const PROVIDER_THROTTLE_PAUSES: &str = "atelier_provider_throttle_pauses_total";
/// Gauge (computed at scrape): 1 while an operator has the `provider` paused.
pub const PROVIDER_PAUSED: &str = "atelier_provider_paused";
/// Counter: credits moved by committed ledger writes, by `movement` (`granted`, `held`,
/// `consumed`, `released` — a settle's unused remainder included — `expired`, and `voided`:
/// what an operator's void took at once; credits a hold later returns to a voided package are
/// counted as `released`).
pub const LEDGER_CREDITS: &str = "atelier_ledger_credits_total";

/// Counter: workflow writes refused because this process no longer held the lease of the
/// workflow's shard (another process took it over): nothing of them was written.
pub const FENCED_WRITES: &str = "atelier_fenced_writes_total";
/// Gauge (computed at scrape): shards this process's engine holds (256 on SQLite).
pub const SHARDS_HELD: &str = "atelier_shards_held";

/// Most live generations a scrape counts per state: the count stays a bounded index scan.
pub const LIVE_COUNT_CAP: u64 = 100_000;

const SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const LONG_SECONDS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];
const COMMANDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Each histogram and its buckets, for the exporter.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (STEP_DURATION, SECONDS),
    (PROVIDER_CALL_DURATION, SECONDS),
    (WEBHOOK_TO_SETTLED, LONG_SECONDS),
    (BATCH_SIZE, COMMANDS),
    (BATCH_DURATION, SECONDS),
];

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called by the service once its recorder is installed: measurements that cost a read (the
/// webhook→settled time) are taken from then on only.
pub fn enable() {
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts committed transitions; `from` is `None` for a creation.
pub fn transition(
    from: Option<WorkflowState>,
    to: WorkflowState,
    provider: &str,
    error_code: Option<&str>,
) {
    metrics::counter!(
        TRANSITIONS,
        "from" => from.map_or("none", WorkflowState::as_str),
        "to" => to.as_str(),
        "provider" => provider.to_owned(),
        "error_code" => error_code.unwrap_or("none").to_owned(),
    )
    .increment(1);
}

/// Counts `credits` moved by a committed ledger write (`movement`: one of the labels above).
pub fn ledger_credits(movement: &'static str, credits: i64) {
    if credits > 0 {
        metrics::counter!(LEDGER_CREDITS, "movement" => movement).increment(credits as u64);
    }
}

pub fn fenced_write() {
    metrics::counter!(FENCED_WRITES).increment(1);
}

pub fn step(state: WorkflowState, took: Duration) {
    metrics::histogram!(STEP_DURATION, "state" => state.as_str()).record(took.as_secs_f64());
}

pub fn provider_call(provider: &str, call: &'static str, outcome: &'static str, took: Duration) {
    metrics::histogram!(
        PROVIDER_CALL_DURATION,
        "provider" => provider.to_owned(),
        "call" => call,
        "outcome" => outcome,
    )
    .record(took.as_secs_f64());
}

pub fn webhook_to_settled(provider: &str, took: Duration) {
    metrics::histogram!(WEBHOOK_TO_SETTLED, "provider" => provider.to_owned())
        .record(took.as_secs_f64());
}

pub fn batch(writer: &'static str, commands: usize, took: Duration, committed: bool) {
    let outcome = if committed { "committed" } else { "failed" };
    metrics::histogram!(BATCH_DURATION, "writer" => writer, "outcome" => outcome)
        .record(took.as_secs_f64());
    if committed {
        metrics::histogram!(BATCH_SIZE, "writer" => writer).record(commands as f64);
    }
}

pub fn provider_in_flight(provider: &str, in_flight: usize) {
    metrics::gauge!(PROVIDER_IN_FLIGHT, "provider" => provider.to_owned()).set(in_flight as f64);
}

/// 0 closed, 1 half-open, 2 open.
pub fn provider_circuit(provider: &str, state: u8) {
    metrics::gauge!(PROVIDER_CIRCUIT, "provider" => provider.to_owned()).set(f64::from(state));
}

pub fn provider_throttled(provider: &str, paused_calls: bool) {
    metrics::counter!(PROVIDER_THROTTLED, "provider" => provider.to_owned()).increment(1);
    if paused_calls {
        metrics::counter!(PROVIDER_THROTTLE_PAUSES, "provider" => provider.to_owned()).increment(1);
    }
}

pub fn provider_paused(provider: &str, paused: bool) {
    metrics::gauge!(PROVIDER_PAUSED, "provider" => provider.to_owned()).set(if paused {
        1.0
    } else {
        0.0
    });
}

pub fn shards_held(count: usize) {
    metrics::gauge!(SHARDS_HELD).set(count as f64);
}

/// The scrape-time gauges of the workflows: live counts per state and the oldest one's age.
pub fn live(counts: &[(WorkflowState, u64)], oldest_age: Option<Duration>) {
    for (state, count) in counts {
        metrics::gauge!(GENERATIONS_LIVE, "state" => state.as_str()).set(*count as f64);
    }
    metrics::gauge!(OLDEST_LIVE_AGE).set(oldest_age.map_or(0.0, |age| age.as_secs_f64()));
}
