//! Completion webhooks to customers, over real HTTP on each database: endpoints registered,
//! listed and deleted per account; every terminal generation delivered to a test server,
//! signed per Standard Webhooks (checked here by an independent implementation of the spec),
//! retried after 500s under one `webhook-id`; private destinations refused when registered
//! and when connecting; and the real binary SIGKILLed between the terminal commit and the
//! delivery, which still happens, once per event.
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{
    self, ADMIN_TOKEN, KillOnDrop, TestApp, atelier_command, error_code, free_port,
    generation_body, remote_account, remote_get, wait_ready,
};

const WITHIN: Duration = Duration::from_secs(30);

database_tests!(
    endpoints_are_registered_listed_and_deleted_per_account,
    deliveries_are_signed_and_retried_under_one_webhook_id,
    private_destinations_are_refused_when_connecting,
    a_sigkill_between_the_terminal_commit_and_the_delivery_loses_nothing,
    verify_reports_a_lost_and_an_invented_delivery,
);

/// One request the test server received.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A webhook receiver on a free loopback port: records every request, leaves the first
/// `hangs` of them unanswered for a minute, answers 500 to the next `failures` and 204 after.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

/// Takes one from `counter` if it is above 0.
fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Receiver {
    fn start(failures: usize) -> Self {
        Self::hanging(0, failures)
    }

    fn hanging(hangs: usize, failures: usize) -> Self {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let left = Arc::new((AtomicUsize::new(hangs), AtomicUsize::new(failures)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (record, failing) = (seen.clone(), left.clone());
        let server = HttpServer::new(move || {
            let (record, failing) = (record.clone(), failing.clone());
            App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                let (record, left) = (record.clone(), failing.clone());
                async move {
                    let headers = request
                        .headers()
                        .iter()
                        .map(|(name, value)| {
                            (name.as_str().to_owned(), value.to_str().unwrap().to_owned())
                        })
                        .collect();
                    record.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    if take(&left.0) {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    if take(&left.1) {
                        HttpResponse::InternalServerError().body("not yet")
                    } else {
                        HttpResponse::NoContent().finish()
                    }
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Self {
            url: format!("http://{address}/hooks/atelier"),
            seen,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived, and returns them.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        common::wait_for(&format!("{count} webhook requests"), WITHIN, || async {
            let received = self.received();
            if received.len() >= count {
                Ok(received)
            } else {
                Err(received.len())
            }
        })
        .await
    }
}

/// The Standard Webhooks check, written from the specification and not from Atelier's code:
/// HMAC-SHA256 keyed with the base64-decoded secret (after `whsec_`) over
/// `{webhook-id}.{webhook-timestamp}.{body}`, base64, among the space-separated `v1,` entries
/// of `webhook-signature`; and a timestamp within five minutes.
fn verifies(secret: &str, received: &Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let header = |name: &str| received.headers.get(name).cloned().unwrap_or_default();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let sent: i64 = timestamp.parse().unwrap();
    if (chrono::Utc::now().timestamp() - sent).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&received.body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header("webhook-signature")
        .split(' ')
        .any(|entry| entry == format!("v1,{expected}"))
}

/// What the official `standardwebhooks` library (Python, in the tests' venv) makes of a
/// delivery: the payload it verified, or `None` when it refused it. `None` outright (with a
/// note) when no such Python is configured, or a failure when services are required.
fn official_verify(secret: &str, received: &Received) -> Option<Option<Value>> {
    const SCRIPT: &str = "import json, sys\n\
        from standardwebhooks.webhooks import Webhook\n\
        try:\n    print(json.dumps(Webhook(sys.argv[1]).verify(sys.stdin.buffer.read(), \
        json.loads(sys.argv[2]))))\n\
        except Exception as error:\n    print(repr(error), file=sys.stderr); sys.exit(3)\n";
    let python = common::service_var("ATELIER_TEST_COG_PYTHON", "standardwebhooks (Python)")?;
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            SCRIPT,
            secret,
            &serde_json::to_string(&received.headers).unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&received.body)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    match output.status.code() {
        Some(0) => Some(Some(serde_json::from_slice(&output.stdout).unwrap())),
        Some(3) => Some(None),
        other => panic!("the standardwebhooks check could not run: {other:?}"),
    }
}

async fn register(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/webhook-endpoints/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn endpoints_are_registered_listed_and_deleted_per_account(url: String) {
    let app = TestApp::builder(&url)
        .configure(|settings| settings.webhooks.max_endpoints_per_account = 2)
        .spawn()
        .await;
    let (_, key) = app.create_account().await;
    let (_, other) = app.create_account().await;
    let created = register(&app, &key, &json!({"url": "https://hooks.example.com/a"})).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(
        created["events"],
        json!(["generation.settled", "generation.released"])
    );
    let id = created["id"].as_str().unwrap();
    let only = json!({"url": "https://hooks.example.com/b", "events": ["generation.released"]});
    let second: Value = register(&app, &key, &only).await.json().await.unwrap();
    assert_eq!(second["events"], json!(["generation.released"]));

    // Refused with 422, nothing written: bad events, private or plain destinations.
    let long = format!("https://hooks.example.com/{}", "x".repeat(2100));
    for (body, code) in [
        (
            json!({"url": "https://h.example.com", "events": ["generation.started"]}),
            "invalid_events",
        ),
        (
            json!({"url": "https://h.example.com", "events": []}),
            "invalid_events",
        ),
        (json!({"url": "http://127.0.0.1:9/hook"}), "invalid_url"),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data"}),
            "invalid_url",
        ),
        (json!({"url": "https://localhost/hook"}), "invalid_url"),
        (
            json!({"url": "http://hooks.example.com/plain"}),
            "invalid_url",
        ),
        (json!({"url": long}), "invalid_url"),
        (
            json!({"url": "https://h.example.com", "extra": 1}),
            "invalid_body",
        ),
    ] {
        let response = register(&app, &other, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let got = error_code(response, 422).await;
        if code != "invalid_body" {
            assert_eq!(got, code, "{body}");
        }
    }
    // The limit counts live endpoints.
    let third = register(&app, &key, &json!({"url": "https://hooks.example.com/c"})).await;
    assert_eq!(error_code(third, 409).await, "too_many_endpoints");

    let listed = app.get_json("/v1/webhook-endpoints", &key).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items.iter().all(|item| item.get("secret").is_none()),
        "{listed}"
    );
    let empty = app.get_json("/v1/webhook-endpoints", &other).await;
    assert_eq!(empty["items"], json!([]));

    // Another account's endpoint is not found, whatever is asked of it.
    let path = format!("/v1/webhook-endpoints/{id}");
    for response in [
        app.get(&path, &other).await,
        app.get(&format!("{path}/deliveries"), &other).await,
        delete(&app, &other, id).await,
    ] {
        assert_eq!(
            error_code(response, 404).await,
            "webhook_endpoint_not_found"
        );
    }
    let deliveries = app.get_json(&format!("{path}/deliveries"), &key).await;
    assert_eq!(deliveries["items"], json!([]));
    let bad_query = app
        .get(&format!("{path}/deliveries?state=failed"), &key)
        .await;
    assert_eq!(error_code(bad_query, 422).await, "unknown_parameter");

    assert_eq!(delete(&app, &key, id).await.status(), 204);
    assert_eq!(
        error_code(delete(&app, &key, id).await, 404).await,
        "webhook_endpoint_not_found"
    );
    assert_eq!(
        error_code(app.get(&path, &key).await, 404).await,
        "webhook_endpoint_not_found"
    );
    let listed = app.get_json("/v1/webhook-endpoints", &key).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let again = register(&app, &key, &json!({"url": "https://hooks.example.com/c"})).await;
    assert_eq!(again.status(), 201);
}

/// An app with the engine whose webhooks may reach the loopback test server, quickly retried;
/// its simulator takes a second, so that a cancel right after the create wins.
async fn engine_app(url: &str) -> TestApp {
    TestApp::builder(url)
        .engine(|settings| {
            settings.simulator.delay_ms = 1000;
            settings.webhooks.allowed_hosts = vec!["127.0.0.1".into()];
            settings.webhooks.poll_interval_ms = 50;
            settings.webhooks.retry_min_ms = 100;
        })
        .spawn()
        .await
}

async fn deliveries(app: &TestApp, key: &str, endpoint: &str) -> Vec<Value> {
    let page = app
        .get_json(&format!("/v1/webhook-endpoints/{endpoint}/deliveries"), key)
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn deliveries_are_signed_and_retried_under_one_webhook_id(url: String) {
    let receiver = Receiver::start(2);
    let app = engine_app(&url).await;
    let (_, key) = app.funded_account(5).await;
    let endpoint: Value = register(&app, &key, &json!({"url": receiver.url}))
        .await
        .json()
        .await
        .unwrap();
    let (endpoint_id, secret) = (
        endpoint["id"].as_str().unwrap(),
        endpoint["secret"].as_str().unwrap(),
    );
    let released_only =
        json!({"url": format!("{}?released", receiver.url), "events": ["generation.released"]});
    let released_only: Value = register(&app, &key, &released_only)
        .await
        .json()
        .await
        .unwrap();

    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_eq!(done["state"], "settled");

    // Two 500s, then accepted: three attempts, one webhook-id, each signed.
    let received = receiver.wait_for(3).await;
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert!(ids.iter().all(|seen| *seen == ids[0]), "{ids:?}");
    assert!(ids[0].starts_with("msg_"));
    for attempt in &received {
        assert!(
            verifies(secret, attempt),
            "signature does not verify: {attempt:?}"
        );
        assert_eq!(
            attempt.body, received[0].body,
            "every retry sends the same body"
        );
        let mut tampered = attempt.clone();
        tampered.body.push(b' ');
        assert!(!verifies(secret, &tampered));
    }
    if let Some(verified) = official_verify(secret, &received[0]) {
        assert_eq!(
            verified,
            Some(serde_json::from_slice(&received[0].body).unwrap())
        );
        let mut tampered = received[0].clone();
        tampered.body.push(b' ');
        assert_eq!(official_verify(secret, &tampered), Some(None));
    }
    let event: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(event["type"], "generation.settled");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["state"], "settled");
    assert_eq!(event["data"]["charged"], done["charged"]);
    assert!(
        event["data"].get("result_url").is_none(),
        "no expiring URL in the outbox"
    );

    let delivered = common::wait_for("the delivery recorded", WITHIN, || async {
        let found = deliveries(&app, &key, endpoint_id).await;
        match found.first() {
            Some(delivery) if delivery["state"] == "delivered" => Ok(delivery.clone()),
            _ => Err(found),
        }
    })
    .await;
    assert_eq!(delivered["id"], ids[0]);
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(delivered["last_status"], 204);
    assert_eq!(delivered["generation_id"], id.as_str());
    // The endpoint that wants only releases heard nothing of a settle.
    let other = released_only["id"].as_str().unwrap();
    assert!(deliveries(&app, &key, other).await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        3,
        "nothing more is sent once accepted"
    );

    // A canceled generation is `generation.released` to both endpoints.
    let canceled = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_empty(&format!("/v1/generations/{canceled}/cancel"), &key)
        .await;
    let received = receiver.wait_for(5).await;
    let released: Vec<Value> = received[3..]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    for event in &released {
        assert_eq!(event["type"], "generation.released", "{event}");
        assert_eq!(event["data"]["error"]["code"], "canceled");
        assert_eq!(event["data"]["charged"], 0);
    }
    common::assert_verify_passes(&url, &app.state.settings.data_dir);
}

async fn private_destinations_are_refused_when_connecting(url: String) {
    let receiver = Receiver::start(0);
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Registered while an operator allowed them...
    let (key, endpoints) = {
        let app = TestApp::builder(&url)
            .configure(|settings| {
                settings.webhooks.allowed_hosts =
                    vec!["localhost".into(), "169.254.169.254".into()];
            })
            .spawn()
            .await;
        let (_, key) = app.funded_account(3).await;
        let mut endpoints = Vec::new();
        for target in [
            format!("http://localhost:{port}/hook"),
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ] {
            let created = register(&app, &key, &json!({"url": target})).await;
            assert_eq!(created.status(), 201);
            let created: Value = created.json().await.unwrap();
            endpoints.push(created["id"].as_str().unwrap().to_owned());
        }
        (key, endpoints)
    };
    // ...and sent once they no longer are: localhost resolves to 127.0.0.1, refused when
    // connecting; the metadata address is refused before anything is sent.
    let app = TestApp::builder(&url)
        .engine(|settings| {
            settings.webhooks.poll_interval_ms = 50;
            settings.webhooks.retry_min_ms = 100;
        })
        .spawn()
        .await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_terminal(&key, &id, WITHIN).await;
    for endpoint in &endpoints {
        let refused = common::wait_for("a refused attempt", WITHIN, || async {
            let found = deliveries(&app, &key, endpoint).await;
            match found.first() {
                Some(delivery) if delivery["attempts"].as_i64() >= Some(2) => Ok(delivery.clone()),
                _ => Err(found),
            }
        })
        .await;
        let error = refused["last_error"].as_str().unwrap();
        assert!(
            error.starts_with("refused:") && error.contains("not"),
            "{refused}"
        );
        assert_eq!(
            refused["state"], "pending",
            "refusals are retried until max_age"
        );
    }
    assert!(
        receiver.received().is_empty(),
        "the loopback server was reached"
    );
}

fn start_binary(url: &str, port: u16, data_dir: &std::path::Path, poll_ms: u64) -> KillOnDrop {
    let child = atelier_command(url)
        .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
        .env("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ATELIER_DATA_DIR", data_dir)
        .env("ATELIER_SIMULATOR__DELAY_MS", "50")
        .env("ATELIER_WEBHOOKS__ALLOWED_HOSTS", "[\"127.0.0.1\"]")
        .env("ATELIER_WEBHOOKS__POLL_INTERVAL_MS", poll_ms.to_string())
        // A claim lapses 5 s after the attempt's timeout.
        .env("ATELIER_WEBHOOKS__REQUEST_TIMEOUT_SECS", "2")
        .stdout(Stdio::null())
        .spawn()
        .expect("start atelier");
    KillOnDrop(child)
}

const CRASH_GENERATIONS: usize = 3;

/// Registers `url` on the real binary at `base`: the endpoint, with its secret.
async fn remote_endpoint(client: &reqwest::Client, base: &str, key: &str, url: &str) -> Value {
    let response = client
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn a_sigkill_between_the_terminal_commit_and_the_delivery_loses_nothing(url: String) {
    let receiver = Receiver::start(0);
    let data_dir = std::env::temp_dir().join(format!("atelier-hooks-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // The sender looks once at start, then not for ten minutes: every delivery stays in the
    // outbox, committed with its transition, until the kill.
    let mut child = start_binary(&url, port, &data_dir, 600_000);
    wait_ready(&client, &base, &mut child).await;
    let (_, key) = remote_account(&client, &base, 10, "hooks-crash").await;
    let endpoint = remote_endpoint(&client, &base, &key, &receiver.url).await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    for _ in 0..CRASH_GENERATIONS {
        let response = client
            .post(format!("{base}/v1/generations"))
            .bearer_auth(&key)
            .json(&generation_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let path = format!("/v1/webhook-endpoints/{endpoint_id}/deliveries");
    common::wait_for("every delivery in the outbox", WITHIN, || async {
        let page = remote_get(&client, &base, &path, &key).await;
        let items = page["items"].as_array().unwrap().clone();
        let untouched = items
            .iter()
            .all(|d| d["state"] == "pending" && d["attempts"] == 0);
        if items.len() == CRASH_GENERATIONS && untouched {
            Ok(())
        } else {
            Err(page)
        }
    })
    .await;
    assert!(receiver.received().is_empty());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut child = start_binary(&url, port, &data_dir, 50);
    wait_ready(&client, &base, &mut child).await;
    let received = receiver.wait_for(CRASH_GENERATIONS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_after = receiver.received();
    assert_eq!(
        received_after.len(),
        received.len(),
        "sent again after acceptance"
    );
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for request in &received_after {
        *per_id
            .entry(request.headers["webhook-id"].clone())
            .or_default() += 1;
        assert!(verifies(endpoint["secret"].as_str().unwrap(), request));
    }
    assert_eq!(per_id.len(), CRASH_GENERATIONS, "{per_id:?}");
    assert!(per_id.values().all(|count| *count == 1), "{per_id:?}");
    let page = remote_get(&client, &base, &path, &key).await;
    for delivery in page["items"].as_array().unwrap() {
        assert!(per_id.contains_key(delivery["id"].as_str().unwrap()));
    }
    let delete = client
        .delete(format!("{base}/v1/webhook-endpoints/{endpoint_id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);

    let mut child = killed_mid_send(&client, &url, (port, &data_dir), &key, child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    common::assert_verify_passes(&url, &data_dir);
    std::fs::remove_dir_all(&data_dir).ok();
}

/// The outbox is written by every terminal transition, a cancel's too; `verify` notices a
/// delivery that went missing and one for a workflow that has not ended.
async fn verify_reports_a_lost_and_an_invented_delivery(url: String) {
    use atelier_entities::webhook_delivery;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};

    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(5).await;
    let endpoint: Value = register(&app, &key, &json!({"url": "https://hooks.example.com/x"}))
        .await
        .json()
        .await
        .unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let canceled = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .post_empty(&format!("/v1/generations/{canceled}/cancel"), &key)
        .await;
    assert_eq!(response.status(), 200);
    let written = deliveries(&app, &key, endpoint_id).await;
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["generation_id"], canceled.as_str());
    assert_eq!(written[0]["event_type"], "generation.released");
    assert_eq!(
        (
            written[0]["state"].as_str(),
            written[0]["attempts"].as_i64()
        ),
        (Some("pending"), Some(0))
    );
    let data_dir = &app.state.settings.data_dir;
    common::assert_verify_passes(&url, data_dir);

    // Lost: the canceled generation's delivery goes. Invented: a copy now names the live one.
    let row = webhook_delivery::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    webhook_delivery::Entity::delete_by_id(row.id)
        .exec(&app.state.db)
        .await
        .unwrap();
    let mut invented = row.clone().into_active_model();
    invented.id = sea_orm::ActiveValue::Set(uuid::Uuid::now_v7());
    invented.workflow_id = sea_orm::ActiveValue::Set(live.parse().unwrap());
    invented.insert(&app.state.db).await.unwrap();
    let verify = atelier_command(&url)
        .env("ATELIER_DATA_DIR", data_dir)
        .arg("verify")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(2), "{report}");
    assert!(
        report.contains(&format!("invariant 9 violated by workflow {canceled}")),
        "{report}"
    );
    assert!(
        report.contains("invariant 9 violated by webhook delivery"),
        "{report}"
    );
    assert!(
        report.contains(&format!("for workflow {live}, which is reserved")),
        "{report}"
    );
}

/// SIGKILLed while its attempt waits for the endpoint's answer: the next process sends the
/// delivery again when the claim lapses, under the same `webhook-id` (delivery is at least
/// once; a receiver deduplicates by the id). Returns the process it left running.
async fn killed_mid_send(
    client: &reqwest::Client,
    url: &str,
    (port, data_dir): (u16, &std::path::Path),
    key: &str,
    mut child: KillOnDrop,
) -> KillOnDrop {
    let base = format!("http://127.0.0.1:{port}");
    let receiver = Receiver::hanging(1, 0);
    let endpoint = remote_endpoint(client, &base, key, &receiver.url).await;
    let created = client
        .post(format!("{base}/v1/generations"))
        .bearer_auth(key)
        .json(&generation_body())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    receiver.wait_for(1).await;
    child.kill().unwrap(); // SIGKILL, the attempt unanswered
    child.wait().unwrap();
    let mut child = start_binary(url, port, data_dir, 50);
    wait_ready(client, &base, &mut child).await;
    let received = receiver.wait_for(2).await;
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(ids[0], ids[1], "a resent delivery keeps its webhook-id");
    let path = format!(
        "/v1/webhook-endpoints/{}/deliveries",
        endpoint["id"].as_str().unwrap()
    );
    let delivered = common::wait_for("the resent delivery recorded", WITHIN, || async {
        let page = remote_get(client, &base, &path, key).await;
        match page["items"].as_array().unwrap().first() {
            Some(delivery) if delivery["state"] == "delivered" => Ok(delivery.clone()),
            _ => Err(page),
        }
    })
    .await;
    assert_eq!(delivered["id"], ids[0]);
    assert_eq!(delivered["attempts"], 2, "the cut attempt counts");
    child
}
