//! Chaos with real processes on one PostgreSQL database: three `atelier serve` engines and one
//! API-only process (the load balancer's address: clients, callbacks and signed URLs go
//! there), a Replicate-compatible provider in the test that counts the predictions made for
//! each generation, and a steady load of generations. Meanwhile, at random moments: an engine
//! is SIGKILLed and restarted a few seconds later, one is SIGSTOPped for longer than the lease
//! TTL and then SIGCONTed (the zombie), and one process's database connections are terminated.
//! Afterwards every generation is settled once, `atelier verify` passes (epochs included),
//! balances are grants minus charges, the provider saw one prediction per generation (plus at
//! most one per crash between its accept and our record), and no generation waited longer than
//! the TTL and a few seconds, and an operator's status stream on the API-only process showed
//! every transition once, in order. Figures are printed. A second test runs the same load
//! through a rolling restart (SIGTERM, exit 0, start again, one engine after the other).
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::Value;

use crate::common::{
    self, ADMIN_TOKEN, Backend, KillOnDrop, atelier_command, free_port, generation_body,
    remote_account, remote_get, wait_for, wait_ready,
};
use crate::emulators::{Emulator, Mode, REPLICATE_TOKEN};
use crate::streams::Reader;

const GENERATIONS: usize = 240;
const ACCOUNTS: usize = 3;
const CREDITS: i64 = 200;
const ENGINES: usize = 3;
/// The lease TTL of every process: a kill costs about this before another takes the shards.
const TTL_MS: u64 = 3_000;
/// Generations are submitted over about this long, the chaos running meanwhile.
const LOAD_FOR: Duration = Duration::from_secs(12);

/// One engine process, restartable on its port.
struct Engine {
    name: String,
    port: u16,
    child: Option<KillOnDrop>,
}

struct Cluster<'a> {
    url: &'a str,
    data_dir: &'a Path,
    public: String,
    emulator: &'a Emulator,
}

impl Cluster<'_> {
    /// `atelier serve` as `name` (its connections say so in `pg_stat_activity`).
    fn start(&self, name: &str, port: u16, engine: bool) -> KillOnDrop {
        let url = format!("{}?application_name={name}", self.url);
        let child = atelier_command(&url)
            .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
            .env("ATELIER_PUBLIC_URL", &self.public)
            .env("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("ATELIER_DATA_DIR", self.data_dir)
            .env(
                "ATELIER_SIGNING_SECRET",
                "chaos-signing-secret-0123456789abcdef",
            )
            .env("ATELIER_WORKFLOW__RUN_ENGINE", engine.to_string())
            .env("ATELIER_WORKFLOW__CALLBACK_DEADLINE_SECS", "2")
            .env("ATELIER_CLUSTER__LEASE_TTL_MS", TTL_MS.to_string())
            .env("ATELIER_CLUSTER__RENEW_MS", "300")
            .env("ATELIER_DEFAULT_PROVIDER", "replicate")
            .env("ATELIER_PROVIDERS__REPLICATE__COST", "1")
            .env("ATELIER_PROVIDERS__REPLICATE__BASE_URL", &self.emulator.url)
            .env("ATELIER_PROVIDERS__REPLICATE__API_TOKEN", REPLICATE_TOKEN)
            .env("ATELIER_PROVIDERS__REPLICATE__MODEL", "cuuupid/idm-vton")
            .env(
                "ATELIER_PROVIDERS__REPLICATE__WEBHOOK_SECRETS",
                format!("[\"{}\"]", self.emulator.secret_text),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("start atelier");
        KillOnDrop(child)
    }
}

#[actix_web::test]
async fn engines_killed_frozen_and_cut_off_lose_nothing() {
    common::on_database(Backend::Postgres, "chaos", |url| async move {
        // A generation waits at most for a lease to lapse (the TTL), a frozen owner's stop on
        // top of it, the callback deadline's poll and its steps: well under 15 s.
        under_load(&url, Disturbance::Chaos, TTL_MS + 12_000).await;
    })
    .await;
}

/// A rolling restart: each engine in turn gets SIGTERM, exits 0 having finished its steps and
/// handed its shards back, and starts again, while the load runs. Nothing is lost, no
/// prediction is made twice (no step was cut short), and no generation stalls for more than a
/// few seconds: the shards move at the others' next renewal, not after a TTL.
#[actix_web::test]
async fn a_rolling_restart_under_load_loses_nothing() {
    common::on_database(Backend::Postgres, "rolling", |url| async move {
        under_load(&url, Disturbance::RollingRestart, 5_000).await;
    })
    .await;
}

/// The two tests run one after the other: each holds about 70 connections (four processes'
/// pools), and PostgreSQL's default allows 100.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What happens to the engines while the load runs.
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    Chaos,
    RollingRestart,
}

/// Three engines and an API-only process under the load, disturbed; then every check, with
/// no generation slower than `worst_ms` from its creation to its settle.
async fn under_load(url: &str, disturbance: Disturbance, worst_ms: u64) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let emulator = Emulator::start(Mode::Normal).await;
    let data_dir = std::env::temp_dir().join(format!("atelier-chaos-{}", uuid::Uuid::new_v4()));
    let api_port = free_port();
    let public = format!("http://127.0.0.1:{api_port}");
    let cluster = Cluster {
        url,
        data_dir: &data_dir,
        public: public.clone(),
        emulator: &emulator,
    };
    let client = reqwest::Client::new();
    let mut api = cluster.start("api", api_port, false);
    wait_ready(&client, &public, &mut api).await;
    let mut engines = start_engines(&cluster, &client).await;
    let mut keys = Vec::new();
    for index in 0..ACCOUNTS {
        let name = format!("chaos-{index}");
        keys.push(remote_account(&client, &public, CREDITS, &name).await.1);
    }

    let watcher = Watcher::start(&client, &public).await;
    let load = tokio::spawn(submit_load(client.clone(), public.clone(), keys.clone()));
    let chaos = match disturbance {
        Disturbance::Chaos => run_chaos(&cluster, &mut engines, url).await,
        Disturbance::RollingRestart => rolling_restart(&cluster, &mut engines, &client).await,
    };
    let ids = load.await.unwrap();
    assert_eq!(ids.len(), GENERATIONS);

    let db = atelier_actors::db::connect(url).await.unwrap();
    wait_all_terminal(&db).await;
    let outcome = Outcome {
        emulator: &emulator,
        chaos,
        worst_ms,
    };
    check_outcome(&db, &client, &public, &keys, outcome).await;
    watcher.check(&db).await;
    let mut verify = atelier_command(url);
    verify.arg("verify").env("ATELIER_DATA_DIR", &data_dir);
    let (ok, report) = common::run_verify(verify);
    assert!(ok, "{report}");
    eprintln!("{disturbance:?}: done in {:?}", started.elapsed());
    drop(engines);
    drop(api);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// While the load runs, a second in: each engine in turn is sent SIGTERM, must exit 0 within
/// the drain's bound, and is started again on its port.
async fn rolling_restart(
    cluster: &Cluster<'_>,
    engines: &mut [Engine],
    client: &reqwest::Client,
) -> Chaos {
    tokio::time::sleep(Duration::from_secs(1)).await;
    for engine in engines.iter_mut() {
        let mut child = engine.child.take().expect("running");
        signal(&child.id().to_string(), "-TERM");
        let stopping = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                stopping.elapsed() < Duration::from_secs(45),
                "{} did not stop",
                engine.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM",
            engine.name
        );
        eprintln!(
            "rolling: {} stopped in {:?}",
            engine.name,
            stopping.elapsed()
        );
        let mut restarted = cluster.start(&engine.name.clone(), engine.port, true);
        wait_ready(
            client,
            &format!("http://127.0.0.1:{}", engine.port),
            &mut restarted,
        )
        .await;
        engine.child = Some(restarted);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Chaos::default()
}

/// An operator's status stream on the API-only process, which commits no transition of its
/// own: what it sends comes from the engines' commits, through their notifications.
struct Watcher {
    /// (generation, version, event id) per event, in the order sent.
    seen: Arc<Mutex<Vec<(String, i64, i64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn start(client: &reqwest::Client, base: &str) -> Self {
        let response = client
            .get(format!("{base}/v1/ops/stream"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let mut reader = Reader::new(response);
        let seen: Arc<Mutex<Vec<(String, i64, i64)>>> = Arc::default();
        let into = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = reader.next_event().await {
                let generation = event.data["generation_id"].as_str().unwrap().to_owned();
                let version = event.data["version"].as_i64().unwrap();
                into.lock().unwrap().push((generation, version, event.id));
            }
        });
        Self { seen, task }
    }

    /// It saw every transition of every generation, each once, in id order.
    async fn check(self, db: &DatabaseConnection) {
        let sql = "SELECT workflow_id::text || ' ' || version::text FROM workflow_events";
        let expected: HashSet<String> = strings(db, sql).await.into_iter().collect();
        let seen = self.seen.clone();
        wait_for(
            "the stream showed every transition",
            Duration::from_secs(15),
            || {
                let seen = seen.clone();
                let expected = &expected;
                async move {
                    let got: HashSet<String> = seen
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(id, version, _)| format!("{id} {version}"))
                        .collect();
                    let missing = expected.difference(&got).count();
                    if missing == 0 { Ok(()) } else { Err(missing) }
                }
            },
        )
        .await;
        self.task.abort();
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), expected.len(), "each transition once");
        assert!(
            seen.windows(2).all(|pair| pair[0].2 < pair[1].2),
            "in id order"
        );
        eprintln!(
            "chaos: the API process's stream showed all {} transitions",
            seen.len()
        );
    }
}

/// The engine processes, each ready.
async fn start_engines(cluster: &Cluster<'_>, client: &reqwest::Client) -> Vec<Engine> {
    let mut engines = Vec::new();
    for index in 0..ENGINES {
        let (name, port) = (format!("engine-{index}"), free_port());
        let mut child = cluster.start(&name, port, true);
        wait_ready(client, &format!("http://127.0.0.1:{port}"), &mut child).await;
        engines.push(Engine {
            name,
            port,
            child: Some(child),
        });
    }
    engines
}

async fn wait_all_terminal(db: &DatabaseConnection) {
    // What a stuck generation is waiting for, and who holds its shard, should one stay live.
    let live = "SELECT w.id::text || ' ' || w.state || ' attempt ' || w.attempt \
                || ' next ' || coalesce(w.next_attempt_at::text, '-') \
                || ' shard ' || w.shard || ' owner ' || coalesce(l.owner::text, '-') \
                || ' expires ' || coalesce(l.expires_at::text, '-') || ' now ' || now()::text \
                FROM workflows w JOIN shard_leases l ON l.shard = w.shard \
                WHERE w.state NOT IN ('settled','released')";
    wait_for(
        "every generation terminal",
        Duration::from_secs(90),
        || async move {
            let rows = strings(db, live).await;
            if rows.is_empty() { Ok(()) } else { Err(rows) }
        },
    )
    .await;
}

/// Submits `GENERATIONS` generations at a steady rate over `LOAD_FOR`, round the accounts;
/// answers their ids.
async fn submit_load(client: reqwest::Client, base: String, keys: Vec<String>) -> Vec<String> {
    let pause = LOAD_FOR / GENERATIONS as u32;
    let mut ids = Vec::with_capacity(GENERATIONS);
    for index in 0..GENERATIONS {
        let response = client
            .post(format!("{base}/v1/generations"))
            .bearer_auth(&keys[index % keys.len()])
            .json(&generation_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(pause).await;
    }
    ids
}

/// What the chaos did, for the bounds on what it may cost.
#[derive(Debug, Default)]
struct Chaos {
    kills: usize,
    stops: usize,
    cut_offs: usize,
}

impl Chaos {
    fn events(&self) -> usize {
        self.kills + self.stops + self.cut_offs
    }
}

/// While the load runs: a kill -9 and a restart 2 s later, a SIGSTOP for TTL + 1 s then
/// SIGCONT, a termination of one process's connections — each on a random engine, at random
/// moments, twice over.
async fn run_chaos(cluster: &Cluster<'_>, engines: &mut [Engine], url: &str) -> Chaos {
    let mut rng = common::seeded_rng("chaos");
    let db = atelier_actors::db::connect(url).await.unwrap();
    let mut chaos = Chaos::default();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_200))).await;
        let victim = rng.random_range(0..engines.len());
        let engine = &mut engines[victim];
        let mut child = engine.child.take().expect("running");
        child.kill().unwrap();
        let _ = child.wait();
        eprintln!("chaos: kill -9 {}", engine.name);
        chaos.kills += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        engine.child = Some(cluster.start(&engine.name.clone(), engine.port, true));

        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_200))).await;
        let engine = &engines[rng.random_range(0..engines.len())];
        let pid = engine.child.as_ref().expect("running").id().to_string();
        signal(&pid, "-STOP");
        eprintln!("chaos: SIGSTOP {}", engine.name);
        tokio::time::sleep(Duration::from_millis(TTL_MS + 1_000)).await;
        signal(&pid, "-CONT");
        chaos.stops += 1;

        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_200))).await;
        let engine = &engines[rng.random_range(0..engines.len())];
        let sql = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{}'",
            engine.name
        );
        let terminated = scalar(&db, &sql).await;
        eprintln!(
            "chaos: terminated {terminated} connections of {}",
            engine.name
        );
        chaos.cut_offs += 1;
    }
    chaos
}

fn signal(pid: &str, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} {pid}");
}

/// What the checks after the load compare with.
struct Outcome<'a> {
    emulator: &'a Emulator,
    chaos: Chaos,
    /// The slowest a generation may be, from its creation to its settle.
    worst_ms: u64,
}

/// Everything settled once, balances are grants minus charges, each generation made one
/// prediction but for at most one per chaos event, and none took longer than allowed.
async fn check_outcome(
    db: &DatabaseConnection,
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    outcome: Outcome<'_>,
) {
    let Outcome {
        emulator,
        chaos,
        worst_ms,
    } = outcome;
    let settled = scalar(db, "SELECT count(*) FROM workflows WHERE state = 'settled'").await;
    let released: Vec<String> = strings(db, "SELECT id::text || ' ' || coalesce(error_code, '') FROM workflows WHERE state = 'released'").await;
    assert_eq!(settled as usize, GENERATIONS, "released: {released:?}");
    let twice = scalar(
        db,
        "SELECT count(*) FROM (SELECT workflow_id FROM workflow_events \
         WHERE to_state IN ('settled','released') GROUP BY workflow_id HAVING count(*) > 1) t",
    )
    .await;
    assert_eq!(twice, 0, "a generation ended twice");
    let mut charged = 0;
    for key in keys {
        let balance = remote_get(client, base, "/v1/balance", key).await;
        assert_eq!(balance["held"], 0, "{balance}");
        charged += CREDITS - balance["available"].as_i64().unwrap();
    }
    assert_eq!(
        charged, GENERATIONS as i64,
        "each settled generation charged its 1 credit once"
    );

    let mut per_generation: HashMap<String, usize> = HashMap::new();
    for webhook in emulator.task_webhooks() {
        let id = webhook
            .split("/webhooks/replicate/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        *per_generation.entry(id.to_owned()).or_default() += 1;
    }
    let extra: usize = per_generation.values().map(|count| count - 1).sum();
    eprintln!(
        "chaos: {chaos:?}; {} predictions for {GENERATIONS} generations ({extra} extra)",
        per_generation.values().sum::<usize>()
    );
    assert_eq!(
        per_generation.len(),
        GENERATIONS,
        "every generation made a prediction"
    );
    assert!(
        extra <= chaos.events(),
        "{extra} extra predictions for {} chaos events",
        chaos.events()
    );

    let worst = scalar(
        db,
        "SELECT coalesce(max(extract(epoch FROM e.at - w.created_at) * 1000), 0)::bigint \
         FROM workflows w JOIN workflow_events e ON e.workflow_id = w.id \
         WHERE e.to_state = 'settled'",
    )
    .await;
    eprintln!("chaos: the slowest generation settled {worst} ms after its creation");
    assert!(worst < worst_ms as i64, "{worst} ms");
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}
