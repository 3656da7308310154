//! `atelier bench e2e`: the real service (HTTP API, engine, built-in simulator with no delay)
//! on a scratch database, driven over HTTP like a client would:
//!
//! 1. throughput: `generations` submitted `concurrency` at a time; generations per second until
//!    the last one settled;
//! 2. latency: `rate` generations per second for `seconds`; p50/p99 from the moment the
//!    simulator's callback was stored to the moment the generation settled;
//!    the throughput phase also reports what it cost per generation in CPU time, write
//!    transactions, commits and bytes written (`usage`), which do not vary with the host's load;
//! 3. memory: `parked` workflows waiting in `awaiting_callback` (created directly, with their
//!    holds), then the process's resident set size.
//!
//! With `old`, a backlog of generations that ended long ago is seeded first (each with its
//! timeline, a callback and an idempotency key), so that the phases run beside it; with
//! `prune`, a retention pass runs beside the throughput and latency phases, pruning that
//! backlog while they run (the service's own pruner is off here, so that a run without
//! `prune` has none).
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use atelier_actors::ledger::{Command, HoldOutcome, Outcome};
use atelier_actors::retention::{Pruner, RetentionConfig};
use atelier_actors::workflow::{WorkflowState, read, seed};
use atelier_actors::{Clock, Credits, SystemClock};
use atelier_entities::workflow;
use base64::Engine as _;
use futures::future::join_all;
use serde_json::{Value, json};
use uuid::Uuid;

use super::usage::Usage;
use crate::accounts;
use crate::config::Settings;
use crate::progress::Reporter;
use crate::startup::Application;
use crate::state::AppState;
use atelier_actors::progress::Progress;

pub struct Plan {
    pub generations: usize,
    pub concurrency: usize,
    pub rate: u64,
    pub seconds: u64,
    pub parked: usize,
    pub old: usize,
    pub prune: bool,
}

pub async fn run(settings: &Settings, plan: Plan) -> anyhow::Result<()> {
    ensure!(
        plan.generations > 0 && plan.concurrency > 0 && plan.rate > 0 && plan.seconds > 0,
        "--generations, --concurrency, --rate and --seconds must be positive"
    );
    super::on_scratch(settings, "e2e", |url, data_dir| async move {
        bench(settings, &url, &data_dir, &plan).await
    })
    .await
}

async fn bench(
    settings: &Settings,
    database_url: &str,
    data_dir: &std::path::Path,
    plan: &Plan,
) -> anyhow::Result<()> {
    let kind = if database_url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let storage = match settings.storage.backend {
        atelier_actors::storage::config::Backend::Local => "local",
        atelier_actors::storage::config::Backend::S3 => "s3",
    };
    let mut with_engine = settings.clone();
    with_engine.workflow.run_engine = true;
    let (state, base) = start(&with_engine, database_url, data_dir).await?;
    println!(
        "bench e2e: {kind}, {storage} storage, zero-delay simulator; {} generations {} at a time, then {}/s for {}s, then {} parked; {} old{}",
        plan.generations,
        plan.concurrency,
        plan.rate,
        plan.seconds,
        plan.parked,
        plan.old,
        if plan.prune { ", pruned meanwhile" } else { "" }
    );
    let account = accounts::create(&state.db, Some("bench-e2e".into()), SystemClock.now()).await?;
    state
        .ledger
        .grant(
            account.account.id,
            Credits::parse(1_000_000_000)?,
            None,
            format!("bench-{}", account.account.id),
        )
        .await?;
    let submitter = Submitter {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
        url: format!("{base}/v1/generations"),
        key: account.api_key.clone(),
        body: request_body(),
    };

    let pruning = backlog(settings, &state, account.account.id, plan).await?;
    let (throughput, usage) = throughput(&state, &submitter, plan).await?;
    let (p50, p99) = latency(&state, &submitter, plan).await?;
    let pruned = stop_pruning(&state, pruning).await?;
    let rss = memory(&state, account.account.id, plan.parked).await?;
    stop(&state).await?;
    let mut summary = json!({"bench": "e2e", "database": kind, "storage": storage, "generations": plan.generations,
               "concurrency": plan.concurrency, "generations_per_sec": throughput.round(),
               "latency_rate_per_sec": plan.rate, "webhook_to_settled_p50_ms": (p50 * 10.0).round() / 10.0,
               "webhook_to_settled_p99_ms": (p99 * 10.0).round() / 10.0,
               "parked_workflows": plan.parked, "rss_mib_parked": rss.round(), "old": plan.old, "prune": plan.prune,
               "pruned_during_phases": pruned});
    if let (Some(summary), Value::Object(usage)) = (summary.as_object_mut(), usage) {
        summary.extend(usage);
    }
    println!("{summary}");
    Ok(())
}

/// Stops what would look for work in the scratch database, which goes away next: the engine
/// and the completion webhooks' sender.
async fn stop(state: &AppState) -> anyhow::Result<()> {
    if let Some(engine) = &state.engine {
        engine
            .send(atelier_actors::engine::registry::Shutdown)
            .await?;
    }
    if let Some(sender) = &state.webhooks.sender {
        sender.stop();
    }
    Ok(())
}

/// Seeds the `--old` backlog and, with `--prune`, starts a retention pass over it.
async fn backlog(
    settings: &Settings,
    state: &AppState,
    account_id: Uuid,
    plan: &Plan,
) -> anyhow::Result<Option<Pruning>> {
    let retention = retention(settings);
    let ended_at =
        SystemClock.now() - retention.rows().unwrap_or_default() - chrono::Duration::days(1);
    seed_old(state, account_id, plan.old, ended_at).await?;
    Ok(plan.prune.then(|| start_pruning(state, retention)))
}

/// The real service on a free port, on the scratch database and data directory, with the
/// engine and a zero-delay simulator: its state and base URL.
pub(super) async fn start(
    settings: &Settings,
    database_url: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<(actix_web::web::Data<AppState>, String)> {
    let token = accounts::random_token("adm_");
    let mut bench_settings = settings.clone();
    bench_settings.database_url = database_url.into();
    bench_settings.bind = "127.0.0.1:0".parse()?;
    bench_settings.public_url = None;
    bench_settings.data_dir = data_dir.to_owned();
    bench_settings.admin_token = Some(token.clone().into());
    bench_settings.simulator = crate::config::Settings::default().simulator;
    bench_settings.simulator.delay_ms = 0;
    // The benchmark prunes on its own (`--prune`), when asked, and only then.
    bench_settings.retention.days = 0;
    bench_settings.retention.results_days = 0;
    let app = Application::build(&bench_settings, token, Arc::new(SystemClock)).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state.clone();
    actix_web::rt::spawn(app.into_server());
    Ok((state, base))
}

/// Submits generations as the bench account, like a client.
struct Submitter {
    client: reqwest::Client,
    url: String,
    key: String,
    body: Value,
}

impl Submitter {
    fn submit(&self) -> impl std::future::Future<Output = anyhow::Result<Uuid>> + 'static {
        let request = self
            .client
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&self.body);
        async move {
            let response = request.send().await?;
            ensure!(
                response.status() == 202,
                "submission answered {}",
                response.status()
            );
            let created: Value = response.json().await?;
            Ok(Uuid::parse_str(created["id"].as_str().unwrap_or_default())?)
        }
    }
}

/// 1. Throughput: generations per second end to end, and what they cost.
async fn throughput(
    state: &AppState,
    submitter: &Submitter,
    plan: &Plan,
) -> anyhow::Result<(f64, Value)> {
    let before = Usage::now(&state.db).await?;
    let started = Instant::now();
    let per_worker = plan.generations.div_ceil(plan.concurrency);
    let workers = (0..plan.concurrency).map(|worker| async move {
        let count = per_worker.min(plan.generations.saturating_sub(worker * per_worker));
        for _ in 0..count {
            submitter.submit().await?;
        }
        Ok::<(), anyhow::Error>(())
    });
    for outcome in join_all(workers).await {
        outcome?;
    }
    wait_settled(state, plan.generations as u64, plan.old as u64).await?;
    let throughput = plan.generations as f64 / started.elapsed().as_secs_f64();
    let (usage, usage_line) = Usage::now(&state.db)
        .await?
        .per_generation(&before, plan.generations);
    println!("  throughput: {throughput:>8.0} generations/s end to end");
    println!("  {usage_line}");
    Ok((throughput, usage))
}

/// 2. Latency at a steady rate: p50 and p99 from the stored callback to the settle.
async fn latency(
    state: &AppState,
    submitter: &Submitter,
    plan: &Plan,
) -> anyhow::Result<(f64, f64)> {
    let total = (plan.rate * plan.seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
    let mut pending = Vec::with_capacity(total);
    for _ in 0..total {
        ticker.tick().await;
        pending.push(actix_web::rt::spawn(submitter.submit()));
    }
    let mut ids = Vec::with_capacity(total);
    for handle in pending {
        ids.push(handle.await??);
    }
    wait_settled(state, (plan.generations + total) as u64, plan.old as u64).await?;
    let (p50, p99) = webhook_to_settled(state, &ids).await?;
    println!(
        "  at {}/s, webhook stored -> settled: p50 {p50:.1} ms, p99 {p99:.1} ms",
        plan.rate
    );
    Ok((p50, p99))
}

/// 3. Memory with `parked` workflows waiting in `awaiting_callback`.
async fn memory(state: &AppState, account_id: Uuid, parked: usize) -> anyhow::Result<f64> {
    let before = rss_mib();
    park(state, account_id, parked, &Reporter::new("bench e2e")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_mib();
    println!(
        "  resident memory: {after:.0} MiB with {parked} workflows parked in awaiting_callback ({before:.0} MiB before)"
    );
    Ok(after)
}

pub(super) fn request_body() -> Value {
    let png = |width: u32, height: u32, rgb: [u8; 3]| -> String {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
        let mut bytes = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut bytes, image::ImageFormat::Png)
            .expect("encode png");
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes.into_inner())
        )
    };
    json!({"person_image": png(48, 64, [220, 200, 180]), "garment_image": png(16, 16, [30, 60, 200])})
}

/// Waits until `expected` generations settled; fails if one was released (beyond the `old`
/// seeded released).
async fn wait_settled(state: &AppState, expected: u64, old: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let progress = Reporter::new("bench e2e");
    progress.phase("settled", Some(expected));
    let mut shown = 0;
    let mut look = 0u64;
    loop {
        look += 1;
        let count = |wanted: WorkflowState| read::count_in(&state.db, wanted);
        // About once a second: with an `old` backlog the count walks every seeded row.
        if look % 50 == 1 {
            let released = count(WorkflowState::Released).await?;
            if released > old {
                let released = released - old;
                bail!("{released} generation(s) were released during the benchmark");
            }
        }
        let settled = count(WorkflowState::Settled).await?;
        progress.advance(settled.saturating_sub(shown));
        shown = shown.max(settled);
        if settled >= expected {
            progress.finish();
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "generations did not settle within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50 and p99, in ms, from the first stored callback to the settled transition.
async fn webhook_to_settled(state: &AppState, ids: &[Uuid]) -> anyhow::Result<(f64, f64)> {
    let mut latencies = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let callbacks = read::callbacks_of(&state.db, chunk).await?;
        let settled = read::moves_to(&state.db, chunk, WorkflowState::Settled).await?;
        for event in settled {
            let received = callbacks
                .iter()
                .filter(|callback| callback.workflow_id == event.workflow_id)
                .map(|callback| callback.received_at)
                .min();
            if let Some(received) = received {
                latencies.push((event.at - received).num_microseconds().unwrap_or(0) as f64 / 1e3);
            }
        }
    }
    ensure!(!latencies.is_empty(), "no callback was recorded");
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile).round() as usize];
    Ok((at(0.50), at(0.99)))
}

/// The configured retention of rows (at least a day, so that `--prune` has something to do),
/// results kept: the benchmark has none to expire.
fn retention(settings: &Settings) -> RetentionConfig {
    RetentionConfig {
        days: settings.retention.days.max(1),
        results_days: 0,
        ..settings.retention.clone()
    }
}

/// Seeds `count` generations that ended at `ended_at`.
async fn seed_old(
    state: &AppState,
    account_id: Uuid,
    count: usize,
    ended_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let progress = Reporter::new("bench e2e");
    progress.phase("seeding ended generations", Some(count as u64));
    let mut left = count;
    while left > 0 {
        let take = left.min(10_000);
        seed::insert_ended(&state.db, &state.ledger, account_id, take, ended_at).await?;
        progress.advance(take as u64);
        left -= take;
    }
    progress.finish();
    Ok(())
}

/// A retention pass running beside the phases: its time in seconds once done.
type Pruning = actix_web::rt::task::JoinHandle<anyhow::Result<f64>>;

/// One retention pass on a task of its own, with the time it took.
fn start_pruning(state: &AppState, config: RetentionConfig) -> Pruning {
    let pruner = Pruner::new(
        state.db.clone(),
        state.storage.clone(),
        Arc::new(SystemClock),
        config,
    );
    actix_web::rt::spawn(async move {
        let started = Instant::now();
        pruner.pass().await?;
        Ok(started.elapsed().as_secs_f64())
    })
}

/// Stops the pass if it still runs (its open batch rolls back) and says how many workflows
/// were pruned by then.
async fn stop_pruning(state: &AppState, pruning: Option<Pruning>) -> anyhow::Result<u64> {
    let Some(pruning) = pruning else {
        return Ok(0);
    };
    if pruning.is_finished() {
        let took = pruning.await??;
        println!("  retention pass finished in {took:.1}s, within the phases");
    } else {
        pruning.abort();
        println!("  retention pass still running at the end of the phases: stopped");
    }
    let pruned = read::count_pruned(&state.db).await?;
    println!("  pruned during the phases: {pruned} generations");
    Ok(pruned)
}

/// Creates `count` workflows waiting for a callback an hour away, each with its hold.
pub(super) async fn park(
    state: &AppState,
    account_id: Uuid,
    count: usize,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    progress.phase("parking workflows", Some(count as u64));
    let now = SystemClock.now();
    let inputs = seed::placeholder_inputs();
    let one = Credits::parse(1)?;
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let ids: Vec<(Uuid, Uuid)> = chunk
            .iter()
            .map(|_| (Uuid::now_v7(), Uuid::now_v7()))
            .collect();
        let holds = ids.iter().map(|(id, hold_id)| {
            state.ledger.execute(Command::Hold {
                hold_id: *hold_id,
                account_id,
                credits: one,
                generation_id: Some(*id),
            })
        });
        for outcome in join_all(holds).await {
            ensure!(
                matches!(outcome?, Outcome::Hold(HoldOutcome::Held(_))),
                "parking hold refused"
            );
        }
        let rows = ids.iter().map(|(id, hold_id)| workflow::Model {
            id: *id,
            account_id,
            state: WorkflowState::AwaitingCallback,
            version: 2,
            provider: "simulator".into(),
            cost: 1,
            charge: None,
            hold_id: *hold_id,
            inputs: inputs.clone(),
            callback_token: accounts::random_token("cb_"),
            provider_task_id: Some(id.to_string()),
            result_source: None,
            result_key: None,
            attempt: 0,
            next_attempt_at: Some(now + chrono::Duration::hours(1)),
            deadline_at: now + chrono::Duration::hours(2),
            error_code: None,
            error_message: None,
            created_at: now,
            updated_at: now,
            retry_of: None,
            shard: atelier_actors::cluster::shard_of(*id),
            pruned_at: None,
            result_expired_at: None,
        });
        seed::insert_parked(&state.db, rows.collect()).await?;
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(())
}

/// This process's resident set size, from /proc (Linux); 0 elsewhere.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
