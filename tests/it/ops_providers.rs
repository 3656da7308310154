//! `GET /v1/ops/providers` and `POST /v1/ops/providers/{name}/pause|resume` over real HTTP:
//! the document of a provider that had calls; a pause fails new work over along the chain,
//! or makes it wait until the resume, the timeline saying why; a pause survives a restart;
//! each action is audited first; only the admin token may act.
use std::time::Duration;

use atelier::config::Settings;
use atelier_actors::providers::config::ProviderConfig;
use serde_json::{Value, json};

use crate::common::{self, ADMIN_TOKEN, TestApp, error_code};

database_tests!(
    the_document_shows_a_provider_that_had_calls,
    a_throttling_provider_shows_its_429s_and_last_error,
    a_pause_fails_over_along_the_chain_and_the_timeline_says_why,
    a_pause_with_nowhere_to_go_waits_until_the_resume,
    a_pause_survives_a_restart,
    only_the_admin_token_pauses_and_bad_requests_write_nothing,
);

const READ_TOKEN: &str = "test-ops-read-token-0123456789";

/// The simulator, and a second provider `sim2` served by it too, in the chain after it;
/// quick retries, so that a resume is seen soon.
fn two_simulators(settings: &mut Settings) {
    let mut second = ProviderConfig::costing(1);
    second.adapter = Some("simulator".into());
    settings.providers.by_name.insert("sim2".into(), second);
    settings.providers.chain = vec!["simulator".into(), "sim2".into()];
    quick(settings);
}

fn quick(settings: &mut Settings) {
    settings.workflow.backoff_min_ms = 50;
    settings.workflow.backoff_max_ms = 200;
    settings.ops_read_token = Some(READ_TOKEN.into());
}

async fn providers(app: &TestApp, token: &str) -> Vec<Value> {
    let document = app.get_json("/v1/ops/providers", token).await;
    document["items"].as_array().unwrap().clone()
}

async fn provider(app: &TestApp, name: &str) -> Value {
    let items = providers(app, ADMIN_TOKEN).await;
    items
        .into_iter()
        .find(|item| item["name"] == name)
        .expect("listed")
}

async fn pause(app: &TestApp, name: &str, reason: &str) -> Value {
    let path = format!("/v1/ops/providers/{name}/pause");
    let response = app.admin_post(&path, &json!({ "reason": reason })).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn resume(app: &TestApp, name: &str) -> Value {
    let path = format!("/v1/ops/providers/{name}/resume");
    let response = app.admin_post(&path, &json!({})).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn reasons(app: &TestApp, key: &str, id: &str) -> Vec<String> {
    let timeline = app.timeline(key, id).await;
    timeline.into_iter().map(|(_, _, reason)| reason).collect()
}

async fn audit(app: &TestApp) -> Vec<Value> {
    let page = app
        .get_json("/v1/ops/audit?target_kind=provider", ADMIN_TOKEN)
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn the_document_shows_a_provider_that_had_calls(url: String) {
    let app = TestApp::builder(&url).engine(two_simulators).spawn().await;
    let (_, key) = app.funded_account(2).await;
    for _ in 0..2 {
        let id = app.create_generation(&key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let settled = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
        assert_eq!(settled["state"], "settled");
    }
    let items = providers(&app, READ_TOKEN).await;
    let names: Vec<&str> = items
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sim2", "simulator"]);
    let simulator = &items[1];
    assert_eq!(simulator["adapter"], "simulator");
    assert_eq!(simulator["cost"], 1);
    assert_eq!(simulator["chain_position"], 0);
    assert_eq!(simulator["circuit"], "closed");
    assert!(simulator["circuit_since"].is_string());
    assert_eq!(simulator["in_flight"], 0);
    assert_eq!(simulator["max_concurrency"], 64);
    assert_eq!(simulator["requests_per_second"], Value::Null);
    assert_eq!(simulator["paused"], Value::Null);
    assert_eq!(simulator["credits_charged"], 2);
    assert_eq!(simulator["last_error"], Value::Null);
    for window in ["last_5m", "last_60m"] {
        let calls = &simulator[window];
        assert_eq!(calls["calls"], 2, "{window}: two submissions");
        assert_eq!(calls["errors"], 0);
        assert_eq!(calls["throttled"], 0);
        assert_eq!(calls["error_rate"], 0.0);
        assert!(calls["p50_ms"].as_u64().is_some(), "{calls}");
        assert!(
            calls["p95_ms"].as_u64() >= calls["p50_ms"].as_u64(),
            "{calls}"
        );
    }
    let idle = &items[0];
    assert_eq!(idle["last_5m"]["calls"], 0);
    assert_eq!(idle["last_5m"]["p50_ms"], Value::Null);
    assert_eq!(idle["credits_charged"], 0);
}

async fn a_throttling_provider_shows_its_429s_and_last_error(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| {
            settings.simulator.rate_limited = true;
            quick(settings);
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(1).await;
    app.create_generation(&key).await;
    let simulator = common::wait_for("a 429 counted", Duration::from_secs(10), || async {
        let simulator = provider(&app, "simulator").await;
        match simulator["last_5m"]["throttled"].as_u64() {
            Some(1..) => Ok(simulator),
            _ => Err(simulator),
        }
    })
    .await;
    assert_eq!(simulator["last_5m"]["error_rate"], 1.0, "{simulator}");
    let error = simulator["last_error"]["message"].as_str().unwrap();
    assert!(error.contains("rate limited"), "{error}");
    assert!(error.chars().count() <= 201, "{error}");
    assert!(simulator["last_error"]["at"].is_string());
}

async fn a_pause_fails_over_along_the_chain_and_the_timeline_says_why(url: String) {
    let app = TestApp::builder(&url).engine(two_simulators).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let paused = pause(&app, "simulator", "outage at the provider").await;
    assert_eq!(paused["name"], "simulator");
    assert_eq!(paused["paused"]["reason"], "outage at the provider");
    assert!(paused["paused"]["paused_at"].is_string());
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let settled = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(settled["state"], "settled", "{settled}");
    assert_eq!(settled["provider"], "sim2");
    let reasons = reasons(&app, &key, &id).await;
    assert!(
        reasons.contains(&"simulator paused by an operator; failing over to sim2".to_owned()),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|reason| reason.contains("outage")),
        "the operator's reason stays out of the client's timeline: {reasons:?}"
    );
    assert_eq!(
        provider(&app, "simulator").await["last_5m"]["calls"],
        0,
        "the paused provider had no call"
    );
    let rows = audit(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "provider.pause");
    assert_eq!(rows[0]["target_id"], "simulator");
    assert_eq!(rows[0]["reason"], "outage at the provider");
    assert_eq!(rows[0]["source"], "127.0.0.1");
}

async fn a_pause_with_nowhere_to_go_waits_until_the_resume(url: String) {
    let app = TestApp::builder(&url).engine(quick).spawn().await;
    let (_, key) = app.funded_account(1).await;
    pause(&app, "simulator", "maintenance").await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = "simulator paused by an operator; waiting for a resume or another provider";
    common::wait_for(
        "the wait in the timeline",
        Duration::from_secs(10),
        || async {
            let reasons = reasons(&app, &key, &id).await;
            if reasons.iter().any(|reason| reason == waiting) {
                Ok(())
            } else {
                Err(reasons)
            }
        },
    )
    .await;
    // Looked at again and again, the wait is said once and uses no attempts.
    let first = crate::providers::row(&app, &id).await;
    let mut seen = first.updated_at;
    for _ in 0..2 {
        seen = common::wait_for("another look", Duration::from_secs(5), || async {
            let row = crate::providers::row(&app, &id).await;
            if row.updated_at > seen {
                Ok(row.updated_at)
            } else {
                Err(row.updated_at)
            }
        })
        .await;
    }
    let row = crate::providers::row(&app, &id).await;
    assert_eq!(row.attempt, first.attempt);
    assert_eq!(
        row.state,
        atelier_entities::workflow::WorkflowState::Reserved
    );
    let waits = reasons(&app, &key, &id)
        .await
        .into_iter()
        .filter(|reason| reason == waiting)
        .count();
    assert_eq!(waits, 1);
    let resumed = resume(&app, "simulator").await;
    assert_eq!(resumed["paused"], Value::Null);
    let settled = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(settled["state"], "settled", "{settled}");
    assert_eq!(settled["provider"], "simulator");
    let actions: Vec<&str> = Vec::new();
    let rows = audit(&app).await;
    let mut actions = actions;
    actions.extend(rows.iter().map(|row| row["action"].as_str().unwrap()));
    assert_eq!(
        actions,
        ["provider.resume", "provider.pause"],
        "newest first"
    );
}

async fn a_pause_survives_a_restart(url: String) {
    {
        let app = TestApp::builder(&url).spawn().await;
        pause(&app, "simulator", "drain before the upgrade").await;
    }
    let app = TestApp::builder(&url).engine(quick).spawn().await;
    let simulator = provider(&app, "simulator").await;
    assert_eq!(simulator["paused"]["reason"], "drain before the upgrade");
    let (_, key) = app.funded_account(1).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::wait_for(
        "the restarted engine to wait",
        Duration::from_secs(10),
        || async {
            let reasons = reasons(&app, &key, &id).await;
            if reasons
                .iter()
                .any(|reason| reason.starts_with("simulator paused by an operator"))
            {
                Ok(())
            } else {
                Err(reasons)
            }
        },
    )
    .await;
    resume(&app, "simulator").await;
    let settled = app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
    assert_eq!(settled["state"], "settled", "{settled}");
}

/// The pause route of the simulator, that the refusals below aim at.
const PAUSE_SIMULATOR: &str = "/v1/ops/providers/simulator/pause";

/// POSTs `body` to `path`, as `token` when there is one.
async fn post_as(app: &TestApp, token: Option<&str>, path: &str, body: Value) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// No token, a client key and the read-only token are each refused a pause; the read-only
/// token a resume too.
async fn assert_only_the_admin_may_act(app: &TestApp, key: &str) {
    let body = json!({ "reason": "outage" });
    let response = post_as(app, None, PAUSE_SIMULATOR, body.clone()).await;
    assert_eq!(error_code(response, 401).await, "missing_credentials");
    let response = post_as(app, Some(key), PAUSE_SIMULATOR, body.clone()).await;
    assert_eq!(error_code(response, 403).await, "forbidden");
    let response = post_as(app, Some(READ_TOKEN), PAUSE_SIMULATOR, body.clone()).await;
    assert_eq!(error_code(response, 403).await, "read_only");
    let resume = "/v1/ops/providers/simulator/resume";
    let response = post_as(app, Some(READ_TOKEN), resume, json!({})).await;
    assert_eq!(error_code(response, 403).await, "read_only");
}

/// The admin's bad requests are refused: an unknown provider, a missing or too long reason,
/// an unknown field.
async fn assert_bad_requests_refused(app: &TestApp) {
    let admin = Some(ADMIN_TOKEN);
    let body = json!({ "reason": "outage" });
    let response = post_as(app, admin, "/v1/ops/providers/nosuch/pause", body).await;
    assert_eq!(error_code(response, 404).await, "provider_not_found");
    let response = post_as(app, admin, PAUSE_SIMULATOR, json!({})).await;
    assert_eq!(error_code(response, 422).await, "missing_reason");
    let long = json!({ "reason": "x".repeat(1001) });
    let response = post_as(app, admin, PAUSE_SIMULATOR, long).await;
    assert_eq!(error_code(response, 422).await, "invalid_reason");
    let unknown = json!({ "reason": "a", "why": 1 });
    let response = post_as(app, admin, PAUSE_SIMULATOR, unknown).await;
    assert_eq!(error_code(response, 422).await, "unknown_field");
}

/// Reads: a client key gets 403, no token 401.
async fn assert_reads_want_an_operator(app: &TestApp, key: &str) {
    let response = app.get("/v1/ops/providers", key).await;
    assert_eq!(error_code(response, 403).await, "forbidden");
    let response = app
        .client
        .get(app.url("/v1/ops/providers"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response, 401).await, "missing_credentials");
}

async fn only_the_admin_token_pauses_and_bad_requests_write_nothing(url: String) {
    let app = TestApp::builder(&url).configure(quick).spawn().await;
    let (_, key) = app.create_account().await;
    assert_only_the_admin_may_act(&app, &key).await;
    assert_bad_requests_refused(&app).await;
    assert_reads_want_an_operator(&app, &key).await;
    assert!(
        audit(&app).await.is_empty(),
        "refused requests are not audited"
    );
    assert_eq!(provider(&app, "simulator").await["paused"], Value::Null);
}
