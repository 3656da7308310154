//! Retention (`[retention]`, docs/design.md §1): what generations that ended long ago leave
//! behind is pruned in bounded batches, nothing else is; results expire on their own
//! schedule and then answer 410; `verify` holds afterwards and still catches breakage; the
//! service's own pruner runs on its interval; two pruners at once split the work.
//!
//! The pruner is given a clock of its own (a `ManualClock` weeks ahead), so nothing sleeps.
use std::sync::Arc;
use std::time::Duration;

use atelier_actors::retention::{Pruner, RetentionConfig};
use atelier_actors::workflow::{WorkflowState, read, seed};
use atelier_actors::{Clock, Credits, ManualClock, SystemClock};
use atelier_entities::{
    hold, ledger_entry, webhook_delivery, webhook_endpoint, workflow, workflow_event,
};
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;
use uuid::Uuid;

use crate::common::{
    TestApp, assert_verify_passes, atelier_command, error_code, generation_body, run_verify,
    wait_for,
};

database_tests!(
    old_ended_generations_are_pruned_in_bounded_batches_and_nothing_else,
    verify_still_catches_a_broken_prune,
    expired_results_are_deleted_and_answer_410,
    the_service_prunes_on_its_interval,
    concurrent_pruners_split_the_work,
    finished_deliveries_are_pruned_pending_ones_stay,
);

const DAY: chrono::TimeDelta = chrono::TimeDelta::days(1);
const WAIT: Duration = Duration::from_secs(20);

/// An app with the engine and no pruner of its own (the tests run theirs).
async fn engine_app(url: &str) -> TestApp {
    TestApp::builder(url)
        .engine(|settings| settings.retention.days = 0)
        .spawn()
        .await
}

/// A pruner on the app's database and storage, on a clock at `at`.
fn pruner(app: &TestApp, at: DateTime<Utc>, config: RetentionConfig) -> Pruner {
    Pruner::new(
        app.state.db.clone(),
        app.state.storage.clone(),
        Arc::new(ManualClock::new(at)),
        config,
    )
}

fn keep_rows(days: u32, batch_size: u64) -> RetentionConfig {
    RetentionConfig {
        days,
        results_days: 0,
        batch_size,
        pause_ms: 0,
        ..RetentionConfig::default()
    }
}

/// A settled generation made through the API with `Idempotency-Key: key`.
async fn settled(app: &TestApp, api_key: &str, key: &str) -> Value {
    let response = app
        .post_generation(api_key, &generation_body(), Some(key))
        .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(api_key, id, WAIT).await;
    assert_eq!(done["state"], "settled", "{done}");
    done
}

/// A workflow waiting for a callback two months away, with its hold: live throughout.
async fn live(app: &TestApp, account_id: Uuid) -> Uuid {
    let now = SystemClock.now();
    let (id, hold_id) = (Uuid::now_v7(), Uuid::now_v7());
    let held = app
        .state
        .ledger
        .execute(atelier_actors::ledger::Command::Hold {
            hold_id,
            account_id,
            credits: Credits::parse(1).unwrap(),
            generation_id: Some(id),
        })
        .await
        .unwrap();
    assert!(matches!(held, atelier_actors::ledger::Outcome::Hold(_)));
    let row = workflow::Model {
        id,
        account_id,
        state: WorkflowState::AwaitingCallback,
        version: 2,
        provider: "simulator".into(),
        cost: 1,
        charge: None,
        hold_id,
        inputs: seed::placeholder_inputs(),
        callback_token: atelier::accounts::random_token("cb_"),
        provider_task_id: Some(id.to_string()),
        result_source: None,
        result_key: None,
        attempt: 0,
        next_attempt_at: Some(now + DAY * 60),
        deadline_at: now + DAY * 60,
        error_code: None,
        error_message: None,
        created_at: now - DAY * 90,
        updated_at: now - DAY * 90,
        retry_of: None,
        shard: atelier_actors::cluster::shard_of(id),
        pruned_at: None,
        result_expired_at: None,
    };
    seed::insert_parked(&app.state.db, vec![row]).await.unwrap();
    id
}

/// What the ledger holds, row for row: entries, holds, and the account's balance.
async fn ledger_rows(app: &TestApp, api_key: &str) -> (Vec<ledger_entry::Model>, u64, Value) {
    let db = &app.state.db;
    let entries = ledger_entry::Entity::find().all(db).await.unwrap();
    let holds = hold::Entity::find().count(db).await.unwrap();
    (entries, holds, app.balance(api_key).await)
}

/// (events, callbacks, pruned) of one workflow.
async fn left_of(app: &TestApp, id: Uuid) -> (usize, usize, bool) {
    let db = &app.state.db;
    let events = read::events(db, id).await.unwrap().len();
    let callbacks = read::callbacks_of(db, &[id]).await.unwrap().len();
    let row = read::find(db, id).await.unwrap().expect("the row stays");
    (events, callbacks, row.pruned_at.is_some())
}

fn id_of(generation: &Value) -> Uuid {
    generation["id"].as_str().unwrap().parse().unwrap()
}

/// Four generations ended 31+ days before the pruner's now (one settled through the API, three
/// released), one ended 26 days before, one live since 90 days: a pass in batches of 3 prunes
/// the four in two batches, deleting their events, callbacks and keys, and touches neither
/// the others nor a single ledger row; the API still answers for the pruned one.
async fn old_ended_generations_are_pruned_in_bounded_batches_and_nothing_else(url: String) {
    let app = engine_app(&url).await;
    let (account, api_key) = app.funded_account(100).await;
    let account: Uuid = account.parse().unwrap();
    let db = &app.state.db;
    let old = settled(&app, &api_key, "kept-a-month").await;
    let old_id = id_of(&old);
    let (old_events, old_callbacks, _) = left_of(&app, old_id).await;
    assert!(old_events >= 4 && old_callbacks >= 1);
    let now = SystemClock.now();
    let ledger = &app.state.ledger;
    let mut pruned_ids = seed::insert_ended(db, ledger, account, 3, now - DAY * 10)
        .await
        .unwrap();
    pruned_ids.push(old_id);
    let young = seed::insert_ended(db, ledger, account, 1, now + DAY * 5)
        .await
        .unwrap();
    let live = live(&app, account).await;
    let before = ledger_rows(&app, &api_key).await;

    let pruner = pruner(&app, now + DAY * 31, keep_rows(30, 3));
    let pass = pruner.pass().await.unwrap();
    assert_eq!(pass.pruned.workflows, 4);
    assert_eq!(pass.batches, 2, "3, then 1: a short batch ends the pass");
    assert_eq!(pass.pruned.events, (3 * 2 + old_events) as u64);
    assert_eq!(pass.pruned.callbacks, (3 + old_callbacks) as u64);
    assert_eq!(pass.pruned.keys, 4);
    for id in &pruned_ids {
        assert_eq!(left_of(&app, *id).await, (0, 0, true), "{id}");
    }
    assert_eq!(left_of(&app, young[0]).await, (2, 1, false));
    assert_eq!(left_of(&app, live).await, (3, 0, false));
    let kept_key = read::claimed_key(db, account, &format!("seed-{}", young[0])).await;
    assert!(kept_key.unwrap().is_some());
    assert_eq!(
        read::claimed_key(db, account, "kept-a-month")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        ledger_rows(&app, &api_key).await,
        before,
        "no ledger row moved"
    );

    let again = pruner.pass().await.unwrap();
    assert_eq!((again.pruned.workflows, again.batches), (0, 1));
    assert_pruned_generation_still_answers(&app, &api_key, &old).await;
    assert_verify_passes(&url, &app.state.settings.data_dir);
}

/// A pruned generation reads as before, with an empty timeline; its stream is its state (id 0),
/// then nothing (204 on resuming); its idempotency key is forgotten, so the same key makes a
/// new generation.
async fn assert_pruned_generation_still_answers(app: &TestApp, api_key: &str, old: &Value) {
    let id = old["id"].as_str().unwrap();
    let now = app
        .get_json(&format!("/v1/generations/{id}"), api_key)
        .await;
    assert_eq!(now["state"], "settled");
    assert!(now["result_url"].is_string(), "results are kept by default");
    let events = app
        .get_json(&format!("/v1/generations/{id}/events"), api_key)
        .await;
    assert_eq!(events, serde_json::json!([]));
    let stream = app
        .get(&format!("/v1/generations/{id}/stream"), api_key)
        .await;
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.unwrap();
    assert!(
        text.contains("event: state") && text.contains("id: 0"),
        "{text}"
    );
    assert!(text.contains("\"state\":\"settled\""), "{text}");
    let resumed = app
        .client
        .get(app.url(&format!("/v1/generations/{id}/stream")))
        .bearer_auth(api_key)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 204);
    let replay = app
        .post_generation(api_key, &generation_body(), Some("kept-a-month"))
        .await;
    assert_eq!(replay.status(), 202, "a pruned key is free again");
    let replayed: Value = replay.json().await.unwrap();
    assert_ne!(replayed["id"], old["id"]);
    app.wait_terminal(api_key, replayed["id"].as_str().unwrap(), WAIT)
        .await;
}

/// After a prune, a live workflow marked pruned and an event left on a pruned one are both
/// reported (invariant 8).
async fn verify_still_catches_a_broken_prune(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account, _) = app.funded_account(10).await;
    let account: Uuid = account.parse().unwrap();
    let db = &app.state.db;
    let now = SystemClock.now();
    let ended = seed::insert_ended(db, &app.state.ledger, account, 2, now - DAY * 40)
        .await
        .unwrap();
    let live = live(&app, account).await;
    let pass = pruner(&app, now, keep_rows(30, 10)).pass().await.unwrap();
    assert_eq!(pass.pruned.workflows, 2);
    assert_verify_passes(&url, &app.state.settings.data_dir);

    workflow::Entity::update_many()
        .col_expr(workflow::Column::PrunedAt, Expr::value(now))
        .filter(workflow::Column::Id.eq(live))
        .exec(db)
        .await
        .unwrap();
    workflow_event::Entity::insert(workflow_event::ActiveModel {
        id: NotSet,
        workflow_id: Set(ended[0]),
        from_state: Set(None),
        to_state: Set(WorkflowState::Reserved),
        reason: Set("left behind".into()),
        attempt: Set(0),
        version: Set(0),
        at: Set(now),
        epoch: Set(None),
    })
    .exec_without_returning(db)
    .await
    .unwrap();
    let mut verify = atelier_command(&url);
    verify
        .env("ATELIER_DATA_DIR", &app.state.settings.data_dir)
        .arg("verify");
    let (holds, report) = run_verify(verify);
    assert!(!holds, "{report}");
    assert!(
        report.contains(&format!("workflow {live}"))
            && report.contains("was pruned but is still awaiting_callback"),
        "{report}"
    );
    assert!(
        report.contains(&format!("workflow {}", ended[0]))
            && report.contains("was pruned but 1 of its events remain"),
        "{report}"
    );
}

/// `results_days` after it settled, a result object is deleted and its row marked: the
/// generation shows `result_expired_at` and no `result_url`, the URL handed out before answers
/// 410 `result_expired`, and `verify` holds. Rows are not pruned (`days = 0`).
async fn expired_results_are_deleted_and_answer_410(url: String) {
    let app = engine_app(&url).await;
    let (_, api_key) = app.funded_account(10).await;
    let done = settled(&app, &api_key, "a-result").await;
    let id = id_of(&done);
    let result_url = done["result_url"].as_str().unwrap().to_owned();
    assert_eq!(
        app.client.get(&result_url).send().await.unwrap().status(),
        200
    );
    let key = atelier_actors::workflow::inputs::result_key(id);
    assert!(app.state.storage.exists(&key).await.unwrap());
    let config = RetentionConfig {
        days: 0,
        results_days: 1,
        pause_ms: 0,
        ..RetentionConfig::default()
    };
    let now = SystemClock.now();
    let early = pruner(
        &app,
        now + DAY - chrono::TimeDelta::seconds(60),
        config.clone(),
    );
    assert_eq!(
        early.pass().await.unwrap().results_expired,
        0,
        "not a day yet"
    );
    let pass = pruner(&app, now + DAY * 2, config.clone())
        .pass()
        .await
        .unwrap();
    assert_eq!((pass.results_expired, pass.pruned.workflows), (1, 0));
    assert!(!app.state.storage.exists(&key).await.unwrap());

    let now_view = app
        .get_json(&format!("/v1/generations/{id}"), &api_key)
        .await;
    assert_eq!(now_view["state"], "settled");
    assert!(now_view.get("result_url").is_none(), "{now_view}");
    assert!(now_view["result_expired_at"].is_string(), "{now_view}");
    let gone = app.client.get(&result_url).send().await.unwrap();
    assert_eq!(error_code(gone, 410).await, "result_expired");
    assert!(!left_of(&app, id).await.2, "rows are kept");
    let again = pruner(&app, now + DAY * 3, config).pass().await.unwrap();
    assert_eq!(again.results_expired, 0);
    assert_verify_passes(&url, &app.state.settings.data_dir);
}

/// The service's own pruner (with the engine, every `interval_secs`) prunes what is due on
/// the app's clock: a generation ended 31 days ago at once, one ended a day ago once the
/// clock has moved 30 days on.
async fn the_service_prunes_on_its_interval(url: String) {
    let app = TestApp::builder(&url)
        .manual_clock()
        .engine(|settings| settings.retention.interval_secs = 1)
        .spawn()
        .await;
    let clock = app.clock.clone().unwrap();
    let (account, _) = app.funded_account(10).await;
    let account: Uuid = account.parse().unwrap();
    let (db, ledger) = (&app.state.db, &app.state.ledger);
    let now = clock.now();
    let old = seed::insert_ended(db, ledger, account, 1, now - DAY * 31)
        .await
        .unwrap();
    let recent = seed::insert_ended(db, ledger, account, 1, now - DAY)
        .await
        .unwrap();
    let pruned = |id: Uuid| async move {
        let row = read::find(db, id).await.unwrap().unwrap();
        row.pruned_at.ok_or("not pruned")
    };
    wait_for("the old one pruned", WAIT, || pruned(old[0])).await;
    assert_eq!(left_of(&app, recent[0]).await, (2, 1, false));
    clock.advance(DAY * 30);
    wait_for("the recent one pruned", WAIT, || pruned(recent[0])).await;
}

/// Two pruners on one database at once, in small batches, prune every due workflow once
/// between them, with no error; `atelier prune` then finds what was seeded since.
async fn concurrent_pruners_split_the_work(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account, _) = app.funded_account(1_000).await;
    let account: Uuid = account.parse().unwrap();
    let (db, ledger) = (&app.state.db, &app.state.ledger);
    let now = SystemClock.now();
    seed::insert_ended(db, ledger, account, 120, now - DAY * 40)
        .await
        .unwrap();
    let (first, second) = (
        pruner(&app, now, keep_rows(30, 7)),
        pruner(&app, now, keep_rows(30, 7)),
    );
    let (a, b) = futures::join!(first.pass(), second.pass());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.pruned.workflows + b.pruned.workflows, 120, "{a:?} {b:?}");
    assert_eq!(a.pruned.events + b.pruned.events, 240);
    assert_eq!(first.pass().await.unwrap().pruned.workflows, 0);
    assert_eq!(workflow_event::Entity::find().count(db).await.unwrap(), 0);

    seed::insert_ended(db, ledger, account, 3, now - DAY * 40)
        .await
        .unwrap();
    let output = atelier_command(&url)
        .env("ATELIER_DATA_DIR", &app.state.settings.data_dir)
        .arg("prune")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("pruned 3 generation(s): 6 event(s), 3 callback(s)"),
        "{stdout}"
    );
    assert_verify_passes(&url, &app.state.settings.data_dir);
}

/// A pruned generation's delivered and failed webhook deliveries go with it; a pending one
/// stays for the sender, and `verify` holds.
async fn finished_deliveries_are_pruned_pending_ones_stay(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account, _) = app.funded_account(10).await;
    let account: Uuid = account.parse().unwrap();
    let db = &app.state.db;
    let now = SystemClock.now();
    let ended = seed::insert_ended(db, &app.state.ledger, account, 3, now - DAY * 40)
        .await
        .unwrap();
    let endpoint = Uuid::now_v7();
    webhook_endpoint::Entity::insert(webhook_endpoint::ActiveModel {
        id: Set(endpoint),
        account_id: Set(account),
        url: Set("https://hooks.example.com/atelier".into()),
        events: Set("generation.released".into()),
        secret: Set("whsec_c2VjcmV0c2VjcmV0c2VjcmV0".into()),
        created_at: Set(now),
        deleted_at: Set(None),
    })
    .exec_without_returning(db)
    .await
    .unwrap();
    let states = ["delivered", "failed", "pending"];
    for (workflow_id, state) in ended.iter().zip(states) {
        webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
            id: Set(Uuid::now_v7()),
            endpoint_id: Set(endpoint),
            workflow_id: Set(*workflow_id),
            event_type: Set("generation.released".into()),
            payload: Set("{}".into()),
            state: Set(state.into()),
            attempts: Set(1),
            next_attempt_at: Set((state == "pending").then_some(now + DAY)),
            last_status: Set(None),
            last_error: Set(None),
            created_at: Set(now - DAY * 40),
            delivered_at: Set(None),
        })
        .exec_without_returning(db)
        .await
        .unwrap();
    }
    let pass = pruner(&app, now, keep_rows(30, 10)).pass().await.unwrap();
    assert_eq!((pass.pruned.workflows, pass.pruned.deliveries), (3, 2));
    let left = webhook_delivery::Entity::find().all(db).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].workflow_id, left[0].state.as_str()),
        (ended[2], "pending")
    );
    assert_verify_passes(&url, &app.state.settings.data_dir);
}

/// Out-of-bounds retention settings stop the start, naming the key.
#[test]
fn retention_settings_out_of_bounds_are_refused() {
    for (variable, value, named) in [
        (
            "ATELIER_RETENTION__BATCH_SIZE",
            "1001",
            "retention.batch_size",
        ),
        ("ATELIER_RETENTION__BATCH_SIZE", "0", "retention.batch_size"),
        ("ATELIER_RETENTION__DAYS", "36501", "retention.days"),
        (
            "ATELIER_RETENTION__INTERVAL_SECS",
            "0",
            "retention.interval_secs",
        ),
    ] {
        let output = atelier_command("sqlite::memory:")
            .env(variable, value)
            .arg("prune")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}={value} was taken");
        assert!(stderr.contains(named), "{variable}={value}: {stderr}");
    }
}
