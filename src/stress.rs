//! Load generators the test suite starts as separate OS processes, to prove the ledger safe
//! across processes and across a SIGKILL. Each prints machine-readable lines on stdout.
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use atelier_actors::ledger::LedgerStore;
use atelier_actors::ledger::{HoldOutcome, Ledger, SettleOutcome};
use atelier_actors::{Clock, Credits, SystemClock};
use clap::Subcommand;
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::config::Settings;
use crate::startup::open_database;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// `count` concurrent holds of one credit; prints {"held", "refused", "started_us",
    /// "first_commit_us", "last_commit_us"}: Unix times in microseconds of sending the holds
    /// and of the first and last answer.
    Holds {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        count: usize,
        /// Unix time in milliseconds to wait for, so that two processes start together.
        #[arg(long)]
        start_at_ms: Option<i64>,
    },
    /// Hold-then-settle pairs, `concurrency` at a time; prints `settled <hold id>` after each
    /// settle has committed.
    Pairs {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let db = open_database(&settings.database_url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::start(
        LedgerStore::new(db, clock.clone()),
        settings.ledger.max_batch,
    );
    match command {
        Command::Holds {
            account,
            count,
            start_at_ms,
        } => holds(&ledger, &clock, account, count, start_at_ms).await,
        Command::Pairs {
            account,
            count,
            concurrency,
        } => pairs(&ledger, account, count, concurrency).await,
    }
}

/// `count` holds of 1 credit at once (from `start_at_ms`, when given); prints what was held
/// and refused, and when the holds went out and when the first and last answers arrived.
async fn holds(
    ledger: &Ledger,
    clock: &Arc<dyn Clock>,
    account: Uuid,
    count: usize,
    start_at_ms: Option<i64>,
) -> anyhow::Result<()> {
    let one = Credits::parse(1)?;
    if let Some(start_at_ms) = start_at_ms {
        let wait = start_at_ms - clock.now().timestamp_millis();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
    // When the holds went out and when each answer arrived (its batch had committed):
    // the test compares two processes' spans to know that they really raced.
    let started = clock.now().timestamp_micros();
    let holds = (0..count).map(|_| async {
        let outcome = ledger.hold(account, one, None).await;
        (outcome, clock.now().timestamp_micros())
    });
    let outcomes = join_all(holds).await;
    let committed = outcomes.iter().map(|(_, at)| *at);
    let (first, last) = (committed.clone().min(), committed.max());
    let mut held = 0;
    let mut refused = 0;
    for (outcome, _) in outcomes {
        match outcome? {
            HoldOutcome::Held(_) => held += 1,
            HoldOutcome::InsufficientCredits { .. } => refused += 1,
            other => anyhow::bail!("unexpected hold outcome {other:?}"),
        }
    }
    let report = json!({
        "held": held,
        "refused": refused,
        "started_us": started,
        "first_commit_us": first,
        "last_commit_us": last,
    });
    println!("{report}");
    Ok(())
}

/// `count` hold-then-settle pairs, `concurrency` at a time, printing `settled <hold id>` as
/// each settle commits.
async fn pairs(
    ledger: &Ledger,
    account: Uuid,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let one = Credits::parse(1)?;
    let workers = (0..concurrency.max(1)).map(|worker| async move {
        let mut index = worker;
        while index < count {
            if let HoldOutcome::Held(hold) = ledger.hold(account, one, None).await? {
                let outcome = ledger.settle(hold.row.id, 1).await?;
                anyhow::ensure!(
                    matches!(outcome, SettleOutcome::Settled { .. }),
                    "settle refused: {outcome:?}"
                );
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "settled {}", hold.row.id)?;
                stdout.flush()?;
            }
            index += concurrency;
        }
        Ok(())
    });
    for outcome in join_all(workers).await {
        outcome?;
    }
    Ok(())
}
