//! The command line: `serve` (the default), `migrate`, `verify`, `accounts create|list`,
//! `grants add|list`, `ops bulk cancel|wake|show` (`crate::ops_cli`), `bench`.
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use atelier_actors::ledger::LedgerStore;
use atelier_actors::ledger::{GrantOutcome, Ledger};
use atelier_actors::storage::Storage;
use atelier_actors::{Clock, Credits, SystemClock};

use crate::progress::Reporter;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::api::accounts::{AccountCreated, GrantView};
use crate::api::query::MAX_LIMIT;
use crate::config::Settings;
use crate::startup::{Application, open_database};
use crate::{accounts, bench, ops_cli, stress, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "atelier",
    version,
    about = "A durable workflow engine for paid AI image generations"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Check invariants 1-6, 8, 9 and 10 of docs/design.md §4 over the whole database; exit 2 listing each violation
    /// (1 when it cannot run at all).
    Verify,
    /// Run one retention pass now (`[retention]`): prune what generations that ended more than
    /// `retention.days` ago leave behind and expire results older than `retention.results_days`,
    /// then print what it deleted. Safe beside running services.
    Prune,
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Manage credit packages.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Operator actions through a running service's ops API.
    Ops {
        #[command(subcommand)]
        command: ops_cli::OpsCommand,
    },
    /// Measure throughput on a scratch database of the configured kind.
    Bench {
        #[command(subcommand)]
        target: bench::Target,
    },
    /// Load generators the test suite runs as separate processes.
    #[command(hide = true)]
    Stress {
        #[command(subcommand)]
        command: stress::Command,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account and print its id and API key (shown only this once).
    Create {
        #[arg(long)]
        name: Option<String>,
    },
    /// List accounts, newest first, as a table: id, name, disabled, available, held, created.
    List {
        /// An id, an id's prefix or a piece of the name (case-insensitive).
        #[arg(long)]
        query: Option<String>,
        /// 1 to 200.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

#[derive(Debug, Subcommand)]
enum GrantsCommand {
    /// Grant credits to an account. Idempotent by --reference.
    Add {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        credits: i64,
        /// RFC 3339; omit for credits that never expire.
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
        #[arg(long)]
        reference: String,
    },
    /// List an account's packages, newest first, as a table with every bucket.
    List {
        #[arg(long)]
        account: Uuid,
        /// 1 to 200.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load()?;
    let quiet = matches!(
        cli.command,
        Some(Command::Bench { .. } | Command::Ops { .. })
    );
    telemetry::init(settings.log_format, quiet);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings, clock).await,
        Command::Migrate => {
            open_database(&settings.database_url).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => verify_database(&settings).await,
        Command::Prune => prune(&settings, clock).await,
        Command::Accounts {
            command: AccountsCommand::Create { name },
        } => {
            accounts::check_name(name.as_deref())
                .map_err(|error| anyhow::anyhow!("--name: {error}"))?;
            let db = open_database(&settings.database_url).await?;
            let created = accounts::create(&db, name, clock.now()).await?;
            println!("{}", serde_json::to_string(&AccountCreated::from(created))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts {
            command: AccountsCommand::List { query, limit },
        } => list_accounts(&settings, query, limit, clock.now()).await,
        Command::Grants {
            command: GrantsCommand::List { account, limit },
        } => list_grants(&settings, account, limit).await,
        Command::Grants {
            command:
                GrantsCommand::Add {
                    account,
                    credits,
                    expires_at,
                    reference,
                },
        } => {
            let credits = Credits::parse(credits).context("--credits")?;
            let db = open_database(&settings.database_url).await?;
            let ledger = Ledger::start(
                LedgerStore::new(db, clock.clone()),
                settings.ledger.max_batch,
            );
            let expires_at = expires_at.map(atelier_actors::clock::truncate_to_micros);
            match ledger
                .grant(account, credits, expires_at, reference)
                .await?
            {
                GrantOutcome::Created(package) | GrantOutcome::Existing(package) => {
                    let view = GrantView::new(package, clock.now());
                    println!("{}", serde_json::to_string(&view)?);
                    Ok(ExitCode::SUCCESS)
                }
                GrantOutcome::ReferenceConflict => {
                    bail!("reference already used for a grant with other fields")
                }
                GrantOutcome::AlreadyExpired => bail!("--expires-at is in the past"),
                GrantOutcome::AccountNotFound => bail!("no account {account}"),
            }
        }
        Command::Ops { command } => ops_cli::run(&settings, command).await,
        Command::Bench { target } => bench::run(&settings, target)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Stress { command } => stress::run(&settings, command)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn serve(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    let admin_token = match settings.admin_token.clone() {
        Some(token) => token.expose().to_owned(),
        None => {
            let token = accounts::random_token("adm_");
            println!(
                "Admin token (generated for this run; set ATELIER_ADMIN_TOKEN to fix one): {token}"
            );
            token
        }
    };
    let application = Application::build(&settings, admin_token, clock).await?;
    let address = format!("http://{}:{}", settings.bind.ip(), application.port());
    println!(
        "Atelier listening on {address} (database: {})",
        crate::startup::redact(&settings.database_url)
    );
    tracing::info!(%address, "serving");
    application
        .run_until_stopped()
        .await
        .context("server failed")?;
    tracing::info!("shut down cleanly");
    Ok(ExitCode::SUCCESS)
}

/// `--limit`: 1 to `MAX_LIMIT`, as the API takes it.
fn checked_limit(limit: u64) -> anyhow::Result<u64> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        bail!("--limit: must be from 1 to {MAX_LIMIT}");
    }
    Ok(limit)
}

async fn list_accounts(
    settings: &Settings,
    query: Option<String>,
    limit: u64,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let limit = checked_limit(limit)?;
    let query = query.map(|query| query.trim().to_owned());
    if let Some(query) = &query
        && (query.is_empty() || query.chars().count() > accounts::MAX_QUERY_LEN)
    {
        bail!(
            "--query: must be 1 to {} characters",
            accounts::MAX_QUERY_LEN
        );
    }
    let db = open_database(&settings.database_url).await?;
    let (rows, _) = accounts::search(&db, query.as_deref(), None, limit).await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let balances = atelier_actors::ledger::read::balances_of(&db, &ids, now).await?;
    let table = rows.into_iter().map(|row| {
        let (available, held) = balances.get(&row.id).copied().unwrap_or_default();
        vec![
            row.id.to_string(),
            row.name.unwrap_or_default(),
            if row.disabled_at.is_some() {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            available.to_string(),
            held.to_string(),
            row.created_at.to_rfc3339(),
        ]
    });
    print_table(
        &["id", "name", "disabled", "available", "held", "created_at"],
        table,
    );
    Ok(ExitCode::SUCCESS)
}

async fn list_grants(settings: &Settings, account: Uuid, limit: u64) -> anyhow::Result<ExitCode> {
    let limit = checked_limit(limit)?;
    let db = open_database(&settings.database_url).await?;
    if accounts::find(&db, account).await?.is_none() {
        bail!("no account {account}");
    }
    let packages = atelier_actors::ledger::read::packages_of(&db, account, limit).await?;
    let table = packages.into_iter().map(|package| {
        let expires_at = package.expires_at.map(|at| at.to_rfc3339());
        vec![
            package.id.to_string(),
            package.reference,
            package.credits.to_string(),
            package.remaining.to_string(),
            package.held.to_string(),
            package.consumed.to_string(),
            package.expired.to_string(),
            package.voided.to_string(),
            expires_at.unwrap_or_else(|| "never".into()),
            package.created_at.to_rfc3339(),
        ]
    });
    print_table(
        &[
            "id",
            "reference",
            "credits",
            "remaining",
            "held",
            "consumed",
            "expired",
            "voided",
            "expires_at",
            "created_at",
        ],
        table,
    );
    Ok(ExitCode::SUCCESS)
}

/// A plain table: a header line, then one line per row, columns padded to their widest cell
/// and separated by two spaces. Control characters in a cell (a name may hold any) print as
/// spaces, so that every row stays one line.
fn print_table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let clean = |cell: String| -> String {
        cell.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut lines: Vec<Vec<String>> = vec![headers.iter().map(|h| (*h).to_owned()).collect()];
    lines.extend(rows.map(|row| row.into_iter().map(clean).collect()));
    let mut widths = vec![0; headers.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

async fn verify_database(settings: &Settings) -> anyhow::Result<ExitCode> {
    let db = open_database(&settings.database_url).await?;
    let storage = Storage::open(&settings.storage, &settings.data_dir)?;
    let started = std::time::Instant::now();
    let progress = Reporter::new("verify");
    let report = crate::ops::verify::run(&db, &storage, SystemClock.now(), None, &progress).await?;
    let took = started.elapsed().as_secs_f64();
    if report.violations.is_empty() {
        println!("ok: invariants 1-6 and 8-10 hold (checked in {took:.1}s)");
        return Ok(ExitCode::SUCCESS);
    }
    for violation in &report.violations {
        println!("{violation}");
    }
    eprintln!(
        "atelier: {} invariant violation(s)",
        report.violations.len()
    );
    // 2, not 1: a script can tell broken books from a verify that could not run.
    Ok(ExitCode::from(2))
}

async fn prune(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    if !settings.retention.enabled() {
        println!("retention.days and retention.results_days are 0: everything is kept");
        return Ok(ExitCode::SUCCESS);
    }
    let db = open_database(&settings.database_url).await?;
    let storage = Storage::open(&settings.storage, &settings.data_dir)?;
    let pruner =
        atelier_actors::retention::Pruner::new(db, storage, clock, settings.retention.clone());
    let pass = pruner.pass().await?;
    let pruned = pass.pruned;
    println!(
        "pruned {} generation(s): {} event(s), {} callback(s), {} idempotency key(s), {} webhook delivery(ies); {} result(s) expired, in {} batch(es)",
        pruned.workflows,
        pruned.events,
        pruned.callbacks,
        pruned.keys,
        pruned.deliveries,
        pass.results_expired,
        pass.batches
    );
    Ok(ExitCode::SUCCESS)
}
