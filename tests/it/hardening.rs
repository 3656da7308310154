//! The holes of issue 9 that live in the engine and its writers, each tried as it was found:
//! a provider that accepts connections and never answers, a crash between a callback's
//! bookkeeping and its effect, a provider's task id too long for its column, a lock held by
//! another session, timelines written under load, and callbacks from a provider a generation
//! left. Against each database.
use crate::common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::TestApp;
use actix_web::{App, HttpResponse, HttpServer, web};
use atelier::config::Settings;
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::workflow::BatchFault;
use atelier_actors::workflow::WriteCommand;
use atelier_actors::workflow::batch;
use atelier_actors::workflow::verify::verify_workflows;
use atelier_actors::workflow::{Event, WorkflowState};
use atelier_entities::{webhook_inbox, workflow};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(30);

database_tests!(
    a_hung_provider_gives_the_credits_back_by_the_submit_deadline,
    a_step_is_cut_at_the_overall_deadline,
    a_hung_provider_is_failed_over,
    a_crash_between_the_callback_and_its_effect_loses_nothing,
    a_task_id_too_long_for_its_column_is_refused_once,
    timelines_form_chains_under_load,
    accepted_and_waiting_in_one_batch_keep_their_own_states,
    callbacks_from_a_provider_left_behind_decide_nothing,
    a_lock_held_elsewhere_fails_writes_cleanly_and_they_recover,
    readyz_reports_a_wedged_writer,
    a_transition_whose_hold_was_resolved_elsewhere_writes_nothing,
);

/// A TCP listener that accepts every connection and never answers: a hung provider.
fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming() {
            held.push(connection);
        }
    });
    format!("http://{address}")
}

/// The engine on a Cog provider that never answers, with settings `configure` adjusts.
async fn hung_app(url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let hole = black_hole();
    TestApp::builder(url)
        .engine(|settings| {
            let mut cog = ProviderConfig::costing(1);
            cog.base_url = Some(hole);
            settings.providers.by_name.insert("cog".into(), cog);
            settings.default_provider = "cog".into();
            configure(settings);
        })
        .spawn()
        .await
}

/// Creates one generation and waits until it is terminal: (id, the generation).
async fn run_one(app: &TestApp, key: &str, within: Duration) -> (String, Value) {
    let id = app.create_generation(key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.wait_terminal(key, &id, within).await;
    (id, done)
}

async fn invariants_hold(app: &TestApp) {
    let violations = verify_workflows(
        &app.state.db,
        &app.state.storage,
        app.state.clock.now(),
        chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    assert_eq!(violations, vec![]);
}

async fn a_hung_provider_gives_the_credits_back_by_the_submit_deadline(url: String) {
    let app = hung_app(&url, |settings| {
        settings.outbound.request_timeout_secs = 1;
        settings.workflow.submit_deadline_secs = 4;
        settings.workflow.overall_deadline_secs = 60;
    })
    .await;
    let (_, key) = app.funded_account(2).await;
    // Two at once: the second must not queue for ever behind the first's hung call.
    let first = app.create_generation(&key).await;
    let second = app.create_generation(&key).await;
    let started = Instant::now();
    for generation in [first, second] {
        let id = generation["id"].as_str().unwrap();
        let done = app.wait_terminal(&key, id, Duration::from_secs(20)).await;
        assert_eq!(done["state"], "released", "{done}");
        assert_eq!(done["error"]["code"], "provider_failed", "{done}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(2), Some(0))
    );
    invariants_hold(&app).await;
}

async fn a_step_is_cut_at_the_overall_deadline(url: String) {
    let app = hung_app(&url, |settings| {
        // Neither the call's own timeout nor the step's ends it first: the deadline does.
        settings.outbound.request_timeout_secs = 600;
        settings.outbound.read_timeout_secs = 600;
        settings.workflow.step_timeout_secs = 600;
        settings.workflow.submit_deadline_secs = 600;
        settings.workflow.overall_deadline_secs = 3;
    })
    .await;
    let (_, key) = app.funded_account(1).await;
    let (_, done) = run_one(&app, &key, Duration::from_secs(15)).await;
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(done["error"]["code"], "timeout", "{done}");
    assert_eq!(app.balance(&key).await["available"], 1);
    invariants_hold(&app).await;
}

async fn a_hung_provider_is_failed_over(url: String) {
    let app = hung_app(&url, |settings| {
        settings.outbound.request_timeout_secs = 1;
        settings.providers.chain = vec!["cog".into(), "simulator".into()];
    })
    .await;
    let (_, key) = app.funded_account(1).await;
    let (id, done) = run_one(&app, &key, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["provider"], "simulator", "{done}");
    let timeline = app.timeline(&key, &id).await;
    assert!(
        timeline
            .iter()
            .any(|(_, _, reason)| reason.contains("failing over to simulator")),
        "{timeline:?}"
    );
}

/// The writer fails the first `times` commands that `pick` chooses as a crash before their
/// commit would: whatever came before them in the batch commits on its own.
fn crash_at(times: usize, pick: fn(&WriteCommand) -> bool) -> BatchFault {
    let left = Arc::new(AtomicUsize::new(times));
    Arc::new(move |command: &WriteCommand| {
        pick(command)
            && left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    })
}

fn is_result_ready(command: &WriteCommand) -> bool {
    matches!(
        command,
        WriteCommand::Transition {
            event: Event::ResultReady { .. },
            ..
        }
    )
}

async fn a_crash_between_the_callback_and_its_effect_loses_nothing(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| {
            // No poll before the deadline: only the stored callback can finish the job.
            settings.workflow.callback_deadline_secs = 600;
            settings.workflow.overall_deadline_secs = 8;
        })
        .fault(crash_at(2, is_result_ready))
        .spawn()
        .await;
    let (_, key) = app.funded_account(1).await;
    let (_, done) = run_one(&app, &key, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(app.balance(&key).await["available"], 0);
    invariants_hold(&app).await;
}

/// A Replicate-compatible provider whose task ids are 300 characters long; counts creates.
async fn long_id_provider(creates: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let creates = creates.clone();
        App::new()
            .route(
                "/v1/models/{owner}/{name}/predictions",
                web::post().to(move || {
                    creates.fetch_add(1, Ordering::SeqCst);
                    async {
                        HttpResponse::Created()
                            .json(json!({"id": "x".repeat(300), "status": "starting"}))
                    }
                }),
            )
            .default_service(web::to(|| async { HttpResponse::Ok().json(json!({})) }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://{address}")
}

async fn a_task_id_too_long_for_its_column_is_refused_once(url: String) {
    let creates = Arc::new(AtomicUsize::new(0));
    let base = long_id_provider(creates.clone()).await;
    let app = TestApp::builder(&url)
        .engine(|settings| {
            let mut replicate = ProviderConfig::costing(1);
            replicate.base_url = Some(base.clone());
            replicate.api_token = Some("r8_test".into());
            replicate.model = Some("owner/model".into());
            replicate.webhook_secrets = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()];
            settings
                .providers
                .by_name
                .insert("replicate".into(), replicate);
            settings.default_provider = "replicate".into();
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(1).await;
    let (_, done) = run_one(&app, &key, WITHIN).await;
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(done["error"]["code"], "provider_rejected", "{done}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        creates.load(Ordering::SeqCst),
        1,
        "one paid prediction, never resubmitted"
    );
    invariants_hold(&app).await;
}

async fn timelines_form_chains_under_load(url: String) {
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    let (_, key) = app.funded_account(40).await;
    let created = futures::future::join_all((0..40).map(|_| app.create_generation(&key))).await;
    for generation in &created {
        let id = generation["id"].as_str().unwrap();
        let done = app.wait_terminal(&key, id, WITHIN).await;
        assert_eq!(done["state"], "settled", "{done}");
        let states: Vec<(String, String)> = app
            .timeline(&key, id)
            .await
            .into_iter()
            .map(|(from, to, _)| (from, to))
            .collect();
        assert_eq!(states, common::happy_timeline(), "{id}");
    }
    invariants_hold(&app).await;
}

async fn accepted_and_waiting_in_one_batch_keep_their_own_states(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let id = Uuid::parse_str(app.create_generation(&key).await["id"].as_str().unwrap()).unwrap();
    let transition = |event, expected_version| WriteCommand::Transition {
        id,
        expected_version: Some(expected_version),
        event,
        next_attempt_at: None,
        consumes: Vec::new(),
        fence: None,
    };
    let commands = [
        transition(
            Event::Accepted {
                task_id: "t-1".into(),
            },
            0,
        ),
        transition(Event::Waiting, 1),
    ];
    batch::apply(&app.state.db, &commands, app.state.clock.now())
        .await
        .unwrap();
    let events = atelier_actors::workflow::read::events(&app.state.db, id)
        .await
        .unwrap();
    let chain: Vec<_> = events
        .iter()
        .map(|e| (e.from_state, e.to_state, e.version))
        .collect();
    use WorkflowState::*;
    assert_eq!(
        chain,
        [
            (None, Reserved, 0),
            (Some(Reserved), Submitted, 1),
            (Some(Submitted), AwaitingCallback, 2)
        ]
    );
    invariants_hold(&app).await;
}

async fn callbacks_from_a_provider_left_behind_decide_nothing(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| {
            settings.simulator.delay_ms = 1_500;
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(1).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = Uuid::parse_str(&id).unwrap();
    // While the simulator works, two stale "failed" callbacks land in the inbox: one from a
    // provider the generation is not on, one about another task.
    let started = Instant::now();
    loop {
        let state = app.get_json(&format!("/v1/generations/{id}"), &key).await["state"].clone();
        if state == "awaiting_callback" {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "never awaited the callback: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (provider, task) in [
        ("replicate", id.clone()),
        ("simulator", Uuid::new_v4().to_string()),
    ] {
        let payload = json!({"id": task, "status": "failed", "error": "stale"}).to_string();
        webhook_inbox::Entity::insert(webhook_inbox::ActiveModel {
            id: NotSet,
            workflow_id: Set(uuid),
            provider: Set(provider.into()),
            dedup_key: Set(format!("stale-{provider}-{task}")),
            payload: Set(payload),
            received_at: Set(app.state.clock.now()),
            processed_at: Set(None),
        })
        .exec(&app.state.db)
        .await
        .unwrap();
    }
    if let Some(engine) = &app.state.engine {
        engine.do_send(atelier_actors::engine::registry::Wake(uuid));
    }
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");
}

/// Another session holds the account's row (and SQLite's write lock): writes fail within the
/// configured timeouts with 503, instead of stalling every account, and succeed once it lets go.
async fn a_lock_held_elsewhere_fails_writes_cleanly_and_they_recover(url: String) {
    let app = TestApp::builder(&url)
        .configure(|settings| {
            settings.database.lock_timeout_ms = 300;
            settings.database.sqlite_busy_timeout_ms = 300;
            settings.database.batch_deadline_ms = 2_000;
        })
        .spawn()
        .await;
    let (account, key) = app.funded_account(2).await;
    let other = atelier_actors::db::connect(&url).await.unwrap();
    let blocker = other.begin().await.unwrap();
    if atelier_actors::db::is_postgres(&other) {
        let sql = format!("SELECT id FROM accounts WHERE id = '{account}' FOR UPDATE");
        blocker.execute_unprepared(&sql).await.unwrap();
    } else {
        drop(blocker);
        let sqlite = sqlite_write_lock(&url).await;
        let refused = timed_generation(&app, &key).await;
        drop(sqlite);
        assert_refused(refused);
        return assert_recovers(&app, &key).await;
    }
    let refused = timed_generation(&app, &key).await;
    blocker.rollback().await.unwrap();
    assert_refused(refused);
    assert_recovers(&app, &key).await;
}

/// A raw connection holding SQLite's write lock (`BEGIN IMMEDIATE`) until dropped.
async fn sqlite_write_lock(url: &str) -> sea_orm::DatabaseConnection {
    let other = sea_orm::Database::connect(url).await.unwrap();
    other.execute_unprepared("BEGIN IMMEDIATE").await.unwrap();
    other
}

async fn timed_generation(app: &TestApp, key: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = app
        .post_generation(key, &common::generation_body(), None)
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap(), started.elapsed())
}

fn assert_refused((status, body, took): (u16, Value, Duration)) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_busy", "{body}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

async fn assert_recovers(app: &TestApp, key: &str) {
    let response = app
        .post_generation(key, &common::generation_body(), None)
        .await;
    assert_eq!(response.status(), 202);
    let balance = app.balance(key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(1), Some(1))
    );
    let rows = workflow::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 1, "the refused request wrote nothing");
}

/// A write that blocks the workflow writer's thread (past any deadline it could enforce):
/// `/readyz` says so while it lasts, and is ready again afterwards.
async fn readyz_reports_a_wedged_writer(url: String) {
    let wedge = Arc::new(AtomicUsize::new(1));
    let fault: BatchFault = Arc::new(move |command: &WriteCommand| {
        if matches!(command, WriteCommand::Create(_))
            && wedge
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            std::thread::sleep(Duration::from_secs(3));
        }
        false
    });
    let app = TestApp::builder(&url)
        .engine(|settings| settings.database.batch_deadline_ms = 200)
        .fault(fault)
        .spawn()
        .await;
    let ready = |app: &TestApp| {
        let request = app.client.get(app.url("/readyz")).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(ready(&app).await, 200);
    let (_, key) = app.funded_account(1).await;
    let body = common::generation_body();
    let create = app.post_generation(&key, &body, None);
    let watch = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        ready(&app).await
    };
    let (created, during) = futures::join!(create, watch);
    assert_eq!(
        during, 503,
        "a writer stuck for 1.5 s past a 200 ms deadline"
    );
    // Unblocked past its deadline, the batch was abandoned: nothing written, try again.
    assert_eq!(created.status(), 503);
    assert_eq!(ready(&app).await, 200);
    let again = app.post_generation(&key, &body, None).await;
    assert_eq!(again.status(), 202);
}

/// A terminal transition settles or releases the workflow's hold in its own transaction. If
/// the ledger says that hold is already resolved (here: released behind the workflow's back),
/// the money and the workflow disagree: the batch fails and nothing is written, so no
/// generation can end `settled` without its charge.
async fn a_transition_whose_hold_was_resolved_elsewhere_writes_nothing(url: String) {
    use atelier_actors::batcher::BatchError;
    use atelier_actors::ledger::ReleaseOutcome;
    use atelier_actors::workflow::{FailureCode, read};

    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(3).await;
    let created = app.create_generation(&key).await;
    let id = Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    let row = read::find(&app.state.db, id).await.unwrap().unwrap();
    let released = app.state.ledger.release(row.hold_id).await.unwrap();
    assert!(
        matches!(released, ReleaseOutcome::Released { .. }),
        "{released:?}"
    );

    let failed = Event::Failed {
        code: FailureCode::Canceled,
        message: "test".into(),
    };
    let outcome = app.state.workflows.transition(id, None, failed, None).await;
    assert!(
        matches!(outcome, Err(BatchError::Database(_))),
        "{outcome:?}"
    );
    let after = read::find(&app.state.db, id).await.unwrap().unwrap();
    assert_eq!((after.state, after.version), (row.state, row.version));
    assert_eq!(read::events(&app.state.db, id).await.unwrap().len(), 1);
    assert_eq!(app.ledger_kinds(&key).await, ["release", "hold", "grant"]);
}
