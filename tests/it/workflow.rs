//! The workflow end to end over real HTTP: the engine submits to the built-in simulator, which
//! calls the webhook back; the result is copied into our storage and the credits charged once
//! — or released with the right code when anything goes wrong. Against each database.
use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{TestApp, error_code};
use atelier_actors::workflow::WorkflowState;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(30);

database_tests!(
    a_generation_settles_with_a_real_image_charged_once,
    a_failing_provider_releases_the_credits,
    without_a_callback_the_engine_polls,
    duplicate_callbacks_settle_once,
    expired_result_urls_release,
    oversized_results_release,
    a_throttling_provider_runs_out_the_submit_deadline,
    past_the_overall_deadline_a_generation_times_out,
    forged_and_replayed_webhooks_change_nothing,
    a_canceled_generation_ignores_its_late_callback,
    a_panicking_actor_is_rebuilt_and_finishes,
    url_inputs_are_copied_into_our_storage,
    a_rejected_task_releases_with_provider_rejected,
    a_result_download_slower_than_the_deadline_times_out,
    the_simulator_talks_only_to_the_atelier_serving_it,
    an_oversized_url_input_releases_with_input_unavailable,
    the_simulator_wants_its_key_and_serves_results_only_at_their_url,
    the_simulator_task_table_is_bounded_and_forgets_old_tasks,
    an_input_over_inputs_max_bytes_releases_though_uploads_allow_it,
    a_result_over_max_result_bytes_releases_with_invalid_result,
);

/// One generation on a fresh app with the engine (`configure` adjusts the settings), followed
/// until it is terminal. The account had 3 credits.
struct Run {
    app: TestApp,
    key: String,
    id: String,
    done: Value,
}

async fn one_generation(
    url: &str,
    configure: impl FnOnce(&mut atelier::config::Settings),
    hook: Option<atelier_actors::engine::StepHook>,
) -> Run {
    let app = TestApp::builder(url)
        .engine(configure)
        .step_hook(hook)
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    Run { app, key, id, done }
}

async fn events(app: &TestApp, key: &str, id: &str) -> Vec<(String, String)> {
    let timeline = app.timeline(key, id).await;
    timeline
        .into_iter()
        .map(|(from, to, _)| (from, to))
        .collect()
}

async fn assert_released(app: &TestApp, key: &str, generation: &Value, code: &str) {
    assert_eq!(generation["state"], "released", "{generation}");
    assert_eq!(generation["error"]["code"], code, "{generation}");
    assert!(generation.get("result_url").is_none());
    let balance = app.balance(key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(3), Some(0))
    );
    assert_eq!(app.ledger_kinds(key).await, ["release", "hold", "grant"]);
}

async fn a_generation_settles_with_a_real_image_charged_once(url: String) {
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    let (_, key) = app.funded_account(3).await;
    let created = app.create_generation(&key).await;
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(&key, id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");
    let download = app
        .client
        .get(done["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let image = image::load_from_memory(&download.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (image.width(), image.height()),
        (8, 12),
        "the person photo's size"
    );

    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
    let timeline = events(&app, &key, id).await;
    assert_eq!(timeline, common::happy_timeline());
    let reasons = app.timeline(&key, id).await;
    assert!(reasons[3].2.contains("by callback"), "{reasons:?}");
}

async fn a_failing_provider_releases_the_credits(url: String) {
    let Run { app, key, done, .. } =
        one_generation(&url, |s| s.simulator.failure_rate = 1.0, None).await;
    assert_released(&app, &key, &done, "provider_failed").await;
}

async fn without_a_callback_the_engine_polls(url: String) {
    let Run { app, key, id, done } = one_generation(
        &url,
        |s| {
            s.simulator.never_callback = true;
            s.workflow.callback_deadline_secs = 1;
        },
        None,
    )
    .await;
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
    let timeline = app.timeline(&key, &id).await;
    assert!(
        timeline[3].2.contains("provider reported a result by poll"),
        "{timeline:?}"
    );
}

async fn duplicate_callbacks_settle_once(url: String) {
    let app = TestApp::builder(&url)
        .engine(|s| s.simulator.duplicate_callbacks = true)
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.create_generation(&key).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let done = app.wait_terminal(&key, id, WITHIN).await;
        assert_eq!(done["state"], "settled", "{done}");
    }
    let kinds = app.ledger_kinds(&key).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "settle").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(app.balance(&key).await["available"], 0);
}

async fn expired_result_urls_release(url: String) {
    let Run { app, key, done, .. } =
        one_generation(&url, |s| s.simulator.expired_results = true, None).await;
    assert_released(&app, &key, &done, "upload_failed").await;
}

async fn oversized_results_release(url: String) {
    let Run { app, key, done, .. } =
        one_generation(&url, |s| s.simulator.oversized_results = true, None).await;
    assert_released(&app, &key, &done, "invalid_result").await;
}

async fn a_throttling_provider_runs_out_the_submit_deadline(url: String) {
    let Run { app, key, done, .. } = one_generation(
        &url,
        |s| {
            s.simulator.rate_limited = true;
            s.workflow.submit_deadline_secs = 2;
        },
        None,
    )
    .await;
    assert_released(&app, &key, &done, "provider_failed").await;
}

async fn past_the_overall_deadline_a_generation_times_out(url: String) {
    let Run { app, key, done, .. } = one_generation(
        &url,
        |s| {
            s.simulator.never_callback = true;
            s.workflow.overall_deadline_secs = 2;
        },
        None,
    )
    .await;
    assert_released(&app, &key, &done, "timeout").await;
}

async fn forged_and_replayed_webhooks_change_nothing(url: String) {
    let app = TestApp::builder(&url)
        .engine(|s| s.simulator.never_callback = true)
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait until the task was accepted.
    app.wait_state(&key, &id, &["awaiting_callback"], WITHIN)
        .await;
    let forged_body =
        json!({"id": id, "status": "succeeded", "output": "https://evil.example/x.png"});
    let forged = app
        .client
        .post(app.url(&format!("/webhooks/simulator/{id}?token=cb_guess")))
        .json(&forged_body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(forged, 401).await, "invalid_token");
    let untokened = app
        .client
        .post(app.url(&format!("/webhooks/simulator/{id}")))
        .json(&forged_body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(untokened, 401).await, "invalid_token");
    // An unknown id, a malformed one and another provider's path answer exactly as a wrong
    // token does: nothing tells a guesser which ids exist.
    let wrong_token: serde_json::Value = app
        .client
        .post(app.url(&format!("/webhooks/simulator/{id}?token=x")))
        .json(&forged_body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/webhooks/simulator/{unknown}?token=x"),
        "/webhooks/simulator/not-a-uuid?token=x".to_owned(),
        format!("/webhooks/replicate/{id}?token=x"),
    ] {
        let response = app
            .client
            .post(app.url(&path))
            .json(&forged_body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body, wrong_token, "{path}");
    }
    let generation = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(generation["state"], "awaiting_callback");
    let inbox = atelier_entities::webhook_inbox::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(inbox.is_empty(), "a refused webhook was stored");

    // The real callback, delivered by hand with the right token, then replayed.
    let row = atelier_entities::workflow::Entity::find_by_id(uuid::Uuid::parse_str(&id).unwrap())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let task_path = &format!("/simulator/v1/tasks/{id}");
    let webhook = app.url(&format!(
        "/webhooks/simulator/{id}?token={}",
        row.callback_token
    ));
    let oversized = app
        .client
        .post(&webhook)
        .body(vec![b' '; 16 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(oversized, 413).await, "payload_too_large");
    let garbage = app
        .client
        .post(&webhook)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(garbage, 400).await, "malformed_callback");
    // The simulator may still be rendering; poll its task until it is done.
    let task = common::wait_for("the simulator's task done", WITHIN, || async {
        let request = app.simulator(reqwest::Method::GET, task_path);
        let task = request.send().await.unwrap().text().await.unwrap();
        if task.contains("queued") {
            Err(task)
        } else {
            Ok(task)
        }
    })
    .await;
    // Copies arriving at once (one batch of the writer, or several) are stored once too.
    let burst = (0..4).map(|_| {
        app.client
            .post(&webhook)
            .header("content-type", "application/json")
            .body(task.clone())
            .send()
    });
    for delivered in futures::future::join_all(burst).await {
        assert_eq!(delivered.unwrap().status(), 200);
    }
    for _ in 0..3 {
        let delivered = app
            .client
            .post(&webhook)
            .header("content-type", "application/json")
            .body(task.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(delivered.status(), 200);
    }
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_eq!(done["state"], "settled");
    let inbox = atelier_entities::webhook_inbox::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(inbox.len(), 1, "a replay was stored again");
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
}

async fn a_canceled_generation_ignores_its_late_callback(url: String) {
    let app = TestApp::builder(&url)
        .engine(|s| s.simulator.delay_ms = 1_500)
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_state(&key, &id, &["awaiting_callback"], WITHIN)
        .await;
    let canceled = app
        .post_empty(&format!("/v1/generations/{id}/cancel"), &key)
        .await;
    assert_eq!(canceled.status(), 200);
    // The provider is told to stop.
    let started = std::time::Instant::now();
    loop {
        let task = simulator_task(&app, &id).await;
        if task["status"] == "failed" && task["error"] == "canceled" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "task not canceled: {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the simulator call back: the callback is stored, but changes nothing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_released(&app, &key, &done, "canceled").await;
    // The late callback was stored, then marked done rather than waking the engine forever.
    let started = std::time::Instant::now();
    loop {
        let inbox = atelier_entities::webhook_inbox::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap();
        if !inbox.is_empty() && inbox.iter().all(|row| row.processed_at.is_some()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "late callback left pending: {inbox:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_panicking_actor_is_rebuilt_and_finishes(url: String) {
    let panicked = Arc::new(AtomicBool::new(false));
    let flag = panicked.clone();
    let hook: atelier_actors::engine::StepHook = Arc::new(move |_, state| {
        if state == WorkflowState::Uploading && !flag.swap(true, Ordering::SeqCst) {
            panic!("injected fault in uploading");
        }
    });
    let Run { app, key, done, .. } = one_generation(&url, |_| {}, Some(hook)).await;
    assert!(
        panicked.load(Ordering::SeqCst),
        "the fault was never injected"
    );
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);
}

/// The engine on an app whose URL inputs may come from 127.0.0.1 (where it serves files).
async fn app_fetching_local_inputs(url: &str) -> TestApp {
    TestApp::builder(url)
        .engine(|s| s.inputs.allowed_hosts = vec!["127.0.0.1".into()])
        .spawn()
        .await
}

/// `POST /v1/uploads` of a PNG.
async fn upload_png(app: &TestApp, key: &str, png: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/v1/uploads"))
        .bearer_auth(key)
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap()
}

async fn url_inputs_are_copied_into_our_storage(url: String) {
    let app = app_fetching_local_inputs(&url).await;
    let (_, key) = app.funded_account(3).await;
    let person = common::png(20, 30, [250, 250, 250]);
    let upload: Value = upload_png(&app, &key, person).await.json().await.unwrap();
    let mut body = common::generation_body();
    // An http:// URL on an allowed host: fetched by the engine, not handed to the provider.
    body["person_image"] = upload["url"].clone();
    let response = app.post_generation(&key, &body, None).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(&key, id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");
    let copied = app
        .state
        .storage
        .exists(&atelier_actors::workflow::inputs::input_key(
            uuid::Uuid::parse_str(id).unwrap(),
            "person_image",
        ))
        .await
        .unwrap();
    assert!(copied, "the URL input was not copied");
    let result = app
        .client
        .get(done["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let image = image::load_from_memory(&result).unwrap();
    assert_eq!((image.width(), image.height()), (20, 30));
}

async fn a_rejected_task_releases_with_provider_rejected(url: String) {
    let Run { app, key, done, .. } =
        one_generation(&url, |s| s.simulator.reject_submissions = true, None).await;
    assert_released(&app, &key, &done, "provider_rejected").await;
}

async fn a_result_download_slower_than_the_deadline_times_out(url: String) {
    let Run { app, key, id, done } = one_generation(
        &url,
        |s| {
            s.simulator.result_delay_ms = 3_000;
            s.workflow.download_timeout_secs = 1;
            s.workflow.overall_deadline_secs = 4;
        },
        None,
    )
    .await;
    assert_released(&app, &key, &done, "timeout").await;
    let timeline = events(&app, &key, &id).await;
    assert_eq!(
        timeline.last().unwrap(),
        &("uploading".to_owned(), "released".to_owned()),
        "released while uploading"
    );
}

async fn the_simulator_talks_only_to_the_atelier_serving_it(url: String) {
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    let task = app
        .simulator(reqwest::Method::PUT, "/simulator/v1/tasks/outside")
        .json(&json!({
            "person_image": "https://example.com/person.png",
            "garment_image": "https://example.com/garment.png",
            "webhook": "https://example.com/hook",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(task.status(), 201);
    let started = std::time::Instant::now();
    loop {
        let view: Value = app
            .simulator(reqwest::Method::GET, "/simulator/v1/tasks/outside")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] == "failed" {
            assert!(
                view["error"]
                    .as_str()
                    .unwrap()
                    .contains("fetches only from"),
                "{view}"
            );
            break;
        }
        assert!(started.elapsed() < WITHIN, "{view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A URL input the engine fetches after creation that declares 10000×10000 pixels: released
/// with `input_unavailable` and a clear message, never stored, never sent to the provider.
async fn an_oversized_url_input_releases_with_input_unavailable(url: String) {
    let huge = common::huge_png();
    let app = app_fetching_local_inputs(&url).await;
    let (_, key) = app.funded_account(3).await;
    // Served by us at a signed URL, as any web server would serve it.
    let served = "uploads/elsewhere/huge";
    app.state.storage.put(served, huge.into()).await.unwrap();
    let mut body = common::generation_body();
    body["person_image"] = json!(app.state.object_url(served).await.unwrap());
    let response = app.post_generation(&key, &body, None).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(&key, id, WITHIN).await;
    assert_released(&app, &key, &done, "input_unavailable").await;
    // The client reads a fixed sentence; the timeline says why.
    let timeline = app.timeline(&key, id).await;
    assert!(
        timeline.last().unwrap().2.contains("10000×10000"),
        "{timeline:?}"
    );
    let person_key = atelier_actors::workflow::inputs::input_key(
        uuid::Uuid::parse_str(id).unwrap(),
        "person_image",
    );
    assert!(!app.state.storage.exists(&person_key).await.unwrap());
}

/// The simulator's view of task `id`, asked with Atelier's key.
async fn simulator_task(app: &TestApp, id: &str) -> Value {
    let path = format!("/simulator/v1/tasks/{id}");
    let response = app.simulator(reqwest::Method::GET, &path).send().await;
    response.unwrap().json().await.unwrap()
}

/// Anyone who can reach the port can reach the simulator: without Atelier's key its task
/// routes answer 401, and a result is served only at the URL it was given out under.
async fn the_simulator_wants_its_key_and_serves_results_only_at_their_url(url: String) {
    let Run { app, id, done, .. } = one_generation(&url, |_| {}, None).await;
    assert_eq!(done["state"], "settled", "{done}");
    let task_path = format!("/simulator/v1/tasks/{id}");
    let submit = json!({"person_image": "x", "garment_image": "y"});
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let bare = app.client.request(method.clone(), app.url(&task_path));
        let wrong = app
            .client
            .request(method.clone(), app.url(&task_path))
            .bearer_auth("not-the-simulator-key");
        for request in [bare, wrong] {
            let response = request.json(&submit).send().await.unwrap();
            assert_eq!(response.status(), 401, "{method}");
        }
    }
    let task = simulator_task(&app, &id).await;
    assert_eq!(
        task["status"], "succeeded",
        "not canceled by the DELETEs: {task}"
    );
    let output = task["output"].as_str().unwrap();
    for guessed in [
        format!("/simulator/v1/results/{id}"),
        format!("/simulator/v1/results/{id}/{}", "A".repeat(43)),
    ] {
        let response = app.client.get(app.url(&guessed)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{guessed}");
    }
    let result = app.client.get(output).send().await.unwrap();
    assert_eq!(result.status(), 200);
    assert!(image::load_from_memory(&result.bytes().await.unwrap()).is_ok());
}

/// Bogus submissions cannot grow the simulator without end: past `max_tasks` it answers 429,
/// and tasks are forgotten `task_ttl_secs` after submission.
async fn the_simulator_task_table_is_bounded_and_forgets_old_tasks(url: String) {
    let app = TestApp::builder(&url)
        .configure(|settings| {
            settings.simulator.max_tasks = 2;
            settings.simulator.task_ttl_secs = 1;
        })
        .spawn()
        .await;
    let submit = |id: &str| {
        app.simulator(reqwest::Method::PUT, &format!("/simulator/v1/tasks/{id}"))
            .json(&json!({"person_image": "x", "garment_image": "y"}))
            .send()
    };
    assert_eq!(submit("a").await.unwrap().status(), 201);
    assert_eq!(submit("b").await.unwrap().status(), 201);
    assert_eq!(
        error_code(submit("c").await.unwrap(), 429).await,
        "simulator_full"
    );
    assert_eq!(
        submit("a").await.unwrap().status(),
        200,
        "a resubmission finds its task"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        submit("c").await.unwrap().status(),
        201,
        "old tasks were forgotten"
    );
    for (id, status) in [("a", 404), ("b", 404), ("c", 200)] {
        let response = app
            .simulator(reqwest::Method::GET, &format!("/simulator/v1/tasks/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "task {id}");
    }
}

/// A PNG of `width`×`height` pixels of noise, which does not compress: 3 bytes a pixel.
fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(width, height, |_, _| {
        // xorshift: noise enough to defeat deflate, the same on every run.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let [r, g, b, _] = seed.to_le_bytes();
        image::Rgb([r, g, b])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode png");
    bytes.into_inner()
}

/// `inputs.max_bytes` is the URL-input limit, not `http.upload_limit_bytes`: an image the
/// upload endpoint takes is refused as an input URL past the input limit.
async fn an_input_over_inputs_max_bytes_releases_though_uploads_allow_it(url: String) {
    let app = TestApp::builder(&url)
        .engine(|s| {
            s.inputs.allowed_hosts = vec!["127.0.0.1".into()];
            s.inputs.max_bytes = 4096;
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let person = noisy_png(64, 64);
    assert!(person.len() > 4096, "{} bytes", person.len());
    let upload = upload_png(&app, &key, person).await;
    assert_eq!(upload.status(), 201, "the upload limit allows it");
    let upload: Value = upload.json().await.unwrap();
    let mut body = common::generation_body();
    body["person_image"] = upload["url"].clone();
    let why = released_for(&app, &key, &body, "input_unavailable").await;
    assert!(why.contains("larger than 4096 bytes"), "{why}");
}

/// `workflow.max_result_bytes` bounds the result download: a result larger than it is
/// released with `invalid_result`, its credits back.
async fn a_result_over_max_result_bytes_releases_with_invalid_result(url: String) {
    let app = TestApp::builder(&url)
        .engine(|s| s.workflow.max_result_bytes = 1024)
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let mut body = common::generation_body();
    // The simulator's result is the person photo's size: noise makes it larger than 1 KiB.
    body["person_image"] = json!(common::data_uri(&noisy_png(64, 64)));
    let why = released_for(&app, &key, &body, "invalid_result").await;
    assert!(why.contains("larger than 1024 bytes"), "{why}");
}

/// Creates a generation of `body` and follows it until it is released with `code` (the
/// account's 3 credits back): the reason of its last event.
async fn released_for(app: &TestApp, key: &str, body: &Value, code: &str) -> String {
    let response = app.post_generation(key, body, None).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(key, id, WITHIN).await;
    assert_released(app, key, &done, code).await;
    let timeline = app.timeline(key, id).await;
    timeline.last().unwrap().2.clone()
}
