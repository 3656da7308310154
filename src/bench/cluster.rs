//! `atelier bench cluster`: real processes of this binary on a scratch PostgreSQL database —
//! one API-only process (the public URL: clients, the simulator's callbacks and signed URLs
//! go there, as to a load balancer) and N engine processes — against the API process's
//! zero-delay simulator:
//!
//! 1. throughput with each engine count asked for: `generations` submitted `concurrency` at a
//!    time, generations per second until the last settled;
//! 2. takeover, with the most engines: under a steady load, one engine is SIGKILLed `kills`
//!    times (restarted after each); for every shard it held, the time from the kill to the
//!    first step another process made on it (its first event under the new epoch), p50/p99.
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use crate::config::Settings;

const ADMIN: &str = "bench-cluster-admin-token-0123456789";
const SECRET: &str = "bench-cluster-signing-secret-0123456789abcdef";
const SIMULATOR_KEY: &str = "bench-cluster-simulator-key";

pub struct Plan {
    pub engines: Vec<usize>,
    pub generations: usize,
    pub concurrency: usize,
    pub kills: usize,
}

/// A process of this binary, killed when dropped.
struct Process(Child);

impl Process {
    /// SIGTERM, and waits for the exit: a drained process hands its leases back.
    fn terminate(mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Deployment {
    url: String,
    data_dir: std::path::PathBuf,
    public: String,
    http: reqwest::Client,
}

pub async fn run(settings: &Settings, plan: Plan) -> anyhow::Result<()> {
    ensure!(
        settings.database_url.starts_with("postgres"),
        "bench cluster needs PostgreSQL (DATABASE_URL=postgres://…): SQLite runs one engine"
    );
    ensure!(
        plan.generations > 0 && plan.concurrency > 0 && plan.engines.iter().all(|n| *n > 0),
        "--generations, --concurrency and each of --engines must be positive"
    );
    super::on_scratch(settings, "cluster", |url, data_dir| async move {
        bench(url, data_dir, &plan).await
    })
    .await
}

async fn bench(url: String, data_dir: std::path::PathBuf, plan: &Plan) -> anyhow::Result<()> {
    let api_port = free_port()?;
    let deployment = Deployment {
        url,
        data_dir,
        public: format!("http://127.0.0.1:{api_port}"),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
    };
    let _api = deployment.start(api_port, false).await?;
    let db = atelier_actors::db::connect(&deployment.url).await?;
    println!(
        "bench cluster: postgres, zero-delay simulator behind an API-only process; {} generations {} at a time with {:?} engine processes; {} kills",
        plan.generations, plan.concurrency, plan.engines, plan.kills
    );
    let mut throughputs = serde_json::Map::new();
    for &engines in &plan.engines {
        let mut running = Vec::new();
        for _ in 0..engines {
            running.push(deployment.start(free_port()?, true).await?);
        }
        wait_balanced(&db, engines).await?;
        let rate = throughput(&deployment, &db, plan).await?;
        println!("  {engines} engine(s): {rate:.0} generations/s");
        throughputs.insert(format!("engines_{engines}"), json!(rate.round()));
        // Stopped gracefully, they hand their leases back for the next round.
        running.into_iter().for_each(Process::terminate);
    }
    let most = plan.engines.iter().copied().max().unwrap_or(1);
    let takeover = if most > 1 && plan.kills > 0 {
        takeovers(&deployment, &db, most, plan.kills).await?
    } else {
        None
    };
    let mut summary = json!({"bench": "cluster", "database": "postgres", "generations": plan.generations,
        "concurrency": plan.concurrency, "generations_per_sec": throughputs});
    if let Some((p50, p99, shards)) = takeover {
        println!(
            "  takeover after kill -9 ({shards} shards adopted): p50 {p50:.0} ms, p99 {p99:.0} ms"
        );
        summary["takeover_p50_ms"] = json!(p50.round());
        summary["takeover_p99_ms"] = json!(p99.round());
        summary["takeover_shards"] = json!(shards);
    }
    println!("{summary}");
    Ok(())
}

impl Deployment {
    /// `atelier serve` on `port`, ready; an engine when `engine`.
    async fn start(&self, port: u16, engine: bool) -> anyhow::Result<Process> {
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("DATABASE_URL", &self.url)
            .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
            .env("ATELIER_PUBLIC_URL", &self.public)
            .env("ATELIER_DATA_DIR", &self.data_dir)
            .env("ATELIER_ADMIN_TOKEN", ADMIN)
            .env("ATELIER_SIGNING_SECRET", SECRET)
            .env("ATELIER_SIMULATOR__API_KEY", SIMULATOR_KEY)
            .env("ATELIER_SIMULATOR__DELAY_MS", "0")
            .env("ATELIER_WORKFLOW__RUN_ENGINE", engine.to_string())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()?;
        let mut process = Process(child);
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let started = Instant::now();
        loop {
            if let Ok(answer) = self.http.get(&ready).send().await
                && answer.status().is_success()
            {
                return Ok(process);
            }
            if process.0.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(30) {
                bail!("atelier serve on port {port} did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new account with plenty of credits: its API key.
    async fn account(&self) -> anyhow::Result<String> {
        let account: serde_json::Value = self
            .http
            .post(format!("{}/v1/accounts", self.public))
            .bearer_auth(ADMIN)
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        let id = account["id"].as_str().unwrap_or_default();
        let grant = json!({"credits": 1_000_000_000_i64, "reference": format!("bench-{id}")});
        self.http
            .post(format!("{}/v1/accounts/{id}/grants", self.public))
            .bearer_auth(ADMIN)
            .json(&grant)
            .send()
            .await?
            .error_for_status()?;
        Ok(account["api_key"].as_str().unwrap_or_default().to_owned())
    }

    async fn submit(&self, key: &str, body: &serde_json::Value) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/v1/generations", self.public))
            .bearer_auth(key)
            .json(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// Generations per second, from the first submission until every one settled.
async fn throughput(
    deployment: &Deployment,
    db: &DatabaseConnection,
    plan: &Plan,
) -> anyhow::Result<f64> {
    let key = deployment.account().await?;
    let body = super::e2e::request_body();
    let before = scalar(db, "SELECT count(*) FROM workflows WHERE state = 'settled'").await?;
    let started = Instant::now();
    let mut left = plan.generations;
    while left > 0 {
        let wave = left.min(plan.concurrency);
        let submitted = join_all((0..wave).map(|_| deployment.submit(&key, &body))).await;
        submitted.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        left -= wave;
    }
    let want = before + plan.generations as i64;
    loop {
        if scalar(
            db,
            "SELECT count(*) FROM workflows WHERE state = 'released'",
        )
        .await?
            > 0
        {
            bail!("generations were released during the benchmark");
        }
        if scalar(db, "SELECT count(*) FROM workflows WHERE state = 'settled'").await? >= want {
            return Ok(plan.generations as f64 / started.elapsed().as_secs_f64());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not settled within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills an engine `kills` times under a steady load (restarting it after each): the time from
/// each kill to the first step on each shard it held, p50 and p99, and how many shards.
async fn takeovers(
    deployment: &Deployment,
    db: &DatabaseConnection,
    engines: usize,
    kills: usize,
) -> anyhow::Result<Option<(f64, f64, usize)>> {
    let mut running = Vec::new();
    for _ in 0..engines {
        running.push(deployment.start(free_port()?, true).await?);
    }
    wait_balanced(db, engines).await?;
    let key = deployment.account().await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(steady_load(deployment.public.clone(), key, stop.clone()));
    let mut delays = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = running.remove(0);
        let owner = owner_of(db, victim.0.id()).await?;
        let held = leases_of(db, owner).await?;
        let killed_at = Utc::now();
        drop(victim);
        let ttl = Settings::default().cluster.lease_ttl_ms;
        tokio::time::sleep(Duration::from_millis(ttl + 4_000)).await;
        delays.extend(first_steps(db, &held, killed_at).await?);
        running.push(deployment.start(free_port()?, true).await?);
        wait_balanced(db, engines).await?;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.await??;
    if delays.is_empty() {
        return Ok(None);
    }
    delays.sort_by(f64::total_cmp);
    let at = |share: f64| delays[((delays.len() - 1) as f64 * share).round() as usize];
    Ok(Some((at(0.5), at(0.99), delays.len())))
}

/// About 100 generations a second until `stop`.
async fn steady_load(
    base: String,
    key: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let body = super::e2e::request_body();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        ticks.tick().await;
        let (http, base, key, body) = (http.clone(), base.clone(), key.clone(), body.clone());
        tokio::spawn(async move {
            let _ = http
                .post(format!("{base}/v1/generations"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await;
        });
    }
    Ok(())
}

/// Waits until `engines` members are live and the live leases are spread among them, none
/// holding more than its share.
async fn wait_balanced(db: &DatabaseConnection, engines: usize) -> anyhow::Result<()> {
    let share = 256_usize.div_ceil(engines) as i64;
    let started = Instant::now();
    loop {
        let live = scalar(
            db,
            "SELECT count(*) FROM engine_members WHERE expires_at > now()",
        )
        .await?;
        let most = scalar(
            db,
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM shard_leases \
             WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner) t",
        )
        .await?;
        let held = scalar(
            db,
            "SELECT count(*) FROM shard_leases WHERE owner IS NOT NULL AND expires_at > now()",
        )
        .await?;
        if live == engines as i64 && held == 256 && most <= share {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the leases did not settle among {engines} engines"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn owner_of(db: &DatabaseConnection, pid: u32) -> anyhow::Result<uuid::Uuid> {
    let sql = format!("SELECT id FROM engine_members WHERE pid = {pid} AND expires_at > now()");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(row
        .ok_or_else(|| anyhow::anyhow!("no member row for pid {pid}"))?
        .try_get_by_index(0)?)
}

/// The shards `owner` holds and their epochs.
async fn leases_of(
    db: &DatabaseConnection,
    owner: uuid::Uuid,
) -> anyhow::Result<HashMap<i16, i64>> {
    let rows = atelier_actors::cluster::leases::all(db).await?;
    Ok(rows
        .into_iter()
        .filter(|lease| lease.owner == Some(owner))
        .map(|lease| (lease.shard, lease.epoch))
        .collect())
}

/// For each shard in `held`, milliseconds from `killed_at` to its first event under a later
/// epoch (shards with no step since have none).
async fn first_steps(
    db: &DatabaseConnection,
    held: &HashMap<i16, i64>,
    killed_at: DateTime<Utc>,
) -> anyhow::Result<Vec<f64>> {
    let sql = "SELECT w.shard, e.epoch, min(e.at) FROM workflow_events e JOIN workflows w ON w.id = e.workflow_id \
               WHERE e.epoch IS NOT NULL AND e.at >= $1 GROUP BY w.shard, e.epoch";
    let statement =
        Statement::from_sql_and_values(db.get_database_backend(), sql, [killed_at.into()]);
    let mut first: HashMap<i16, DateTime<Utc>> = HashMap::new();
    for row in db.query_all_raw(statement).await? {
        let (shard, epoch, at): (i16, i64, DateTime<Utc>) = (
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
        );
        if held.get(&shard).is_some_and(|old| epoch > *old) {
            let entry = first.entry(shard).or_insert(at);
            *entry = (*entry).min(at);
        }
    }
    Ok(first
        .values()
        .map(|at| (*at - killed_at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect())
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(row
        .ok_or_else(|| anyhow::anyhow!("no row"))?
        .try_get_by_index(0)?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
