//! Storage on a real S3 server (`s3s-fs`, which checks SigV4 signatures and presigned URLs):
//! results and uploads land in the bucket behind presigned URLs, a result is written once, an
//! outage while uploading is waited out (or ends in `upload_failed` at the deadline) without
//! a charge, and `verify` checks each result with a HEAD request.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use atelier_actors::engine::StepHook;
use atelier_actors::storage::{Bytes, Created, Storage};
use atelier_actors::workflow::WorkflowState;
use atelier_actors::workflow::inputs::result_key;
use serde_json::Value;

use crate::common::{S3Server, TestApp, atelier_command, png, run_verify, wait_for};

const FUNDS: i64 = 100;
const WITHIN: Duration = Duration::from_secs(30);

database_tests!(
    results_and_uploads_live_in_the_bucket_behind_presigned_urls,
    an_outage_while_uploading_is_waited_out,
    storage_down_until_the_deadline_releases_with_upload_failed,
    verify_reports_a_result_deleted_from_the_bucket
);

/// An app whose storage is `server`'s bucket, with the engine and quick retries.
async fn app_on(url: &str, server: &S3Server, hook: Option<StepHook>) -> TestApp {
    let storage = server.storage_config();
    TestApp::builder(url)
        .engine(move |s| {
            s.storage = storage;
            s.workflow.backoff_min_ms = 100;
            s.workflow.backoff_max_ms = 400;
        })
        .step_hook(hook)
        .spawn()
        .await
}

/// One generation on a funded account, settled: (api key, the generation).
async fn one_settled(app: &TestApp) -> (String, Value) {
    let (_, key) = app.funded_account(FUNDS).await;
    let created = app.create_generation(&key).await;
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(&key, id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");
    (key, done)
}

async fn results_and_uploads_live_in_the_bucket_behind_presigned_urls(url: String) {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let app = app_on(&url, &server, None).await;
    let (key, done) = one_settled(&app).await;
    let id = done["id"].as_str().unwrap();

    let object = server.object_path(&result_key(id.parse().unwrap()));
    let stored = std::fs::read(&object).expect("the result is in the bucket");
    let result_url = done["result_url"].as_str().unwrap();
    assert!(result_url.starts_with(&server.endpoint()), "{result_url}");
    let response = app.client.get(result_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.unwrap(), stored);

    let tampered = tamper(result_url);
    let response = app.client.get(&tampered).send().await.unwrap();
    assert_eq!(response.status(), 403, "a tampered signature is refused");
    let other_object = result_url.replace(id, &uuid::Uuid::new_v4().to_string());
    let response = app.client.get(&other_object).send().await.unwrap();
    assert_eq!(response.status(), 403, "a signature names its object");

    let image = png(16, 16, [1, 2, 3]);
    let upload: Value = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&key)
        .header("content-type", "image/png")
        .body(image.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = app.client.get(upload["url"].as_str().unwrap()).send().await;
    assert_eq!(response.unwrap().bytes().await.unwrap(), image);
}

/// The URL with the last hex digit of its signature changed.
fn tamper(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").expect("a presigned URL") + 16;
    let mut url = url.to_owned();
    let digit = if &url[at..at + 1] == "0" { "1" } else { "0" };
    url.replace_range(at..at + 1, digit);
    url
}

#[actix_web::test]
async fn a_presigned_url_stops_working_when_it_expires() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let storage = Storage::s3(&server.storage_config()).unwrap();
    let image = Bytes::from(png(4, 4, [9, 9, 9]));
    storage
        .put("results/expiring", image.clone())
        .await
        .unwrap();
    let url = storage
        .presigned_get("results/expiring", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let client = reqwest::Client::new();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), image);
    // SigV4 expiry has a resolution of seconds: two of them make it certain.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 403, "an expired URL is refused");
}

#[actix_web::test]
async fn a_second_create_does_not_replace_the_first() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let mut config = server.storage_config();
    config.multipart_threshold_bytes = 5 * 1024 * 1024;
    config.part_size_bytes = 5 * 1024 * 1024;
    let storage = Storage::s3(&config).unwrap();
    let first = Bytes::from(png(4, 4, [1, 1, 1]));
    let second = Bytes::from(png(4, 4, [2, 2, 2]));
    let created = storage.create("results/once", first.clone()).await.unwrap();
    assert_eq!(created, Created::New);
    let again = storage.create("results/once", second).await.unwrap();
    assert_eq!(again, Created::AlreadyThere);
    assert_eq!(
        storage.get("results/once").await.unwrap(),
        Some(first.clone())
    );

    // Past the threshold: a multipart upload in equal parts (5 + 5 + 1 MiB), typed by its
    // bytes, and still written once.
    let mut large = png(4, 4, [3, 3, 3]);
    large.resize(11 * 1024 * 1024, 7);
    let large = Bytes::from(large);
    let created = storage
        .create("results/large", large.clone())
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    let again = storage
        .create("results/large", first.clone())
        .await
        .unwrap();
    assert_eq!(again, Created::AlreadyThere);
    assert_eq!(storage.get("results/large").await.unwrap(), Some(large));
    let url = storage
        .presigned_get("results/large", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.headers()["content-type"], "image/png");
}

/// A hook that stops the S3 server when the first generation reaches `uploading` (once: a
/// server the test resumes stays up).
fn stop_at_upload(server: &S3Server) -> StepHook {
    let stop = server.stopper();
    let armed = AtomicBool::new(true);
    Arc::new(move |_, state| {
        if state == WorkflowState::Uploading && armed.swap(false, Ordering::SeqCst) {
            stop();
        }
    })
}

async fn an_outage_while_uploading_is_waited_out(url: String) {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let storage = server.storage_config();
    // No callbacks: each result is found by the poll after the callback deadline, by when
    // the simulator has long fetched its inputs from the bucket, and the server is down.
    let app = TestApp::builder(&url)
        .engine(move |s| {
            s.storage = storage;
            s.simulator.never_callback = true;
            s.workflow.callback_deadline_secs = 2;
            s.workflow.backoff_min_ms = 100;
            s.workflow.backoff_max_ms = 400;
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(FUNDS).await;
    let (mut ids, mut held) = (Vec::new(), 0);
    for _ in 0..3 {
        let created = app.create_generation(&key).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
        held += created["cost"].as_i64().unwrap();
    }
    for id in &ids {
        simulator_done(&app, id).await;
    }
    server.stop();
    // Every upload fails and is put off while the server is down: nothing settles, and
    // nothing is charged.
    for id in &ids {
        app.wait_state(&key, id, &["uploading"], WITHIN).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        let generation = app.get_json(&format!("/v1/generations/{id}"), &key).await;
        assert_eq!(generation["state"], "uploading", "{generation}");
    }
    let balance = app.balance(&key).await;
    assert_eq!(balance["available"], FUNDS - held, "{balance}");
    assert_eq!(balance["held"], held, "{balance}");

    server.resume().await;
    let mut charged = 0;
    for id in &ids {
        let done = app.wait_terminal(&key, id, WITHIN).await;
        assert_eq!(done["state"], "settled", "{done}");
        charged += done["charged"].as_i64().unwrap();
        assert!(
            server
                .object_path(&result_key(id.parse().unwrap()))
                .exists()
        );
    }
    let balance = app.balance(&key).await;
    assert_eq!(balance["available"], FUNDS - charged, "{balance}");
    let (ok, report) = verify(&url, &server);
    assert!(ok, "verify: {report}");
}

async fn storage_down_until_the_deadline_releases_with_upload_failed(url: String) {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let storage = server.storage_config();
    let app = TestApp::builder(&url)
        .engine(move |s| {
            s.storage = storage;
            s.workflow.overall_deadline_secs = 3;
            s.workflow.backoff_min_ms = 100;
            s.workflow.backoff_max_ms = 400;
        })
        .step_hook(Some(stop_at_upload(&server)))
        .spawn()
        .await;
    let (_, key) = app.funded_account(FUNDS).await;
    let created = app.create_generation(&key).await;
    let id = created["id"].as_str().unwrap();
    let done = app.wait_terminal(&key, id, WITHIN).await;
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(done["error"]["code"], "upload_failed", "{done}");
    let balance = app.balance(&key).await;
    assert_eq!(balance["available"], FUNDS, "nothing charged: {balance}");
    assert_eq!(balance["held"], 0, "{balance}");
}

async fn verify_reports_a_result_deleted_from_the_bucket(url: String) {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let app = app_on(&url, &server, None).await;
    let (_, done) = one_settled(&app).await;
    let id = done["id"].as_str().unwrap();
    let (ok, report) = verify(&url, &server);
    assert!(ok, "verify before the delete: {report}");

    let result = result_key(id.parse().unwrap());
    app.state.storage.delete(&result).await.unwrap();
    let (ok, report) = verify(&url, &server);
    assert!(!ok, "verify passed without the object: {report}");
    assert!(report.contains(&result), "{report}");
    assert!(report.contains(id), "{report}");
}

/// Waits until the simulator has rendered task `id` (fetching its inputs).
async fn simulator_done(app: &TestApp, id: &str) {
    let path = format!("/simulator/v1/tasks/{id}");
    wait_for("the simulator's task done", WITHIN, || async {
        let request = app.simulator(reqwest::Method::GET, &path);
        let task = request.send().await.unwrap().text().await.unwrap();
        if task.contains("succeeded") {
            Ok(())
        } else {
            Err(task)
        }
    })
    .await;
}

/// Runs `atelier verify` with `server` as its storage: (whether everything holds, stdout).
fn verify(url: &str, server: &S3Server) -> (bool, String) {
    let mut command = atelier_command(url);
    command.arg("verify").envs(server.storage_env());
    run_verify(command)
}
