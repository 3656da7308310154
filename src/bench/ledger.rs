//! `atelier bench ledger`: hold+settle pairs per second through the ledger actor, spread over
//! many accounts and on one hot account, on a scratch database of the configured kind (the
//! configured database itself is never touched). Ends with one JSON line of its figures.
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use atelier_actors::ledger::LedgerStore;
use atelier_actors::ledger::{GrantOutcome, HoldOutcome, Ledger, SettleOutcome, verify};
use atelier_actors::{Clock, Credits, SystemClock};
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::accounts;
use crate::config::Settings;
use crate::scratch::ScratchDatabase;
use crate::startup::open_database;

pub async fn run(
    settings: &Settings,
    account_count: usize,
    pairs: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    ensure!(
        account_count > 0 && pairs > 0 && concurrency > 0,
        "--accounts, --pairs and --concurrency must be positive"
    );
    let scratch = ScratchDatabase::create(&settings.database_url, "bench").await?;
    let kind = if scratch.url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let result = async {
        let db = open_database(&scratch.url).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::start(LedgerStore::new(db.clone(), clock.clone()), settings.ledger.max_batch);

        println!("bench ledger: {kind}, {account_count} accounts, {pairs} pairs per phase, {concurrency} in flight, batches of up to {}", settings.ledger.max_batch);
        let mut spread_accounts = Vec::with_capacity(account_count);
        for index in 0..account_count {
            spread_accounts.push(accounts::create(&db, Some(format!("bench-{index}")), clock.now()).await?.account.id);
        }
        let hot = accounts::create(&db, Some("bench-hot".into()), clock.now()).await?.account.id;
        let per_account = Credits::parse(1_000_000_000)?;
        let grants = spread_accounts.iter().chain([&hot]).map(|account| {
            ledger.grant(*account, per_account, None, format!("bench-{account}"))
        });
        for outcome in join_all(grants).await {
            ensure!(matches!(outcome?, GrantOutcome::Created(_)), "bench grant refused");
        }

        let spread = run_pairs(&ledger, &spread_accounts, pairs, concurrency).await?;
        println!("  spread over {account_count} accounts: {spread:>9.0} pairs/s");
        let hot_rate = run_pairs(&ledger, &[hot], pairs, concurrency).await?;
        println!("  one hot account:             {hot_rate:>9.0} pairs/s");

        let violations = verify::verify_ledger(&db).await?;
        println!("  verify after the run: {} violation(s)", violations.len());
        if let Some(first) = violations.first() {
            bail!("the benchmark left the ledger inconsistent: {first}");
        }
        db.close().await?;
        println!(
            "{}",
            json!({"bench": "ledger", "database": kind, "accounts": account_count, "pairs_per_phase": pairs,
                   "concurrency": concurrency, "max_batch": settings.ledger.max_batch,
                   "spread_pairs_per_sec": spread.round(), "hot_pairs_per_sec": hot_rate.round()})
        );
        Ok(())
    }
    .await;
    scratch
        .destroy()
        .await
        .context("cannot remove the scratch database")?;
    result
}

/// Runs `pairs` hold(1)+settle(1) pairs, `concurrency` at a time, cycling through `accounts`;
/// returns pairs per second.
async fn run_pairs(
    ledger: &Ledger,
    accounts: &[Uuid],
    pairs: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let one = Credits::parse(1)?;
    let started = Instant::now();
    let workers = (0..concurrency).map(|worker| async move {
        let mut index = worker;
        while index < pairs {
            let account = accounts[index % accounts.len()];
            let HoldOutcome::Held(hold) = ledger.hold(account, one, None).await? else {
                bail!("bench hold refused");
            };
            let settled = ledger.settle(hold.row.id, 1).await?;
            ensure!(
                matches!(settled, SettleOutcome::Settled { consumed: 1, .. }),
                "bench settle refused: {settled:?}"
            );
            index += concurrency;
        }
        Ok(())
    });
    for outcome in join_all(workers).await {
        outcome?;
    }
    Ok(pairs as f64 / started.elapsed().as_secs_f64())
}
