//! The scenarios a provider with an asynchronous task API and unsigned callbacks (EvoLink,
//! FASHN) must pass, through the whole service against the `TaskApi` emulator of its wire
//! format: the happy path, a failed task, an unknown status, throttling with and without
//! `Retry-After`, a forged callback, a redelivered one, polling when no callback comes,
//! malformed JSON, and an account problem failing over. `unsigned_callback_tests!` runs them
//! all for one wire format, on both databases.

use std::time::Duration;

use crate::common::{TestApp, error_code};
use crate::emulators::result_png;
use crate::emulators::task_api::{TASK_API_TOKEN, TaskApi, TaskMode, View, Wire};
use crate::providers::{accepted, app_with, available, generate, handled_callbacks, row, settled};
use atelier_actors::providers::config::ProviderConfig;
use atelier_entities::webhook_inbox;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

/// Every scenario of this module for `$wire`, on both databases: each becomes
/// `<module>::<scenario>::{sqlite, postgres}` in the module that invokes the macro.
#[macro_export]
macro_rules! unsigned_callback_tests {
    ($wire:expr) => {
        $crate::unsigned_callback_tests!($wire;
            settles_and_charges_its_cost,
            a_failed_task_is_released_uncharged,
            an_unknown_status_keeps_the_generation_waiting,
            throttling_honours_retry_after,
            throttling_without_retry_after_backs_off,
            a_forged_callback_changes_nothing,
            a_redelivered_callback_is_a_no_op,
            polls_when_no_callback_comes,
            malformed_json_is_refused_or_asked_again,
            an_account_problem_fails_over_at_once,
        );
    };
    ($wire:expr; $($name:ident),* $(,)?) => {
        $(
            async fn $name(url: String) {
                $crate::unsigned_callbacks::$name($wire, url).await
            }
        )*
        database_tests!($($name),*);
    };
}

/// The provider's table name, and its configuration pointing at `emulator`.
pub fn provider(emulator: &TaskApi, cost: i64) -> (&'static str, ProviderConfig) {
    let mut config = ProviderConfig::costing(cost);
    config.base_url = Some(emulator.url.clone());
    config.api_token = Some(TASK_API_TOKEN.into());
    match emulator.wire {
        Wire::EvoLink => {
            config.model = Some("gemini-2.5-flash-image".into());
            ("evolink", config)
        }
        Wire::Fashn => ("fashn", config),
    }
}

/// An engine whose only provider is the one `emulator` emulates.
async fn app_on(url: &str, emulator: &TaskApi, cost: i64) -> TestApp {
    app_with(url, vec![provider(emulator, cost)], |_| {}).await
}

async fn inbox(app: &TestApp, id: &str) -> Vec<webhook_inbox::Model> {
    webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::WorkflowId.eq(uuid::Uuid::parse_str(id).unwrap()))
        .all(&app.state.db)
        .await
        .unwrap()
}

/// The generation's result, downloaded through its `result_url`, is the emulator's image.
async fn assert_result_is_the_providers(app: &TestApp, generation: &serde_json::Value) {
    let result = app
        .client
        .get(generation["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(result.bytes().await.unwrap().as_ref(), result_png());
}

/// The submission carries our signed URLs for both images, in the provider's field names.
fn assert_submission_names_both_images(app: &TestApp, emulator: &TaskApi) {
    let bodies = emulator.submitted_bodies();
    let body = &bodies[0];
    let images = match emulator.wire {
        Wire::EvoLink => {
            assert_eq!(body["model"], "gemini-2.5-flash-image");
            assert!(body["prompt"].as_str().unwrap().contains("try-on"));
            assert!(
                body["callback_url"]
                    .as_str()
                    .unwrap()
                    .contains("/webhooks/evolink/")
            );
            let urls = body["image_urls"].as_array().unwrap();
            assert_eq!(urls.len(), 2, "{body}");
            vec![urls[0].clone(), urls[1].clone()]
        }
        Wire::Fashn => {
            assert_eq!(body["model_name"], "tryon-v1.6");
            let inputs = &body["inputs"];
            vec![
                inputs["model_image"].clone(),
                inputs["garment_image"].clone(),
            ]
        }
    };
    for (image, field) in images.iter().zip(["person_image", "garment_image"]) {
        let image = image.as_str().unwrap();
        assert!(
            image.starts_with(&app.address) && image.contains(field),
            "{image}"
        );
    }
}

pub async fn settles_and_charges_its_cost(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::Normal).await;
    let app = app_on(&url, &emulator, 4).await;
    let (_, key) = app.funded_account(10).await;
    let id = generate(&app, &key).await;
    let generation = settled(&app, &key, &id).await;
    assert_eq!(
        (generation["cost"].as_i64(), generation["charged"].as_i64()),
        (Some(4), Some(4))
    );
    assert_eq!(available(&app, &key).await, 6);
    assert_eq!(app.balance(&key).await["held"], 0);
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
    assert_result_is_the_providers(&app, &generation).await;
    assert_eq!(emulator.submissions().len(), 1);
    assert_submission_names_both_images(&app, &emulator);
}

pub async fn a_failed_task_is_released_uncharged(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::Fails).await;
    let app = app_on(&url, &emulator, 3).await;
    let (_, key) = app.funded_account(3).await;
    let id = generate(&app, &key).await;
    let generation = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(generation["state"], "released", "{generation}");
    assert_eq!(generation["error"]["code"], "provider_failed");
    let message = generation["error"]["message"].as_str().unwrap();
    assert_eq!(message, "the provider could not complete the generation");
    let (_, to, reason) = app.timeline(&key, &id).await.pop().unwrap();
    assert_eq!(to, "released");
    assert!(reason.contains("no garment found"), "{reason}");
    assert_eq!(available(&app, &key).await, 3);
    assert_eq!(app.balance(&key).await["held"], 0);
    assert_eq!(app.ledger_kinds(&key).await, ["release", "hold", "grant"]);
}

/// A status from the future, in the callback and then in a read, is "still running": the
/// generation waits on and settles once a read finds the task completed.
pub async fn an_unknown_status_keeps_the_generation_waiting(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::UnknownStatus).await;
    let app = app_on(&url, &emulator, 2).await;
    let (_, key) = app.funded_account(2).await;
    let id = generate(&app, &key).await;
    settled(&app, &key, &id).await;
    let stored = inbox(&app, &id).await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].payload.contains("quantum_superposition"));
    let task = row(&app, &id).await.provider_task_id.unwrap();
    assert!(
        emulator.reads(&task) >= 2,
        "read once unknown, then completed"
    );
    let reasons: Vec<String> = app
        .timeline(&key, &id)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert!(reasons.iter().any(|r| r.contains("by poll")), "{reasons:?}");
    assert_eq!(available(&app, &key).await, 0);
}

pub async fn throttling_honours_retry_after(wire: Wire, url: String) {
    let mode = TaskMode::Throttled {
        n: 1,
        retry_after: Some(1),
    };
    let emulator = TaskApi::start(wire, mode).await;
    let app = app_on(&url, &emulator, 1).await;
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
    assert_eq!(available(&app, &key).await, 0);
}

/// A 429 without `Retry-After` is retried with the engine's own backoff.
pub async fn throttling_without_retry_after_backs_off(wire: Wire, url: String) {
    let mode = TaskMode::Throttled {
        n: 2,
        retry_after: None,
    };
    let emulator = TaskApi::start(wire, mode).await;
    let (name, config) = provider(&emulator, 1);
    let app = app_with(&url, vec![(name, config)], |settings| {
        settings.workflow.backoff_min_ms = 50;
        settings.workflow.backoff_max_ms = 100;
        settings.workflow.tick_ms = 20;
    })
    .await;
    let (_, key) = app.funded_account(1).await;
    let id = generate(&app, &key).await;
    settled(&app, &key, &id).await;
    assert_eq!(
        emulator.submissions().len(),
        3,
        "throttled twice, then accepted"
    );
    assert_eq!(available(&app, &key).await, 0);
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
}

/// A callback with the right token but a claim the provider does not confirm (the task still
/// runs there) changes nothing: no transition, no money moved. The real end then settles with
/// the provider's image, not the forged one.
pub async fn a_forged_callback_changes_nothing(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::Hold).await;
    let (name, config) = provider(&emulator, 2);
    let app = app_with(&url, vec![(name, config)], |settings| {
        settings.workflow.callback_deadline_secs = 600;
    })
    .await;
    let (_, key) = app.funded_account(5).await;
    let id = generate(&app, &key).await;
    let row = accepted(&app, &id).await;
    let task = row.provider_task_id.clone().unwrap();
    // The workflow reaches `awaiting_callback` right after the task id is stored.
    app.wait_state(&key, &id, &["awaiting_callback"], Duration::from_secs(10))
        .await;
    let before = app.timeline(&key, &id).await;
    let webhook = app.url(&format!(
        "/webhooks/{name}/{id}?token={}",
        row.callback_token
    ));
    let mut forged_success = emulator.task_json(&task, View::Completed);
    let results = if wire == Wire::EvoLink {
        "results"
    } else {
        "output"
    };
    forged_success[results] = json!(["http://127.0.0.1:9/forged.png"]);
    let forged_failure = emulator.task_json(&task, View::Failed);
    for forged in [forged_success, forged_failure] {
        let response = app
            .client
            .post(&webhook)
            .json(&forged)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    handled_callbacks(&app, &id).await;
    assert!(emulator.reads(&task) >= 1, "the engine asked the provider");
    assert_eq!(
        self::row(&app, &id).await.state.as_str(),
        "awaiting_callback"
    );
    assert_eq!(app.timeline(&key, &id).await, before, "no transition");
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(app.ledger_kinds(&key).await, ["hold", "grant"]);

    emulator.finish_all().await;
    let generation = settled(&app, &key, &id).await;
    assert_result_is_the_providers(&app, &generation).await;
    assert_eq!(available(&app, &key).await, 3);
}

/// A provider retrying a delivery we already took (FASHN: up to 5 times) changes nothing.
pub async fn a_redelivered_callback_is_a_no_op(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::Normal).await;
    let app = app_on(&url, &emulator, 2).await;
    let (_, key) = app.funded_account(5).await;
    let id = generate(&app, &key).await;
    settled(&app, &key, &id).await;
    let timeline = app.timeline(&key, &id).await;
    let ledger = app.ledger_kinds(&key).await;
    for _ in 0..5 {
        for answer in emulator.redeliver_all().await {
            assert_eq!(answer, Some(reqwest::StatusCode::OK));
        }
    }
    let task = row(&app, &id).await.provider_task_id.unwrap();
    assert_eq!(emulator.deliveries(&task), 6);
    assert_eq!(inbox(&app, &id).await.len(), 1, "stored once");
    assert_eq!(app.timeline(&key, &id).await, timeline);
    assert_eq!(app.ledger_kinds(&key).await, ledger);
    assert_eq!(available(&app, &key).await, 3);
}

pub async fn polls_when_no_callback_comes(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::Silent).await;
    let app = app_on(&url, &emulator, 2).await;
    let (_, key) = app.funded_account(2).await;
    let id = generate(&app, &key).await;
    let generation = settled(&app, &key, &id).await;
    assert_result_is_the_providers(&app, &generation).await;
    let task = row(&app, &id).await.provider_task_id.unwrap();
    assert_eq!(emulator.deliveries(&task), 0);
    assert!(inbox(&app, &id).await.is_empty());
    let timeline = app.timeline(&key, &id).await;
    assert!(
        timeline.iter().any(|(_, _, r)| r.contains("by poll")),
        "{timeline:?}"
    );
    assert_eq!(available(&app, &key).await, 0);
}

/// A callback that is not JSON is refused (400) and stored nowhere; a read that answers
/// something unreadable is asked again, and the generation settles once it reads well.
pub async fn malformed_json_is_refused_or_asked_again(wire: Wire, url: String) {
    let emulator = TaskApi::start(wire, TaskMode::MalformedReads { n: 2 }).await;
    let (name, config) = provider(&emulator, 2);
    let app = app_with(&url, vec![(name, config)], |settings| {
        settings.workflow.backoff_min_ms = 50;
        settings.workflow.backoff_max_ms = 100;
    })
    .await;
    let (_, key) = app.funded_account(2).await;
    let id = generate(&app, &key).await;
    let row = accepted(&app, &id).await;
    let webhook = app.url(&format!(
        "/webhooks/{name}/{id}?token={}",
        row.callback_token
    ));
    for garbage in ["{not json", "", "[]", r#"{"id": 7}"#] {
        let response = app
            .client
            .post(&webhook)
            .body(garbage)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response, 400).await,
            "malformed_callback",
            "{garbage:?}"
        );
    }
    settled(&app, &key, &id).await;
    let stored = inbox(&app, &id).await;
    assert!(
        stored
            .iter()
            .all(|callback| !callback.payload.contains("not json")),
        "a malformed callback was stored"
    );
    let task = row.provider_task_id.unwrap();
    assert!(emulator.reads(&task) >= 1);
    assert_eq!(available(&app, &key).await, 0);
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
}

/// Our account at the provider out of balance (EvoLink 402, FASHN `429 OutOfCredits`) is an
/// account problem, not throttling: the task fails over at once to the other provider, and the
/// next one does not try the broke provider again (its circuit opened).
pub async fn an_account_problem_fails_over_at_once(wire: Wire, url: String) {
    let broke = TaskApi::start(wire, TaskMode::OutOfCredit).await;
    let other = if wire == Wire::EvoLink {
        Wire::Fashn
    } else {
        Wire::EvoLink
    };
    let backup = TaskApi::start(other, TaskMode::Normal).await;
    let first = provider(&broke, 2);
    let second = provider(&backup, 2);
    let chain = vec![first.0.to_owned(), second.0.to_owned()];
    let backup_name = second.0;
    let app = app_with(&url, vec![first, second], |settings| {
        settings.providers.chain = chain
    })
    .await;
    let (_, key) = app.funded_account(4).await;
    for _ in 0..2 {
        let id = generate(&app, &key).await;
        assert_eq!(settled(&app, &key, &id).await["provider"], backup_name);
    }
    assert_eq!(
        broke.submissions().len(),
        1,
        "one refusal opened its circuit"
    );
    assert_eq!(available(&app, &key).await, 0);
}
