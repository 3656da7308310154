//! The ops API's accounts, summary and verify over real HTTP, on both databases: search and
//! an account's page, the idempotent grant, disable and enable, key revocation and a new key,
//! voiding a grant's remainder, the summary's numbers, the verify endpoint on sound and broken
//! books, the audit rows of every action, who may call what; and the `accounts list` and
//! `grants list` commands of the real binary.
use std::time::Duration;

use chrono::Duration as Span;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::common::{
    ADMIN_TOKEN, TestApp, assert_verify_passes, atelier_command, error_code, wait_for,
};

const READ_TOKEN: &str = "ops-read-token-0123456789";

async fn ops_app(url: &str) -> TestApp {
    TestApp::builder(url)
        .configure(|settings| settings.ops_read_token = Some(READ_TOKEN.into()))
        .spawn()
        .await
}

impl TestApp {
    async fn admin_ops_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.admin_post(path, body).await
    }

    async fn admin_ops_get(&self, path: &str) -> Value {
        self.get_json(path, ADMIN_TOKEN).await
    }

    async fn named_account(&self, name: &str) -> (String, String) {
        let response = self
            .admin_post("/v1/accounts", &json!({"name": name}))
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    /// The audit rows of `action`, newest first.
    async fn audit_rows(&self, action: &str) -> Vec<Value> {
        let page = self
            .admin_ops_get(&format!("/v1/ops/audit?action={action}&limit=200"))
            .await;
        page["items"].as_array().unwrap().clone()
    }

    async fn summary(&self, query: &str) -> Value {
        self.admin_ops_get(&format!("/v1/ops/summary{query}")).await
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn search_finds_by_name_id_and_prefix(url: String) {
    let app = ops_app(&url).await;
    let (alice, _) = app.named_account("Alice Studio").await;
    let (bob, _) = app.named_account("bob").await;
    let (nameless, _) = app.create_account().await;
    let found = app.admin_ops_get("/v1/ops/accounts?query=aLiCe").await;
    assert_eq!(ids(&found), [alice.as_str()]);
    assert_eq!(found["items"][0]["name"], "Alice Studio");
    assert_eq!(found["items"][0]["disabled"], false);
    let by_id = app
        .admin_ops_get(&format!("/v1/ops/accounts?query={bob}"))
        .await;
    assert_eq!(ids(&by_id), [bob.as_str()]);
    let prefix = &nameless[..nameless.len() - 3];
    let by_prefix = app
        .admin_ops_get(&format!("/v1/ops/accounts?query={prefix}"))
        .await;
    assert!(ids(&by_prefix).contains(&nameless), "{by_prefix}");
    // A name piece with LIKE's wildcards matches them literally.
    let literal = app.admin_ops_get("/v1/ops/accounts?query=%25").await;
    assert_eq!(ids(&literal), Vec::<String>::new());

    // Newest first, a page at a time.
    let first = app.admin_ops_get("/v1/ops/accounts?limit=2").await;
    assert_eq!(ids(&first), [nameless.clone(), bob.clone()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .admin_ops_get(&format!("/v1/ops/accounts?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), [alice]);
    assert_eq!(second["next_cursor"], Value::Null);

    let long = "x".repeat(201);
    for (query, code) in [
        ("query=", "invalid_query"),
        ("query=%20", "invalid_query"),
        (&format!("query={long}") as &str, "invalid_query"),
        ("limit=0", "invalid_limit"),
        ("cursor=nope", "invalid_cursor"),
        ("q=alice", "unknown_parameter"),
    ] {
        let response = app
            .get(&format!("/v1/ops/accounts?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(error_code(response, 422).await, code, "{query}");
    }
}

async fn an_accounts_page_shows_packages_in_consumption_order(url: String) {
    let app = ops_app(&url).await;
    let (id, key) = app.named_account("studio").await;
    let later = (chrono::Utc::now() + Span::days(30)).to_rfc3339();
    let sooner = (chrono::Utc::now() + Span::days(1)).to_rfc3339();
    for (reference, expires_at) in [
        ("never", Value::Null),
        ("later", json!(later)),
        ("sooner", json!(sooner)),
    ] {
        let body = json!({"credits": 2, "reference": reference, "expires_at": expires_at});
        assert_eq!(app.grant(&id, &body).await.status(), 201);
    }
    let generation = app.create_generation(&key).await;
    let page = app.admin_ops_get(&format!("/v1/ops/accounts/{id}")).await;
    assert_eq!(
        (page["id"].as_str(), page["name"].as_str()),
        (Some(&id[..]), Some("studio"))
    );
    assert_eq!(
        (page["available"].as_i64(), page["held"].as_i64()),
        (Some(5), Some(1))
    );
    let order: Vec<&str> = page["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| package["reference"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["sooner", "later", "never"]);
    assert_eq!(page["packages"][0]["held"], 1);
    assert_eq!(page["open_holds"].as_array().unwrap().len(), 1);
    assert_eq!(page["open_holds"][0]["generation_id"], generation["id"]);
    assert_eq!(page["recent_generations"][0]["id"], generation["id"]);
    assert_eq!(page["recent_generations"][0]["state"], "reserved");
    let kinds: Vec<&str> = page["recent_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["hold", "grant", "grant", "grant"]);
    assert_eq!(page["live_keys"], 1);
    let listed = app
        .admin_ops_get(&format!("/v1/ops/accounts?query={id}"))
        .await;
    assert_eq!(
        (
            listed["items"][0]["available"].as_i64(),
            listed["items"][0]["held"].as_i64()
        ),
        (Some(5), Some(1))
    );
    for missing in ["0192abcd-0000-7000-8000-000000000001", "not-an-id"] {
        let response = app
            .get(&format!("/v1/ops/accounts/{missing}"), ADMIN_TOKEN)
            .await;
        assert_eq!(error_code(response, 404).await, "account_not_found");
    }
}

async fn the_ops_grant_is_the_idempotent_grant_and_audited(url: String) {
    let app = ops_app(&url).await;
    let (id, key) = app.create_account().await;
    let path = format!("/v1/ops/accounts/{id}/grants");
    let body = json!({"credits": 7, "reference": "order-1"});
    let created = app.admin_ops_post(&path, &body).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let again = app.admin_ops_post(&path, &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], created["id"]);
    let conflict = app
        .admin_ops_post(&path, &json!({"credits": 8, "reference": "order-1"}))
        .await;
    assert_eq!(error_code(conflict, 409).await, "reference_conflict");
    assert_eq!(app.balance(&key).await["available"], 7);
    // Refused input and unknown accounts write nothing, not even an audit row.
    let bad = app
        .admin_ops_post(&path, &json!({"credits": 0, "reference": "x"}))
        .await;
    assert_eq!(error_code(bad, 422).await, "invalid_credits");
    let unknown = app
        .admin_ops_post(
            "/v1/ops/accounts/0192abcd-0000-7000-8000-000000000001/grants",
            &body,
        )
        .await;
    assert_eq!(error_code(unknown, 404).await, "account_not_found");
    let rows = app.audit_rows("account.grant").await;
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|row| row["target_kind"] == "account" && row["target_id"] == id.as_str())
    );
}

/// Client routes a disabled account's key is refused on (method, path).
fn client_routes(generation: &str) -> Vec<(reqwest::Method, String)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/v1/balance".into()),
        (Method::GET, "/v1/ledger".into()),
        (Method::GET, "/v1/generations".into()),
        (Method::POST, "/v1/generations".into()),
        (Method::GET, format!("/v1/generations/{generation}")),
        (Method::POST, format!("/v1/generations/{generation}/cancel")),
        (Method::GET, "/v1/api-keys".into()),
        (Method::GET, "/v1/uploads".into()),
        (Method::GET, "/v1/webhook-endpoints".into()),
    ]
}

async fn status_of(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method.clone(), app.url(path))
        .bearer_auth(key);
    if method == reqwest::Method::POST {
        request = request.json(&crate::common::generation_body());
    }
    request.send().await.unwrap()
}

/// A disable without a reason is refused; with one it disables the account while its
/// generation is still live.
async fn assert_a_disable_with_a_reason(app: &TestApp, id: &str, disable: &str) {
    let missing = app.admin_ops_post(disable, &json!({})).await;
    assert_eq!(error_code(missing, 422).await, "missing_reason");
    let disabled = app
        .admin_ops_post(disable, &json!({"reason": "chargeback"}))
        .await;
    assert_eq!(disabled.status(), 200);
    let disabled: Value = disabled.json().await.unwrap();
    assert_eq!(
        (
            disabled["disabled"].as_bool(),
            disabled["disabled_reason"].as_str()
        ),
        (Some(true), Some("chargeback"))
    );
    let page = app.admin_ops_get(&format!("/v1/ops/accounts/{id}")).await;
    assert_ne!(
        page["recent_generations"][0]["state"], "settled",
        "disabled while live"
    );
}

/// The disabled account's key is refused, `account_disabled`, on every client route.
async fn assert_every_client_route_refused(app: &TestApp, generation: &str, key: &str) {
    for (method, path) in client_routes(generation) {
        let response = status_of(app, method.clone(), &path, key).await;
        assert_eq!(
            error_code(response, 403).await,
            "account_disabled",
            "{method} {path}"
        );
    }
}

/// The engine does not care: the live generation settles, and the summary counts it.
async fn assert_it_settles_and_is_counted(app: &TestApp, id: &str) {
    let path = format!("/v1/ops/accounts/{id}");
    wait_for(
        "the generation settles",
        Duration::from_secs(20),
        || async {
            let page = app.admin_ops_get(&path).await;
            match page["recent_generations"][0]["state"].as_str() {
                Some("settled") => Ok(()),
                _ => Err(page["recent_generations"].clone()),
            }
        },
    )
    .await;
    let summary = app.summary("").await;
    assert_eq!(summary["states"]["settled"], 1);
    let settled: i64 = summary["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hour| hour["settled"].as_i64().unwrap())
        .sum();
    assert_eq!(settled, 1);
    assert_eq!(summary["ledger"]["consumed"], 1);
    assert_eq!(summary["ledger"]["granted"], 5);
}

/// An enable lets the key in again, to what the settle left; a second enable is refused.
async fn assert_an_enable_once(app: &TestApp, id: &str, key: &str) {
    let enabled = app
        .admin_ops_post(&format!("/v1/ops/accounts/{id}/enable"), &json!({}))
        .await;
    assert_eq!(enabled.status(), 200);
    assert_eq!(enabled.json::<Value>().await.unwrap()["disabled"], false);
    assert_eq!(app.balance(key).await["available"], 4);
    let twice = app
        .admin_ops_post(&format!("/v1/ops/accounts/{id}/enable"), &json!({}))
        .await;
    assert_eq!(error_code(twice, 409).await, "not_disabled");
}

async fn a_disabled_account_is_refused_and_its_generation_finishes(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.delay_ms = 1_500)
        .spawn()
        .await;
    let (id, key) = app.funded_account(5).await;
    let generation = app.create_generation(&key).await;
    let generation = generation["id"].as_str().unwrap().to_owned();
    let disable = format!("/v1/ops/accounts/{id}/disable");
    assert_a_disable_with_a_reason(&app, &id, &disable).await;
    assert_every_client_route_refused(&app, &generation, &key).await;
    let again = app
        .admin_ops_post(&disable, &json!({"reason": "twice"}))
        .await;
    assert_eq!(error_code(again, 409).await, "already_disabled");
    assert_it_settles_and_is_counted(&app, &id).await;
    assert_an_enable_once(&app, &id, &key).await;
    assert_eq!(app.audit_rows("account.disable").await.len(), 1);
    assert_eq!(
        app.audit_rows("account.disable").await[0]["reason"],
        "chargeback"
    );
    assert_eq!(app.audit_rows("account.enable").await.len(), 1);
    assert_verify_passes(&url, &app.state.settings.data_dir);
}

async fn revoking_keys_stops_every_key_and_a_new_one_works(url: String) {
    let app = ops_app(&url).await;
    let (id, first) = app.funded_account(3).await;
    let rotated = app.post_empty("/v1/api-keys", &first).await;
    assert_eq!(rotated.status(), 201);
    let second = rotated.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = format!("/v1/ops/accounts/{id}/revoke-keys");
    let missing = app.admin_ops_post(&revoke, &json!({"reason": "  "})).await;
    assert_eq!(error_code(missing, 422).await, "missing_reason");
    let revoked = app
        .admin_ops_post(&revoke, &json!({"reason": "leaked"}))
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["revoked"], 2);
    for key in [&first, &second] {
        let response = app.get("/v1/balance", key).await;
        assert_eq!(error_code(response, 401).await, "invalid_credentials");
    }
    let issued = app
        .admin_ops_post(&format!("/v1/ops/accounts/{id}/api-keys"), &json!({}))
        .await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let third = issued["api_key"].as_str().unwrap();
    assert_eq!(app.balance(third).await["available"], 3);
    assert_eq!(app.get("/v1/balance", &first).await.status(), 401);
    assert_eq!(
        app.audit_rows("account.revoke_keys").await[0]["reason"],
        "leaked"
    );
    let issue_rows = app.audit_rows("account.issue_key").await;
    assert_eq!(issue_rows.len(), 1);
    assert!(
        !issue_rows[0].to_string().contains(third),
        "the key is not in the audit log"
    );
}

/// The id of the key's first package.
async fn first_package(app: &TestApp, key: &str) -> String {
    app.balance(key).await["packages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A void wants a reason; it takes the 9 unused credits (the held one stays) through the
/// ledger, and the books still verify; a second void is refused.
async fn assert_the_void_takes_the_remainder(app: &TestApp, url: &str, key: &str, void: &str) {
    let missing = app.admin_ops_post(void, &json!({})).await;
    assert_eq!(error_code(missing, 422).await, "missing_reason");
    let voided = app
        .admin_ops_post(void, &json!({"reason": "refunded"}))
        .await;
    assert_eq!(voided.status(), 200);
    let voided: Value = voided.json().await.unwrap();
    assert_eq!(voided["voided"], 9);
    assert_eq!(
        (
            voided["package"]["remaining"].as_i64(),
            voided["package"]["held"].as_i64(),
            voided["package"]["voided"].as_i64()
        ),
        (Some(0), Some(1), Some(9))
    );
    let balance = app.balance(key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(app.ledger_kinds(key).await[0], "void");
    assert_verify_passes(url, &app.state.settings.data_dir);
    let again = app.admin_ops_post(void, &json!({"reason": "twice"})).await;
    assert_eq!(error_code(again, 409).await, "already_voided");
}

/// The held credit comes back on cancel, and is voided with its package.
async fn assert_the_held_credit_is_voided_on_cancel(
    app: &TestApp,
    url: &str,
    key: &str,
    generation: &str,
) {
    assert_eq!(
        app.post_empty(&format!("/v1/generations/{generation}/cancel"), key)
            .await
            .status(),
        200
    );
    let balance = app.balance(key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(app.ledger_kinds(key).await[..2], ["void", "release"]);
    assert_verify_passes(url, &app.state.settings.data_dir);
}

/// A grant wholly held has nothing unused; one of another account is not found under `id`.
async fn assert_nothing_to_void_and_not_found(app: &TestApp, id: &str) {
    let (other, other_key) = app.funded_account(1).await;
    app.create_generation(&other_key).await;
    let held = first_package(app, &other_key).await;
    let nothing = app
        .admin_ops_post(
            &format!("/v1/ops/accounts/{other}/grants/{held}/void"),
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(error_code(nothing, 409).await, "nothing_to_void");
    let elsewhere = app
        .admin_ops_post(
            &format!("/v1/ops/accounts/{id}/grants/{held}/void"),
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(error_code(elsewhere, 404).await, "package_not_found");
}

async fn a_void_takes_the_unused_remainder_through_the_ledger(url: String) {
    let app = ops_app(&url).await;
    let (id, key) = app.funded_account(10).await;
    let generation = app.create_generation(&key).await;
    let package = first_package(&app, &key).await;
    let void = format!("/v1/ops/accounts/{id}/grants/{package}/void");
    assert_the_void_takes_the_remainder(&app, &url, &key, &void).await;
    let generation = generation["id"].as_str().unwrap();
    assert_the_held_credit_is_voided_on_cancel(&app, &url, &key, generation).await;
    assert_nothing_to_void_and_not_found(&app, &id).await;
    let rows = app.audit_rows("grant.void").await;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows.last().unwrap()["target_id"], package.as_str());
    assert_eq!(rows.last().unwrap()["reason"], "refunded");
    let summary = app.summary("").await;
    assert_eq!(summary["ledger"]["voided"], 10);
}

async fn the_summary_counts_states_releases_and_the_watchlist(url: String) {
    let app = TestApp::builder(&url).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let (_, key) = app.funded_account(6).await;
    let kept = app.create_generation(&key).await;
    let canceled = app.create_generation(&key).await;
    let canceled = canceled["id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v1/generations/{canceled}/cancel"), &key)
            .await
            .status(),
        200
    );
    // The range ends before now; a minute on, it holds what happened at the start.
    clock.advance(Span::seconds(60));
    let summary = app.summary("").await;
    assert_eq!(summary["states"]["reserved"], 1);
    assert_eq!(summary["states"]["released"], 1);
    assert_eq!(summary["states"]["settled"], 0);
    assert_eq!(summary["hours"].as_array().unwrap().len(), 25, "{summary}");
    let last = summary["hours"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["released"], json!({"canceled": 1}));
    assert_eq!(
        summary["ledger"],
        json!({"granted": 6, "held": 2, "consumed": 0, "released": 1, "expired": 0, "voided": 0})
    );
    assert_eq!(summary["oldest_live"]["id"], kept["id"]);
    assert_eq!(summary["watchlist"], json!([]));

    clock.advance(Span::seconds(700));
    let summary = app.summary("").await;
    assert_eq!(summary["watchlist"][0]["id"], kept["id"]);
    assert_eq!(summary["watchlist"][0]["age_secs"], 760);
    let narrow = app.summary("?watch_after_secs=800").await;
    assert_eq!(narrow["watchlist"], json!([]));
    // A range before anything happened counts nothing.
    let before = app
        .summary("?from=2029-12-01T00:00:00Z&to=2029-12-02T00:00:00Z")
        .await;
    assert_eq!(before["ledger"]["granted"], 0);
    assert_eq!(before["hours"].as_array().unwrap().len(), 24);
    for (query, code) in [
        (
            "from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z",
            "invalid_range",
        ),
        (
            "from=2029-01-01T00:00:00Z&to=2030-01-01T00:00:00Z",
            "invalid_range",
        ),
        ("from=yesterday", "invalid_time"),
        ("watch_after_secs=0", "invalid_watch_after"),
        ("watch_after_secs=999999999", "invalid_watch_after"),
        ("window=1", "unknown_parameter"),
    ] {
        let response = app
            .get(&format!("/v1/ops/summary?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(error_code(response, 422).await, code, "{query}");
    }
}

async fn verify_reports_ok_then_the_row_a_test_broke(url: String) {
    let app = ops_app(&url).await;
    let (_, key) = app.funded_account(4).await;
    app.create_generation(&key).await;
    let ok = app.admin_ops_post("/v1/ops/verify", &json!({})).await;
    assert_eq!(ok.status(), 200);
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["violations"], json!([]));
    assert_eq!(ok["checked"]["packages"], 1);
    assert_eq!(ok["checked"]["holds"], 1);
    assert_eq!(ok["checked"]["workflows"], 1);
    assert_eq!(
        ok["checked"]["invariants"],
        json!([1, 2, 3, 4, 5, 6, 8, 9, 10])
    );
    app.state
        .db
        .execute_unprepared("UPDATE credit_packages SET remaining = remaining + 1")
        .await
        .unwrap();
    let broken: Value = app
        .admin_ops_post("/v1/ops/verify", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(broken["ok"], false);
    let violations = broken["violations"].as_array().unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v["invariant"] == 1 && v["subject"].as_str().unwrap().starts_with("package ")),
        "{broken}"
    );
    assert_eq!(app.audit_rows("system.verify").await.len(), 2);
}

async fn clients_and_the_read_only_token_are_kept_out(url: String) {
    use reqwest::Method;
    let app = ops_app(&url).await;
    let (id, key) = app.funded_account(2).await;
    let package = first_package(&app, &key).await;
    let reads = [
        "/v1/ops/accounts".to_owned(),
        format!("/v1/ops/accounts/{id}"),
        "/v1/ops/summary".to_owned(),
    ];
    // Valid bodies, so that only the caller can be what is refused.
    let reason = json!({"reason": "r"});
    let actions = [
        (
            format!("/v1/ops/accounts/{id}/grants"),
            json!({"credits": 1, "reference": "r"}),
        ),
        (
            format!("/v1/ops/accounts/{id}/grants/{package}/void"),
            reason.clone(),
        ),
        (format!("/v1/ops/accounts/{id}/disable"), reason.clone()),
        (format!("/v1/ops/accounts/{id}/enable"), reason.clone()),
        (format!("/v1/ops/accounts/{id}/revoke-keys"), reason.clone()),
        (format!("/v1/ops/accounts/{id}/api-keys"), reason.clone()),
        ("/v1/ops/verify".to_owned(), json!({})),
    ];
    let routes = reads
        .iter()
        .map(|path| (Method::GET, path, json!({})))
        .chain(
            actions
                .iter()
                .map(|(path, body)| (Method::POST, path, body.clone())),
        );
    for (method, path, body) in routes {
        let request = || {
            app.client
                .request(method.clone(), app.url(path))
                .json(&body)
        };
        let none = request().send().await.unwrap();
        assert_eq!(
            error_code(none, 401).await,
            "missing_credentials",
            "{method} {path}"
        );
        let client = request().bearer_auth(&key).send().await.unwrap();
        assert_eq!(
            error_code(client, 403).await,
            "forbidden",
            "{method} {path}"
        );
        let observer = request().bearer_auth(READ_TOKEN).send().await.unwrap();
        if method == Method::GET {
            assert_eq!(observer.status(), 200, "{method} {path}");
        } else {
            assert_eq!(
                error_code(observer, 403).await,
                "read_only",
                "{method} {path}"
            );
        }
    }
    let audit = app.admin_ops_get("/v1/ops/audit").await;
    assert_eq!(audit["items"], json!([]), "nothing refused is audited");
    assert_eq!(app.balance(&key).await["available"], 2);
}

/// `atelier <args>` on `url`: (success, stdout, stderr).
fn run_cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = atelier_command(url).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn the_cli_lists_accounts_and_grants(url: String) {
    let app = ops_app(&url).await;
    let (alice, key) = app.named_account("Alice Studio").await;
    app.named_account("bob").await;
    let body = json!({"credits": 5, "reference": "welcome"});
    assert_eq!(app.grant(&alice, &body).await.status(), 201);
    app.create_generation(&key).await;

    let (ok, table, stderr) = run_cli(&url, &["accounts", "list", "--query", "alice"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["id", "name", "disabled", "available", "held", "created_at"]
    );
    assert!(lines[1].starts_with(&alice), "{table}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[1..6], ["Alice", "Studio", "no", "4", "1"]);
    let (ok, all, _) = run_cli(&url, &["accounts", "list", "--limit", "1"]);
    assert!(ok);
    assert_eq!(all.lines().count(), 2, "{all}");

    let (ok, grants, stderr) = run_cli(&url, &["grants", "list", "--account", &alice]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = grants.lines().collect();
    assert_eq!(lines.len(), 2, "{grants}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells[1..9],
        ["welcome", "5", "4", "1", "0", "0", "0", "never"]
    );

    let unknown = "0192abcd-0000-7000-8000-000000000001";
    let (ok, _, stderr) = run_cli(&url, &["grants", "list", "--account", unknown]);
    assert!(
        !ok && stderr.contains(&format!("no account {unknown}")),
        "{stderr}"
    );
    let (ok, _, stderr) = run_cli(&url, &["accounts", "list", "--limit", "0"]);
    assert!(!ok && stderr.contains("--limit"), "{stderr}");
    let (ok, _, stderr) = run_cli(&url, &["accounts", "list", "--query", " "]);
    assert!(!ok && stderr.contains("--query"), "{stderr}");
}

database_tests!(
    search_finds_by_name_id_and_prefix,
    an_accounts_page_shows_packages_in_consumption_order,
    the_ops_grant_is_the_idempotent_grant_and_audited,
    a_disabled_account_is_refused_and_its_generation_finishes,
    revoking_keys_stops_every_key_and_a_new_one_works,
    a_void_takes_the_unused_remainder_through_the_ledger,
    the_summary_counts_states_releases_and_the_watchlist,
    verify_reports_ok_then_the_row_a_test_broke,
    clients_and_the_read_only_token_are_kept_out,
    the_cli_lists_accounts_and_grants,
);
