//! `atelier bench verify`: how long `atelier verify` takes over a large database. A scratch
//! database gets `workflows` workflows parked in `awaiting_callback` (each with its hold and
//! timeline, so every invariant holds), then the same check `atelier verify` runs reads it all.
use std::time::Instant;

use anyhow::ensure;
use atelier_actors::{Clock, Credits, SystemClock};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::e2e::{park, start};
use crate::accounts;
use crate::config::Settings;
use crate::progress::Reporter;

pub async fn run(settings: &Settings, workflows: usize) -> anyhow::Result<()> {
    ensure!(workflows > 0, "--workflows must be positive");
    super::on_scratch(settings, "verify", |url, data_dir| async move {
        bench(settings, &url, &data_dir, workflows).await
    })
    .await
}

async fn bench(
    settings: &Settings,
    database_url: &str,
    data_dir: &std::path::Path,
    workflows: usize,
) -> anyhow::Result<()> {
    let kind = if database_url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let mut quiet = settings.clone();
    // Parked workflows wait an hour: nothing for the engine to do, and nothing to race.
    quiet.workflow.run_engine = false;
    let (state, _) = start(&quiet, database_url, data_dir).await?;
    println!("bench verify: {kind}; {workflows} workflows parked, then verified");
    let account =
        accounts::create(&state.db, Some("bench-verify".into()), SystemClock.now()).await?;
    let credits = Credits::parse(workflows as i64)?;
    let reference = format!("bench-{}", account.account.id);
    state
        .ledger
        .grant(account.account.id, credits, None, reference)
        .await?;
    park(
        &state,
        account.account.id,
        workflows,
        &Reporter::new("bench verify"),
    )
    .await?;
    // What autovacuum would have done by the time anyone verifies: right after a bulk load
    // PostgreSQL has no statistics for the new rows and plans each timeline read as a scan of
    // every event (500 ms a page of 500 workflows instead of 2 ms; measured). Not timed.
    state.db.execute_unprepared("ANALYZE").await?;
    let started = Instant::now();
    let now = SystemClock.now();
    let progress = Reporter::new("verify");
    let report = crate::ops::verify::run(&state.db, &state.storage, now, None, &progress).await?;
    let violations = report.violations;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        violations.is_empty(),
        "verify found {} violation(s) in the seeded database, the first: {}",
        violations.len(),
        violations[0]
    );
    println!(
        "{}",
        json!({"bench": "verify", "database": kind, "workflows": workflows,
               "verify_seconds": (seconds * 10.0).round() / 10.0,
               "workflows_per_sec": (workflows as f64 / seconds).round()})
    );
    Ok(())
}
