//! The command line: `serve` (the default), `migrate`, `verify`, `accounts create`,
//! `grants add`, `bench`.
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use atelier_actors::ledger::LedgerStore;
use atelier_actors::ledger::{GrantOutcome, Ledger, verify};
use atelier_actors::progress::Progress;
use atelier_actors::storage::Storage;
use atelier_actors::webhooks_out::verify::verify_outbox;
use atelier_actors::workflow::verify::verify_workflows_with;

use crate::progress::Reporter;
use atelier_actors::{Clock, Credits, SystemClock, db};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::api::accounts::{AccountCreated, GrantView};
use crate::config::Settings;
use crate::startup::{Application, open_database};
use crate::{accounts, bench, stress, telemetry};

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
    /// Check invariants 1-6, 8 and 9 of docs/design.md §4 over the whole database; exit 2 listing each violation
    /// (1 when it cannot run at all).
    Verify,
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
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load()?;
    let quiet = matches!(cli.command, Some(Command::Bench { .. }));
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

/// Every invariant `atelier verify` checks, over one consistent snapshot, reporting progress.
pub async fn check_invariants(
    db: &sea_orm::DatabaseConnection,
    storage: &Storage,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<verify::Violation>> {
    let snapshot = db::begin_snapshot(db).await?;
    let mut violations = verify::verify_ledger_with(&snapshot, progress).await?;
    let now = SystemClock.now();
    violations
        .extend(verify_workflows_with(&snapshot, storage, now, DEADLINE_GRACE, progress).await?);
    violations.extend(verify_outbox(&snapshot).await?);
    snapshot.rollback().await?;
    Ok(violations)
}

/// How far past its deadline a live workflow may be before `verify` calls it stuck: the engine
/// acts on deadlines every tick, so this only trips when nothing is running the engine.
const DEADLINE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

async fn verify_database(settings: &Settings) -> anyhow::Result<ExitCode> {
    let db = open_database(&settings.database_url).await?;
    let storage = Storage::open(&settings.storage, &settings.data_dir)?;
    let started = std::time::Instant::now();
    let violations = check_invariants(&db, &storage, &Reporter::new("verify")).await?;
    let took = started.elapsed().as_secs_f64();
    if violations.is_empty() {
        println!("ok: invariants 1-6, 8 and 9 hold (checked in {took:.1}s)");
        return Ok(ExitCode::SUCCESS);
    }
    for violation in &violations {
        println!("{violation}");
    }
    eprintln!("atelier: {} invariant violation(s)", violations.len());
    // 2, not 1: a script can tell broken books from a verify that could not run.
    Ok(ExitCode::from(2))
}
