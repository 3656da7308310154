//! The Replicate and fal adapters against local emulators of their wire formats
//! (`tests/emulators`), through the whole service: submission, signed and unsigned callbacks,
//! confirmation by polling, throttling, unknown statuses, failed results, actual-cost charges,
//! failover along `providers.chain` and the circuit breaker.

use std::time::{Duration, Instant};

use crate::common::{self, TestApp, error_code, generation_body};
use crate::emulators::{Emulator, FAL_KEY, Mode, REPLICATE_TOKEN, result_png};
use atelier::config::Settings;
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::providers::signature::Secret;
use atelier_entities::{webhook_inbox, workflow};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

database_tests!(
    replicate_settles_and_charges_the_reported_cost,
    replicate_callbacks_must_carry_a_valid_signature,
    replicate_throttling_waits_for_the_reset,
    replicate_unknown_statuses_keep_the_generation_waiting,
    fal_callbacks_are_confirmed_before_anything_happens,
    fal_completed_with_an_error_is_released,
    a_providers_raw_answer_stays_out_of_the_clients_error,
    fal_throttling_honours_retry_after,
    a_failing_provider_fails_over_and_its_circuit_opens_and_closes,
    an_account_problem_fails_over_at_once,
    an_open_circuit_with_nowhere_to_go_shows_in_the_timeline,
    a_failover_charges_the_cheaper_price_and_never_the_dearer,
    a_result_redirected_to_a_private_address_is_refused,
    a_small_attempt_count_releases_sooner,
);

fn replicate(emulator: &Emulator, cost: i64) -> ProviderConfig {
    let mut config = ProviderConfig::costing(cost);
    config.base_url = Some(emulator.url.clone());
    config.api_token = Some(REPLICATE_TOKEN.into());
    config.model = Some("cuuupid/idm-vton".into());
    config.webhook_secrets = vec![emulator.secret_text.clone().into()];
    config
}

fn fal(emulator: &Emulator, cost: i64) -> ProviderConfig {
    let mut config = ProviderConfig::costing(cost);
    config.base_url = Some(emulator.url.clone());
    config.api_token = Some(FAL_KEY.into());
    config.model = Some("fal-ai/idm-vton".into());
    config
}

/// An engine whose only providers are `providers`, the first being the default.
pub(crate) async fn app_with(
    url: &str,
    providers: Vec<(&str, ProviderConfig)>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    TestApp::builder(url)
        .engine(|settings| {
            settings.default_provider = providers[0].0.to_owned();
            settings.providers.by_name = providers
                .into_iter()
                .map(|(name, config)| (name.to_owned(), config))
                .collect();
            settings.workflow.callback_deadline_secs = 1;
            configure(settings);
        })
        .spawn()
        .await
}

pub(crate) async fn generate(app: &TestApp, key: &str) -> String {
    let response = app.post_generation(key, &generation_body(), None).await;
    assert_eq!(response.status(), 202);
    let generation: Value = response.json().await.unwrap();
    generation["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn row(app: &TestApp, id: &str) -> workflow::Model {
    workflow::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
}

/// Waits until the provider has accepted the generation's task; returns the row then.
pub(crate) async fn accepted(app: &TestApp, id: &str) -> workflow::Model {
    let started = Instant::now();
    loop {
        let row = row(app, id).await;
        // Past `submitted` too: `Accepted` and `Waiting` may commit in separate batches.
        if row.provider_task_id.is_some() && row.state != workflow::WorkflowState::Submitted {
            return row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the generation's stored callbacks (at least one) are all processed.
pub(crate) async fn handled_callbacks(app: &TestApp, id: &str) {
    let id = uuid::Uuid::parse_str(id).unwrap();
    common::wait_for(
        "the stored callbacks processed",
        Duration::from_secs(10),
        || async {
            let inbox = webhook_inbox::Entity::find()
                .filter(webhook_inbox::Column::WorkflowId.eq(id))
                .all(&app.state.db)
                .await
                .unwrap();
            let pending = inbox
                .iter()
                .filter(|row| row.processed_at.is_none())
                .count();
            match (inbox.len(), pending) {
                (1.., 0) => Ok(()),
                seen => Err(seen),
            }
        },
    )
    .await;
}

async fn reasons(app: &TestApp, key: &str, id: &str) -> Vec<String> {
    let timeline = app.timeline(key, id).await;
    timeline.into_iter().map(|(_, _, reason)| reason).collect()
}

pub(crate) async fn settled(app: &TestApp, key: &str, id: &str) -> Value {
    let generation = app.wait_terminal(key, id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "settled", "{generation}");
    generation
}

/// A new generation, followed until it is released with `provider_failed`, one reason in its
/// timeline being `expected`.
async fn released_as_provider_failed(app: &TestApp, key: &str, expected: impl Fn(&str) -> bool) {
    let id = generate(app, key).await;
    let generation = app.wait_terminal(key, &id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "released", "{generation}");
    assert_eq!(generation["error"]["code"], "provider_failed");
    let reasons = reasons(app, key, &id).await;
    assert!(reasons.iter().any(|reason| expected(reason)), "{reasons:?}");
}

pub(crate) async fn available(app: &TestApp, key: &str) -> i64 {
    app.balance(key).await["available"].as_i64().unwrap()
}

async fn replicate_settles_and_charges_the_reported_cost(url: String) {
    let emulator = Emulator::start(Mode::Normal).await;
    let mut config = replicate(&emulator, 5);
    // 1.5 s of reported compute at 2 credits a second: 3, less than the 5 held.
    config.credits_per_second = Some(2.0);
    let app = app_with(&url, vec![("replicate", config)], |_| {}).await;
    let (_, key) = app.funded_account(10).await;
    let id = generate(&app, &key).await;
    let generation = settled(&app, &key, &id).await;
    assert_eq!(available(&app, &key).await, 7, "charged the actual cost");
    assert_eq!(generation["cost"], 5);
    assert_eq!(generation["charged"], 3);
    assert_eq!(app.balance(&key).await["held"], 0);
    let result = app
        .client
        .get(generation["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(result.bytes().await.unwrap().as_ref(), result_png());
    assert_eq!(emulator.submissions().len(), 1);
    assert!(
        reasons(&app, &key, &id)
            .await
            .iter()
            .any(|reason| reason.contains("actual cost 3"))
    );
}

/// Posts `body` as a Replicate callback signed with `secret` at `timestamp`, or with the
/// literal `signature` when given.
async fn post_callback(
    app: &TestApp,
    webhook: &str,
    body: &[u8],
    secret: &Secret,
    timestamp: i64,
    signature: Option<&str>,
) -> reqwest::Response {
    let signed = secret.sign("msg_1", timestamp, body);
    app.client
        .post(webhook)
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature.unwrap_or(&signed))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn replicate_callbacks_must_carry_a_valid_signature(url: String) {
    let emulator = Emulator::start(Mode::Silent).await;
    // Mid-rotation: the old secret and the new (the emulator's) are both configured.
    let old_text = "whsec_b2xkIHNlY3JldCBzdGlsbCBpbiB1c2U=";
    let old = Secret::parse(old_text).unwrap();
    let mut config = replicate(&emulator, 2);
    config.webhook_secrets.insert(0, old_text.into());
    let app = app_with(&url, vec![("replicate", config)], |settings| {
        // Only callbacks may finish this generation.
        settings.workflow.callback_deadline_secs = 600;
    })
    .await;
    let (_, key) = app.funded_account(2).await;
    let id = generate(&app, &key).await;
    let row = accepted(&app, &id).await;
    let task = row.provider_task_id.clone().unwrap();
    let webhook = app.url(&format!(
        "/webhooks/replicate/{id}?token={}",
        row.callback_token
    ));
    let body = serde_json::to_vec(&json!({
        "id": task, "status": "succeeded", "output": [emulator.output_url()],
    }))
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let stranger = Secret::parse("whsec_c29tZW9uZSBlbHNl").unwrap();
    let for_another_body = old.sign("msg_1", now, b"{}");

    let unsigned = app.client.post(&webhook).body(body.clone()).send().await;
    assert_eq!(
        error_code(unsigned.unwrap(), 401).await,
        "invalid_signature"
    );
    for (label, response) in [
        (
            "wrong secret",
            post_callback(&app, &webhook, &body, &stranger, now, None).await,
        ),
        (
            "stale timestamp",
            post_callback(&app, &webhook, &body, &old, now - 301, None).await,
        ),
        (
            "empty v1,",
            post_callback(&app, &webhook, &body, &old, now, Some("v1,")).await,
        ),
        (
            "another body's signature",
            post_callback(&app, &webhook, &body, &old, now, Some(&for_another_body)).await,
        ),
    ] {
        let code = error_code(response, 401).await;
        assert_eq!(code, "invalid_signature", "{label}");
    }
    // Signed, but naming another prediction, or unreadable, or for no such generation.
    let other = serde_json::to_vec(&json!({"id": "pred-999", "status": "succeeded"})).unwrap();
    let response = post_callback(&app, &webhook, &other, &old, now, None).await;
    assert_eq!(error_code(response, 422).await, "unknown_task");
    let response = post_callback(&app, &webhook, b"{not json", &old, now, None).await;
    assert_eq!(error_code(response, 400).await, "malformed_callback");
    let nobody = app.url(&format!(
        "/webhooks/replicate/{}?token={}",
        uuid::Uuid::now_v7(),
        row.callback_token
    ));
    let response = post_callback(&app, &nobody, &body, &old, now, None).await;
    assert_eq!(error_code(response, 401).await, "invalid_token");
    let stored = webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::WorkflowId.eq(row.id))
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(stored.is_empty(), "a refused callback was stored");
    assert_eq!(
        self::row(&app, &id).await.state.as_str(),
        "awaiting_callback"
    );

    // Signed with the old secret, several signatures listed: accepted, and it finishes the job.
    let listed = format!("v1,AAAA {}", old.sign("msg_1", now, &body));
    let response = post_callback(&app, &webhook, &body, &old, now, Some(&listed)).await;
    assert_eq!(response.status(), 200);
    settled(&app, &key, &id).await;
    // And by the new one, a replay changes nothing.
    let response = emulator.post_signed(&webhook, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(available(&app, &key).await, 0);
}

async fn replicate_throttling_waits_for_the_reset(url: String) {
    let emulator = Emulator::start(Mode::Throttled { n: 1, secs: 1 }).await;
    let app = app_with(&url, vec![("replicate", replicate(&emulator, 1))], |_| {}).await;
    let (_, key) = app.funded_account(1).await;
    let id = generate(&app, &key).await;
    settled(&app, &key, &id).await;
    let submissions = emulator.submissions();
    assert_eq!(submissions.len(), 2, "throttled once, then accepted");
    let waited = submissions[1] - submissions[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

async fn replicate_unknown_statuses_keep_the_generation_waiting(url: String) {
    let emulator = Emulator::start(Mode::UnknownStatus).await;
    let app = app_with(&url, vec![("replicate", replicate(&emulator, 1))], |_| {}).await;
    let (_, key) = app.funded_account(1).await;
    let id = generate(&app, &key).await;
    // The callback's status is from the future: stored, understood as "still running"; the
    // poll after the callback deadline finds the result.
    settled(&app, &key, &id).await;
    let stored = webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::WorkflowId.eq(uuid::Uuid::parse_str(&id).unwrap()))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].payload.contains("quantum_superposition"));
}

async fn fal_callbacks_are_confirmed_before_anything_happens(url: String) {
    let emulator = Emulator::start(Mode::Hold).await;
    let app = app_with(&url, vec![("fal", fal(&emulator, 2))], |settings| {
        settings.workflow.callback_deadline_secs = 600;
    })
    .await;
    let (_, key) = app.funded_account(2).await;
    let id = generate(&app, &key).await;
    let row = accepted(&app, &id).await;
    let webhook = app.url(&format!("/webhooks/fal/{id}?token={}", row.callback_token));
    // A callback claiming success with someone else's image, while fal still works on it.
    let forged = json!({
        "request_id": row.provider_task_id, "status": "OK",
        "payload": {"images": [{"url": "http://127.0.0.1:9/forged.png"}]},
    });
    let response = app
        .client
        .post(&webhook)
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let malformed = app.client.post(&webhook).body("{").send().await.unwrap();
    assert_eq!(error_code(malformed, 400).await, "malformed_callback");
    // Only once the engine has handled the stored callback (asked fal, which still works on
    // it) does the row show that the forged success changed nothing.
    handled_callbacks(&app, &id).await;
    assert_eq!(
        self::row(&app, &id).await.state.as_str(),
        "awaiting_callback"
    );

    emulator.finish_all().await;
    let generation = settled(&app, &key, &id).await;
    let result = app
        .client
        .get(generation["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(result.bytes().await.unwrap().as_ref(), result_png());
    assert_eq!(available(&app, &key).await, 0);
}

async fn fal_completed_with_an_error_is_released(url: String) {
    let emulator = Emulator::start(Mode::Fails).await;
    let app = app_with(&url, vec![("fal", fal(&emulator, 2))], |_| {}).await;
    let (_, key) = app.funded_account(2).await;
    let id = generate(&app, &key).await;
    let generation = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "released", "{generation}");
    assert_eq!(generation["error"]["code"], "provider_failed");
    let message = generation["error"]["message"].as_str().unwrap();
    assert_eq!(message, "the provider could not complete the generation");
    let (_, _, reason) = app.timeline(&key, &id).await.pop().unwrap();
    assert!(reason.contains("no garment found"), "{reason}");
    assert_eq!(available(&app, &key).await, 2);
}

/// A provider's HTTP answer (status and body) is detail for our logs and the timeline, not
/// for the client: the generation's error says what happened in a sentence of ours.
async fn a_providers_raw_answer_stays_out_of_the_clients_error(url: String) {
    let emulator = Emulator::start(Mode::NotFound).await;
    let app = app_with(&url, vec![("replicate", replicate(&emulator, 1))], |_| {}).await;
    let (_, key) = app.funded_account(1).await;
    let id = generate(&app, &key).await;
    let generation = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "released", "{generation}");
    let error = generation["error"].to_string();
    assert!(
        !error.contains("404")
            && !error.contains("could not be found")
            && !error.contains("model-b4c9"),
        "{error}"
    );
    let (_, to, reason) = app.timeline(&key, &id).await.pop().unwrap();
    assert_eq!(to, "released");
    assert!(
        reason.contains("HTTP 404") && reason.contains("model-b4c9"),
        "{reason}"
    );
    assert_eq!(available(&app, &key).await, 1);
}

async fn fal_throttling_honours_retry_after(url: String) {
    let emulator = Emulator::start(Mode::Throttled { n: 1, secs: 1 }).await;
    let app = app_with(&url, vec![("fal", fal(&emulator, 1))], |_| {}).await;
    let (_, key) = app.funded_account(1).await;
    let id = generate(&app, &key).await;
    settled(&app, &key, &id).await;
    let submissions = emulator.submissions();
    assert_eq!(submissions.len(), 2);
    let waited = submissions[1] - submissions[0];
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

async fn a_failing_provider_fails_over_and_its_circuit_opens_and_closes(url: String) {
    let down = Emulator::start(Mode::Unavailable).await;
    let backup = Emulator::start(Mode::Normal).await;
    let mut first = replicate(&down, 2);
    first.breaker_threshold = 2;
    first.breaker_cooldown_secs = 1;
    let app = app_with(
        &url,
        vec![("replicate", first), ("fal", fal(&backup, 2))],
        |settings| settings.providers.chain = vec!["replicate".into(), "fal".into()],
    )
    .await;
    let (_, key) = app.funded_account(10).await;
    for round in 0..3 {
        let id = generate(&app, &key).await;
        let generation = settled(&app, &key, &id).await;
        assert_eq!(generation["provider"], "fal", "round {round}");
        let reasons = reasons(&app, &key, &id).await;
        let expected = if round < 2 {
            "replicate failed: HTTP 503"
        } else {
            "replicate's circuit is open; failing over to fal"
        };
        assert!(
            reasons.iter().any(|reason| reason.contains(expected)),
            "round {round}: {reasons:?}"
        );
    }
    assert_eq!(down.submissions().len(), 2, "the open circuit spared it");

    // Recovered: after the cooldown a probe goes through and closes the circuit.
    down.set_mode(Mode::Normal);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        let id = generate(&app, &key).await;
        let generation = settled(&app, &key, &id).await;
        assert_eq!(generation["provider"], "replicate");
    }
    assert_eq!(down.submissions().len(), 4);
    assert_eq!(available(&app, &key).await, 0);
}

async fn an_account_problem_fails_over_at_once(url: String) {
    let broke = Emulator::start(Mode::OutOfCredit).await;
    let backup = Emulator::start(Mode::Normal).await;
    let app = app_with(
        &url,
        vec![
            ("replicate", replicate(&broke, 1)),
            ("fal", fal(&backup, 1)),
        ],
        |settings| settings.providers.chain = vec!["replicate".into(), "fal".into()],
    )
    .await;
    let (_, key) = app.funded_account(2).await;
    for _ in 0..2 {
        let id = generate(&app, &key).await;
        assert_eq!(settled(&app, &key, &id).await["provider"], "fal");
    }
    // One 402 put the provider in cooldown: the second job did not try it.
    assert_eq!(broke.submissions().len(), 1);
}

async fn an_open_circuit_with_nowhere_to_go_shows_in_the_timeline(url: String) {
    let down = Emulator::start(Mode::Unavailable).await;
    let mut config = replicate(&down, 1);
    config.breaker_threshold = 1;
    config.breaker_cooldown_secs = 60;
    let app = app_with(&url, vec![("replicate", config)], |settings| {
        settings.workflow.submit_deadline_secs = 2;
    })
    .await;
    let (_, key) = app.funded_account(1).await;
    released_as_provider_failed(&app, &key, |reason| reason == "replicate's circuit is open").await;
    assert_eq!(down.submissions().len(), 1, "the open circuit kept us away");
    assert_eq!(available(&app, &key).await, 1);
}

async fn a_failover_charges_the_cheaper_price_and_never_the_dearer(url: String) {
    // Held 3 on the provider that is down; the backup costs 2: the settle charges 2.
    let down = Emulator::start(Mode::Unavailable).await;
    let cheaper = Emulator::start(Mode::Normal).await;
    let chain = |settings: &mut Settings| {
        settings.providers.chain = vec!["replicate".into(), "fal".into()];
        settings.workflow.submit_deadline_secs = 2;
    };
    let app = app_with(
        &url,
        vec![
            ("replicate", replicate(&down, 3)),
            ("fal", fal(&cheaper, 2)),
        ],
        chain,
    )
    .await;
    let (_, key) = app.funded_account(5).await;
    let id = generate(&app, &key).await;
    let generation = settled(&app, &key, &id).await;
    assert_eq!(generation["provider"], "fal");
    assert_eq!(
        (generation["cost"].as_i64(), generation["charged"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(available(&app, &key).await, 3);

    // A backup dearer than the hold is never used: the job waits for its own provider. (The
    // first app goes first: one engine per SQLite file, and on PostgreSQL it would share the
    // shards with its own providers.)
    drop(app);
    let dearer = Emulator::start(Mode::Normal).await;
    let app = app_with(
        &url,
        vec![("replicate", replicate(&down, 1)), ("fal", fal(&dearer, 2))],
        chain,
    )
    .await;
    let (_, key) = app.funded_account(1).await;
    let id = generate(&app, &key).await;
    let generation = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "released", "{generation}");
    assert!(dearer.submissions().is_empty());
    assert_eq!(available(&app, &key).await, 1);
}

/// The provider's own host is allowed for its results, but not wherever it redirects: a result
/// redirected to a private address is never fetched, and the generation releases.
async fn a_result_redirected_to_a_private_address_is_refused(url: String) {
    let emulator = Emulator::start(Mode::Normal).await;
    let private = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    private.set_nonblocking(true).unwrap();
    let port = private.local_addr().unwrap().port();
    emulator.redirect_results_to(&format!("http://localhost:{port}/metadata"));
    let app = app_with(&url, vec![("replicate", replicate(&emulator, 2))], |_| {}).await;
    let (_, key) = app.funded_account(3).await;
    let id = generate(&app, &key).await;
    let generation = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "released", "{generation}");
    assert_eq!(generation["error"]["code"], "upload_failed", "{generation}");
    // The client reads a fixed sentence; the timeline says why.
    let timeline = app.timeline(&key, &id).await;
    let reason = &timeline.last().unwrap().2;
    assert!(reason.contains("not public"), "{timeline:?}");
    assert_eq!(available(&app, &key).await, 3);
    assert!(private.accept().is_err(), "the private address was reached");
}

/// `workflow.max_attempts` and the backoff bounds take effect: a provider that always answers
/// 503, with nowhere to fail over to, is given up after 2 attempts, spaced by the short
/// backoff, long before the submit deadline would release it.
async fn a_small_attempt_count_releases_sooner(url: String) {
    let down = Emulator::start(Mode::Unavailable).await;
    let mut config = replicate(&down, 1);
    // The circuit stays closed: every attempt reaches the provider.
    config.breaker_threshold = 100;
    let app = app_with(&url, vec![("replicate", config)], |settings| {
        settings.workflow.submit_deadline_secs = 600;
        settings.workflow.max_attempts = 2;
        settings.workflow.backoff_min_ms = 10;
        settings.workflow.backoff_max_ms = 20;
        settings.workflow.tick_ms = 20;
    })
    .await;
    let (_, key) = app.funded_account(1).await;
    released_as_provider_failed(&app, &key, |reason| {
        reason.contains("gave up after 2 attempts")
    })
    .await;
    assert_eq!(down.submissions().len(), 2, "one retry, then released");
    assert_eq!(available(&app, &key).await, 1);
}
