//! `atelier bench verify`: how long `atelier verify` takes over a large database. A scratch
//! database gets `workflows` workflows parked in `awaiting_callback` (each with its hold and
//! timeline, so every invariant holds), then the same check `atelier verify` runs reads it all.
use std::time::Instant;

use anyhow::ensure;
use atelier_actors::{Clock, Credits, SystemClock};
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
    let started = Instant::now();
    let violations =
        crate::cli::check_invariants(&state.db, &state.storage, &Reporter::new("verify")).await?;
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
