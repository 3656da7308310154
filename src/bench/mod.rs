//! `atelier bench`: throughput and latency figures on a scratch database of the configured kind
//! (the configured database itself is never touched). Each benchmark ends with one JSON line.
mod cluster;
mod e2e;
mod ledger;
mod usage;
mod verify;

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use uuid::Uuid;

use crate::config::Settings;
use crate::scratch::ScratchDatabase;

#[derive(Debug, Subcommand)]
pub enum Target {
    /// Ledger throughput: hold+settle pairs per second.
    Ledger {
        /// Accounts the spread phase cycles through.
        #[arg(long, default_value_t = 1_000)]
        accounts: usize,
        /// Pairs per phase.
        #[arg(long, default_value_t = 50_000)]
        pairs: usize,
        /// Pairs in flight at once.
        #[arg(long, default_value_t = 1_024)]
        concurrency: usize,
    },
    /// The whole service: generations per second end to end against a zero-delay simulator,
    /// webhook-to-settled latency at a steady rate, and memory with many parked workflows.
    E2e {
        /// Generations in the throughput phase.
        #[arg(long, default_value_t = 3_000)]
        generations: usize,
        /// Submissions in flight at once in the throughput phase.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Generations per second in the latency phase.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Seconds the latency phase lasts.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Workflows parked in awaiting_callback for the memory figure.
        #[arg(long, default_value_t = 100_000)]
        parked: usize,
        /// Generations that ended `retention.days` + 1 days ago (each with its timeline, a
        /// callback and an idempotency key), seeded before the throughput phase: the backlog
        /// retention prunes.
        #[arg(long, default_value_t = 0)]
        old: usize,
        /// Run a retention pass (`[retention]`, with at least 1 day) beside the throughput and
        /// latency phases, pruning the `--old` backlog while they run.
        #[arg(long)]
        prune: bool,
    },
    /// Several engine processes on one PostgreSQL database: throughput with each engine count,
    /// and the takeover time after a kill -9.
    Cluster {
        /// Engine counts to measure, e.g. `1,2,3`.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        engines: Vec<usize>,
        /// Generations per throughput run.
        #[arg(long, default_value_t = 2_000)]
        generations: usize,
        /// Submissions in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Engines killed (one at a time, each restarted) for the takeover figure.
        #[arg(long, default_value_t = 3)]
        kills: usize,
    },
    /// How long `atelier verify` takes over many workflows (parked, each with its hold).
    Verify {
        /// Workflows in the scratch database.
        #[arg(long, default_value_t = 1_000_000)]
        workflows: usize,
    },
}

pub async fn run(settings: &Settings, target: Target) -> anyhow::Result<()> {
    match target {
        Target::Ledger {
            accounts,
            pairs,
            concurrency,
        } => ledger::run(settings, accounts, pairs, concurrency).await,
        Target::E2e {
            generations,
            concurrency,
            rate,
            seconds,
            parked,
            old,
            prune,
        } => {
            let plan = e2e::Plan {
                generations,
                concurrency,
                rate,
                seconds,
                parked,
                old,
                prune,
            };
            e2e::run(settings, plan).await
        }
        Target::Cluster {
            engines,
            generations,
            concurrency,
            kills,
        } => {
            let plan = cluster::Plan {
                engines,
                generations,
                concurrency,
                kills,
            };
            cluster::run(settings, plan).await
        }
        Target::Verify { workflows } => verify::run(settings, workflows).await,
    }
}

/// Runs `bench` on a scratch database like the configured one and a temporary data directory
/// (its URL and path), and removes both afterwards, whatever `bench` answered.
async fn on_scratch<F, Fut>(settings: &Settings, label: &str, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(String, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let scratch = ScratchDatabase::create(&settings.database_url, label).await?;
    let data_dir =
        std::env::temp_dir().join(format!("atelier-{label}-{}", Uuid::new_v4().simple()));
    let result = bench(scratch.url.clone(), data_dir.clone()).await;
    std::fs::remove_dir_all(&data_dir).ok();
    scratch
        .destroy()
        .await
        .context("cannot remove the scratch database")?;
    result
}
