//! Several engines on one PostgreSQL database: leases taken, renewed, lapsed and taken over
//! with a new epoch; a stale owner's write refused inside its transaction; shards balanced as
//! processes come and go; a frozen engine fenced out while another finishes its work; and
//! SQLite's one engine per database file.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atelier_actors::batcher::BatchError;
use atelier_actors::cluster::keeper::{Keeper, KeeperHandle};
use atelier_actors::cluster::{ClusterConfig, Fence, Ownership, SHARDS, leases, shard_of};
use atelier_actors::workflow::{Event, FailureCode, TransitionOutcome, read};
use atelier_entities::workflow::WorkflowState;
use atelier_entities::{hold, workflow_event};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::common::{
    self, Backend, KillOnDrop, TestApp, atelier_command, free_port, wait_for, wait_ready,
};

database_tests!(the_shard_migration_fills_in_rows_made_without_it);

/// Rows that existed before the shard migration get their shard from their id (undone and
/// redone here), and on PostgreSQL a row a process of the previous release inserts without
/// the column (a rolling upgrade) gets it from the trigger (`verify`'s invariant 10 reports a
/// row in the wrong shard).
async fn the_shard_migration_fills_in_rows_made_without_it(url: String) {
    use atelier_migrations::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(5).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.create_generation(&key).await["id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }
    let db = &app.state.db;
    let migrations = Migrator::migrations();
    let at = migrations
        .iter()
        .position(|migration| migration.name() == "m20261207_000010_shard_leases")
        .expect("the shard migration");
    Migrator::down(db, Some((migrations.len() - at) as u32))
        .await
        .unwrap();
    Migrator::up(db, None).await.unwrap();
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // One transaction: one connection, which the temporary table belongs to.
        let txn = db.begin().await.unwrap();
        let id = ids[0];
        for statement in [
            format!("CREATE TEMP TABLE old_row AS SELECT * FROM workflows WHERE id = '{id}'"),
            format!("DELETE FROM workflow_events WHERE workflow_id = '{id}'"),
            format!("DELETE FROM workflows WHERE id = '{id}'"),
            "UPDATE old_row SET shard = (shard + 1) % 256".into(),
            "INSERT INTO workflows SELECT * FROM old_row".into(),
        ] {
            txn.execute_unprepared(&statement).await.unwrap();
        }
        txn.commit().await.unwrap();
    }
    for id in ids {
        let row = read::find(db, id).await.unwrap().unwrap();
        assert_eq!(row.shard, shard_of(id), "{id}");
    }
}

/// Leases on the database's clock: all taken by one owner, none left for another; renewed,
/// they stay; lapsed, another takes them with the epoch bumped, and the first one's renewal
/// no longer finds them; handed back, they go to the next taker at once.
#[actix_web::test]
async fn leases_lapse_and_are_taken_over_with_a_new_epoch() {
    common::on_database(Backend::Postgres, "cluster_leases", |url| async move {
        let app = TestApp::builder(&url).spawn().await;
        let db = &app.state.db;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let short = Duration::from_millis(400);
        let taken = leases::take(db, a, short, SHARDS).await.unwrap();
        assert_eq!(taken.len(), SHARDS);
        assert!(taken.iter().all(|lease| lease.epoch == 1));
        assert!(leases::take(db, b, short, SHARDS).await.unwrap().is_empty());
        assert_eq!(leases::renew(db, a, short).await.unwrap().len(), SHARDS);

        tokio::time::sleep(Duration::from_millis(600)).await;
        let stolen = leases::take(db, b, Duration::from_secs(60), 10)
            .await
            .unwrap();
        assert_eq!(stolen.len(), 10, "lapsed leases are free to take");
        assert!(stolen.iter().all(|lease| lease.epoch == 2), "{stolen:?}");
        let kept = leases::renew(db, a, Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            kept.len(),
            SHARDS - 10,
            "a renewal finds only what is still its own"
        );
        assert!(
            kept.iter()
                .all(|lease| !stolen.iter().any(|s| s.shard == lease.shard))
        );

        let given = kept[0].shard;
        assert_eq!(leases::hand_back(db, a, &[given]).await.unwrap(), 1);
        let next = leases::take(db, b, Duration::from_secs(60), SHARDS)
            .await
            .unwrap();
        assert_eq!(next.len(), 1, "only the handed-back lease is free");
        assert_eq!((next[0].shard, next[0].epoch), (given, 2));
        let rows = leases::all(db).await.unwrap();
        assert_eq!(rows.len(), SHARDS);
        assert_eq!(rows.iter().filter(|row| row.owner == Some(b)).count(), 11);
    })
    .await;
}

/// Owner A holds the shard, lets its lease lapse (frozen), and B takes it: A's release of the
/// generation is refused inside its transaction — the row, its events and the hold stay as
/// they were — while B's write applies and records B's epoch.
#[actix_web::test]
async fn a_stale_owners_write_is_refused_inside_its_transaction() {
    common::on_database(Backend::Postgres, "cluster_fence", |url| async move {
        let app = TestApp::builder(&url).spawn().await;
        let db = &app.state.db;
        let (_, key) = app.funded_account(5).await;
        let id: Uuid = app.create_generation(&key).await["id"].as_str().unwrap().parse().unwrap();
        let shard = shard_of(id);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let short = Duration::from_millis(300);
        let epoch_a = epoch_of(leases::take(db, a, short, SHARDS).await.unwrap(), shard);
        let as_a = app.state.workflows.fenced(Some(Fence { shard, owner: a, epoch: epoch_a }));
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        assert!(as_a.reschedule(id, 0, 1, later).await.unwrap(), "A holds it: applied");

        tokio::time::sleep(Duration::from_millis(500)).await;
        let epoch_b = epoch_of(leases::take(db, b, Duration::from_secs(60), SHARDS).await.unwrap(), shard);
        assert_eq!(epoch_b, epoch_a + 1);
        let before = read::find(db, id).await.unwrap().unwrap();
        let refused = as_a.transition(id, Some(before.version), failed(), None).await;
        assert!(matches!(refused, Err(BatchError::Fenced)), "{refused:?}");
        let after = read::find(db, id).await.unwrap().unwrap();
        assert_eq!(after, before, "nothing of the refused write was written");
        assert_eq!(hold_state(db, after.hold_id).await, hold::HoldState::Open);
        assert_eq!(app.balance(&key).await["held"], 1);

        let as_b = app.state.workflows.fenced(Some(Fence { shard, owner: b, epoch: epoch_b }));
        let applied = as_b.transition(id, Some(before.version), failed(), None).await.unwrap();
        assert!(matches!(applied, TransitionOutcome::Applied(ref row) if row.state == WorkflowState::Released));
        assert_eq!(hold_state(db, after.hold_id).await, hold::HoldState::Released);
        let events = events_of(db, id).await;
        assert_eq!(events.last().unwrap().epoch, Some(epoch_b));
        assert_eq!(events.first().unwrap().epoch, None, "a create is not fenced");
        let (ok, report) = common::verify_app(&app);
        assert!(ok, "{report}");
    })
    .await;
}

/// One keeper takes every shard; two more join and each ends with at most its share
/// (ceil(256 / 3) = 86), every shard held once; one leaves and hands its shards back, and the
/// other two split them, 128 each.
#[actix_web::test]
async fn shards_balance_across_one_three_then_two_processes() {
    common::on_database(Backend::Postgres, "cluster_balance", |url| async move {
        let app = TestApp::builder(&url).spawn().await;
        let db = app.state.db.clone();
        let config = ClusterConfig {
            lease_ttl_ms: 1_500,
            renew_ms: 100,
        };
        let first = keeper(&db, &config);
        wait_held(&[&first.0], SHARDS).await;
        let mut second = keeper(&db, &config);
        let third = keeper(&db, &config);
        wait_held(&[&first.0, &second.0, &third.0], 86).await;
        assert_owners(&db, &[&first.0, &second.0, &third.0]).await;

        let started = Instant::now();
        second.1.stop().await;
        wait_held(&[&first.0, &third.0], 128).await;
        let took = started.elapsed();
        assert_owners(&db, &[&first.0, &third.0]).await;
        // Handed back, not lapsed: taken at the others' next ticks, well before the TTL.
        assert!(took < config.ttl(), "took {took:?}");
    })
    .await;
}

/// Engine A is frozen mid-step (its thread blocked, as SIGSTOP would: no renewal either) with
/// a generation it had started; its leases lapse and engine B, on the same database, takes
/// the shards and settles the generation. When A wakes (its keeper still frozen), its step
/// runs on and its write is refused in its transaction: the generation was settled once, with
/// B's epoch, and the books add up.
#[actix_web::test]
async fn a_frozen_engine_is_fenced_out_and_another_finishes_its_work() {
    common::on_database(Backend::Postgres, "cluster_zombie", |url| async move {
        let (freeze, thaw) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let hook = freezing_hook(freeze.clone(), thaw.clone());
        let a = TestApp::builder(&url)
            .engine(|_| {})
            .step_hook(Some(hook))
            .spawn()
            .await;
        // Dropped before A (declared after it): a failing assertion must not leave A's
        // thread blocked, since A's drop drains its engine.
        let _thaw_at_the_end = ThawOnDrop(thaw.clone());
        let a_shards = a.state.shards.as_ref().unwrap().ownership.clone();
        wait_for("A holds every shard", Duration::from_secs(10), || {
            let held = a_shards.held_count();
            async move { if held == SHARDS { Ok(()) } else { Err(held) } }
        })
        .await;
        let (_, key) = a.funded_account(5).await;
        freeze.store(true, Ordering::SeqCst);
        let id = a.create_generation(&key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_for("A frozen in a step", Duration::from_secs(10), || {
            let frozen = !freeze.load(Ordering::SeqCst);
            async move { if frozen { Ok(()) } else { Err("not yet") } }
        })
        .await;

        // The same storage (and URL signing key), as every process of a deployment has.
        let data_dir = a.state.settings.data_dir.clone();
        let b = TestApp::builder(&url)
            .engine(|settings| settings.data_dir = data_dir)
            .spawn()
            .await;
        let settled = b.wait_terminal(&key, &id, Duration::from_secs(30)).await;
        assert_eq!(settled["state"], "settled", "{settled}");
        let fenced_before = fenced_writes(&b).await;
        // A's keeper stays frozen, so that A's step, not a renewal telling A its shards are
        // gone (which would drop the step before it writes), is what meets the new owner.
        a.state.shards.as_ref().unwrap().freeze(true);
        thaw.store(true, Ordering::SeqCst);
        wait_fenced(&b, fenced_before).await;
        settled_once_under_one_epoch(&b, &key, &id).await;
        let (ok, report) = common::verify_app(&b);
        assert!(ok, "{report}");
    })
    .await;
}

/// The generation settled once, charged once, every event but its creation under one epoch
/// (the new owner's): nothing of the frozen owner's late write is there.
async fn settled_once_under_one_epoch(b: &TestApp, key: &str, id: &str) {
    let events = events_of(&b.state.db, id.parse().unwrap()).await;
    let epochs: Vec<Option<i64>> = events.iter().map(|event| event.epoch).collect();
    let unfenced = epochs.iter().filter(|epoch| epoch.is_none()).count();
    assert_eq!(unfenced, 1, "only the create is unfenced: {epochs:?}");
    let last = epochs.last().copied().flatten().expect("the new owner's");
    assert!(
        epochs.iter().skip(1).all(|epoch| *epoch == Some(last)),
        "{epochs:?}"
    );
    let settles = events
        .iter()
        .filter(|event| event.to_state == WorkflowState::Settled);
    assert_eq!(settles.count(), 1);
    let balance = b.balance(key).await;
    let books = (balance["available"].as_i64(), balance["held"].as_i64());
    assert_eq!(books, (Some(4), Some(0)));
}

/// Waits until the process's count of fenced writes passed `before`.
async fn wait_fenced(app: &TestApp, before: u64) {
    wait_for("a write refused", Duration::from_secs(20), || async move {
        let now = fenced_writes(app).await;
        if now > before { Ok(()) } else { Err(now) }
    })
    .await;
}

/// Two real processes share the shards, 128 each; SIGTERM one: it exits 0 and hands its
/// leases back, and the other holds all 256 within a couple of renewals — far sooner than
/// the 10 s TTL a crash would have to wait out — with the epochs of the moved shards bumped.
#[actix_web::test]
async fn sigterm_hands_the_shards_over() {
    common::on_database(Backend::Postgres, "cluster_drain", |url| async move {
        let client = reqwest::Client::new();
        let data_dir = std::env::temp_dir().join(format!("atelier-drain-{}", Uuid::new_v4()));
        let (mut first, first_base) = serve(&url, &data_dir);
        wait_ready(&client, &first_base, &mut first).await;
        let db = atelier_actors::db::connect(&url).await.unwrap();
        wait_owners(&db, &[SHARDS]).await;
        let (mut second, second_base) = serve(&url, &data_dir);
        wait_ready(&client, &second_base, &mut second).await;
        wait_owners(&db, &[128, 128]).await;
        let epochs_before = leases::all(&db).await.unwrap();

        let signalled = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &first.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exited = loop {
            if let Some(status) = first.try_wait().unwrap() {
                break status;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(30),
                "still running after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(exited.success(), "{exited:?}");
        wait_owners(&db, &[SHARDS]).await;
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "the shards moved {took:?} after SIGTERM"
        );
        let after = leases::all(&db).await.unwrap();
        let moved = after
            .iter()
            .filter(|lease| {
                epochs_before
                    .iter()
                    .any(|b| b.shard == lease.shard && b.owner != lease.owner)
            })
            .count();
        assert_eq!(moved, 128);
        assert_eq!(
            atelier_actors::cluster::members::all(&db)
                .await
                .unwrap()
                .len(),
            1
        );
        drop(second);
        let _ = std::fs::remove_dir_all(&data_dir);
    })
    .await;
}

/// `atelier serve` with the engine on `url`, renewing every 200 ms (the TTL as by default).
fn serve(url: &str, data_dir: &std::path::Path) -> (KillOnDrop, String) {
    let port = free_port();
    let child = atelier_command(url)
        .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
        .env("ATELIER_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .env("ATELIER_DATA_DIR", data_dir)
        .env("ATELIER_CLUSTER__RENEW_MS", "200")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start atelier");
    (KillOnDrop(child), format!("http://127.0.0.1:{port}"))
}

/// Waits until the leases that have not lapsed are held by owners with these counts.
async fn wait_owners(db: &DatabaseConnection, counts: &[usize]) {
    let mut want = counts.to_vec();
    want.sort_unstable();
    wait_for("the owners' shares", Duration::from_secs(30), || {
        let want = want.clone();
        async move {
            let now = chrono::Utc::now();
            let mut per_owner: std::collections::HashMap<Uuid, usize> = Default::default();
            for lease in leases::all(db).await.unwrap() {
                if let Some(owner) = lease.owner.filter(|_| lease.expires_at > now) {
                    *per_owner.entry(owner).or_default() += 1;
                }
            }
            let mut held: Vec<usize> = per_owner.into_values().collect();
            held.sort_unstable();
            if held == want { Ok(()) } else { Err(held) }
        }
    })
    .await;
}

/// Callbacks, creates and cancels that land on a process without the shard reach its owner by
/// `NOTIFY`, not at its tick: with the engine's tick at 10 s, a generation created on an
/// API-only process, whose provider calls back there too, settles within a few seconds —
/// about as fast as one whose every request lands on the owner at the default tick (both
/// printed).
#[actix_web::test]
async fn work_landing_on_another_process_wakes_the_owner_at_once() {
    common::on_database(Backend::Postgres, "cluster_notify", |url| async move {
        let api_port = free_port();
        let public = format!("http://127.0.0.1:{api_port}");
        let key = atelier_actors::secret::SecretString::from(
            "notify-simulator-key-0123456789".to_owned(),
        );
        let api = TestApp::builder(&url)
            .configure(|settings| {
                settings.bind = format!("127.0.0.1:{api_port}").parse().unwrap();
                settings.public_url = Some(public.clone());
                settings.simulator.api_key = Some(key.clone());
            })
            .spawn()
            .await;
        let data_dir = api.state.settings.data_dir.clone();
        let slow_tick =
            |settings: &mut atelier::config::Settings| settings.workflow.tick_ms = 10_000;
        let owner = TestApp::builder(&url)
            .engine(|settings| {
                slow_tick(settings);
                settings.public_url = Some(public.clone());
                settings.simulator.api_key = Some(key.clone());
                settings.data_dir = data_dir;
            })
            .spawn()
            .await;
        let shards = owner.state.shards.as_ref().unwrap().ownership.clone();
        wait_for(
            "the engine holds every shard",
            Duration::from_secs(10),
            || {
                let held = shards.held_count();
                async move { if held == SHARDS { Ok(()) } else { Err(held) } }
            },
        )
        .await;
        common::wait_listening(&owner.state.db, "atelier_wake").await;
        let (_, account) = api.funded_account(5).await;
        let elsewhere = settle_time(&api, &account).await;
        eprintln!(
            "created and called back on another process (tick 10 s): settled in {elsewhere:?}"
        );
        assert!(
            elsewhere < Duration::from_secs(4),
            "{elsewhere:?}: waited for a tick"
        );
        drop(owner);
        // The same with every request on the engine's own process, at the default tick (which
        // picks its creation up there).
        let alone = TestApp::builder(&url).engine(|_| {}).spawn().await;
        let (_, alone_key) = alone.funded_account(5).await;
        let here = settle_time(&alone, &alone_key).await;
        eprintln!("created and called back on the owner (tick 200 ms): settled in {here:?}");
    })
    .await;
}

/// How long a generation created through `app` takes to settle.
async fn settle_time(app: &TestApp, key: &str) -> Duration {
    let started = Instant::now();
    let id = app.create_generation(key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.wait_terminal(key, &id, Duration::from_secs(30)).await;
    assert_eq!(done["state"], "settled", "{done}");
    started.elapsed()
}

/// On SQLite one engine runs per database file: a second is refused at start with why, an
/// API-only process beside it is not, and once the first stops another engine may start.
#[actix_web::test]
async fn a_second_engine_on_one_sqlite_file_is_refused() {
    common::on_database(Backend::Sqlite, "cluster_sqlite", |url| async move {
        let first = TestApp::builder(&url).engine(|_| {}).spawn().await;
        let settings = {
            let mut settings = common::settings(&url);
            settings.workflow.run_engine = true;
            settings
        };
        let clock: Arc<dyn atelier_actors::Clock> = Arc::new(atelier_actors::SystemClock);
        let refused =
            atelier::startup::Application::build(&settings, "t".repeat(32), clock.clone())
                .await
                .err()
                .expect("a second engine on the same file");
        assert!(
            refused
                .to_string()
                .contains("another engine process runs on this SQLite database"),
            "{refused}"
        );
        let api_only = TestApp::builder(&url).spawn().await;
        assert_eq!(api_only.get("/readyz", "").await.status(), 200);
        drop(first);
        let again = TestApp::builder(&url).engine(|_| {}).spawn().await;
        assert_eq!(
            again.state.shards.as_ref().unwrap().ownership.held_count(),
            SHARDS
        );
    })
    .await;
}

fn failed() -> Event {
    Event::Failed {
        code: FailureCode::ProviderFailed,
        message: "test".into(),
    }
}

fn epoch_of(held: Vec<leases::Held>, shard: i16) -> i64 {
    held.iter()
        .find(|lease| lease.shard == shard)
        .expect("the shard was taken")
        .epoch
}

async fn hold_state(db: &DatabaseConnection, hold_id: Uuid) -> hold::HoldState {
    hold::Entity::find_by_id(hold_id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .state
}

async fn events_of(db: &DatabaseConnection, id: Uuid) -> Vec<workflow_event::Model> {
    workflow_event::Entity::find()
        .filter(workflow_event::Column::WorkflowId.eq(id))
        .order_by_asc(workflow_event::Column::Id)
        .all(db)
        .await
        .unwrap()
}

/// A keeper of a process of its own (its own owner id) on the test's arbiter.
fn keeper(db: &DatabaseConnection, config: &ClusterConfig) -> (Arc<Ownership>, KeeperHandle) {
    let ownership = Arc::new(Ownership::leased(Uuid::now_v7(), config.validity()));
    let keeper = Keeper::new(
        db.clone(),
        config.clone(),
        ownership.clone(),
        Arc::new(|_: &[i16]| {}),
    );
    let handle = keeper.spawn(&actix::Arbiter::current());
    (ownership, handle)
}

/// Waits until the keepers hold every shard between them, none more than `share`.
async fn wait_held(ownerships: &[&Arc<Ownership>], share: usize) {
    wait_for("the shares", Duration::from_secs(20), || {
        let held: Vec<usize> = ownerships.iter().map(|o| o.held_count()).collect();
        let balanced = held.iter().sum::<usize>() == SHARDS && held.iter().all(|n| *n <= share);
        async move { if balanced { Ok(()) } else { Err(held) } }
    })
    .await;
}

/// The database agrees: every shard is owned by one of these, as many as each believes.
async fn assert_owners(db: &DatabaseConnection, ownerships: &[&Arc<Ownership>]) {
    let rows = leases::all(db).await.unwrap();
    for ownership in ownerships {
        let owned = rows
            .iter()
            .filter(|row| row.owner == Some(ownership.owner()))
            .count();
        assert_eq!(owned, ownership.held_count());
    }
    let total: usize = ownerships.iter().map(|o| o.held_count()).sum();
    assert_eq!(total, SHARDS, "every shard held, none twice");
}

/// Blocks the engine's thread at the start of the first step after `freeze` is set (clearing
/// it), until `thaw` is set.
fn freezing_hook(
    freeze: Arc<AtomicBool>,
    thaw: Arc<AtomicBool>,
) -> atelier_actors::engine::StepHook {
    Arc::new(move |_, _| {
        if freeze.swap(false, Ordering::SeqCst) {
            while !thaw.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
}

struct ThawOnDrop(Arc<AtomicBool>);

impl Drop for ThawOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `atelier_fenced_writes_total` as the process's metrics say (both apps share one recorder).
async fn fenced_writes(app: &TestApp) -> u64 {
    let text = app.get("/metrics", "").await.text().await.unwrap();
    text.lines()
        .find(|line| line.starts_with("atelier_fenced_writes_total"))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
        .unwrap_or(0)
}

/// `GET /v1/ops/cluster` shows the engine processes and how the shards are split between
/// them, as the leases say: two engines, 128 shards each, every shard held.
#[actix_web::test]
async fn operators_see_the_members_and_their_shards() {
    common::on_database(Backend::Postgres, "cluster_view", |url| async move {
        let a = TestApp::builder(&url).engine(|_| {}).spawn().await;
        let b = TestApp::builder(&url).engine(|_| {}).spawn().await;
        let view = wait_for("the shards split in two", Duration::from_secs(20), || {
            let a = &a;
            async move {
                let view: serde_json::Value = a
                    .get("/v1/ops/cluster", common::ADMIN_TOKEN)
                    .await
                    .json()
                    .await
                    .unwrap();
                let split: Vec<i64> = view["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|member| member["shards_held"].as_i64().unwrap())
                    .collect();
                if split == [128, 128] {
                    Ok(view)
                } else {
                    Err(view)
                }
            }
        })
        .await;
        assert_eq!(view["shards"], SHARDS);
        assert_eq!(view["held"], SHARDS);
        assert_eq!(view["lapsed"], 0);
        assert_eq!(view["unowned"], 0);
        let members = view["members"].as_array().unwrap();
        assert!(
            members.iter().all(|member| member["live"] == true),
            "{view}"
        );
        assert!(
            members
                .iter()
                .all(|member| member["pid"] == std::process::id())
        );
        // A client's key is not an operator's.
        let (_, key) = b.funded_account(1).await;
        assert_eq!(b.get("/v1/ops/cluster", &key).await.status(), 403);
        // The dashboard's page shows the same.
        if let Some(browser) = crate::common::browser::Browser::start().await {
            crate::dashboard::sign_in(&browser, &a, common::ADMIN_TOKEN).await;
            browser.goto(&a.url("/ops/cluster")).await;
            let shards = browser.text("#cluster .shards").await;
            assert!(
                shards.contains("256 held") && shards.contains("0 lapsed"),
                "{shards}"
            );
            let held = browser.text("#cluster td[data-field=shards_held]").await;
            assert_eq!(held, "128");
        }
    })
    .await;
}
