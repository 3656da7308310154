//! The dashboard's pages beyond signing in, in a real headless Chromium: the overview against
//! the ops API, a bulk cancel with its dry run and confirmation, pausing and resuming a
//! provider, an account's grant, the ledger's verify, the audit log, and the read-only mode
//! that shows everything and allows nothing. Each page is saved under `target/screenshots/`.
use std::time::Duration;

use serde_json::Value;

use crate::common::browser::Browser;
use crate::common::{ADMIN_TOKEN, TestApp, wait_for};
use crate::dashboard::sign_in;

database_tests!(
    the_overview_shows_what_the_ops_api_answers,
    an_operator_bulk_cancels_after_a_dry_run_and_a_confirmation,
    an_operator_pauses_and_resumes_a_provider,
    an_operator_grants_credits_and_runs_verify,
);

const PATIENCE: Duration = Duration::from_secs(20);
const READ_TOKEN: &str = "dashboard-read-token-0123456789";

async fn ops_summary(app: &TestApp) -> Value {
    app.get_json("/v1/ops/summary", ADMIN_TOKEN).await
}

/// The overview's cards, sparkline, error codes and watchlist, each against
/// `GET /v1/ops/summary`.
async fn the_overview_shows_what_the_ops_api_answers(url: String) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.never_callback = true)
        .spawn()
        .await;
    let (_, key) = app.funded_account(100).await;
    // One waits for its callback; one is canceled, so released with the code `canceled`.
    for _ in 0..2 {
        let generation = app.create_generation(&key).await;
        let id = generation["id"].as_str().unwrap();
        app.wait_state(&key, id, &["awaiting_callback"], PATIENCE)
            .await;
    }
    let waiting = app.get_json("/v1/generations", &key).await;
    let canceled = waiting["items"][0]["id"].as_str().unwrap().to_owned();
    let answer = app
        .admin_post(
            &format!("/v1/ops/generations/{canceled}/cancel"),
            &serde_json::json!({"reason": "overview test"}),
        )
        .await;
    assert!(answer.status().is_success(), "{}", answer.status());
    app.wait_terminal(&key, &canceled, PATIENCE).await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    let summary = ops_summary(&app).await;
    for (state, count) in summary["states"].as_object().unwrap() {
        let shown = browser
            .text(&format!("#counts [data-state={state}] .n"))
            .await;
        assert_eq!(shown, count.to_string(), "{state}");
    }
    let released_in_hours: i64 = summary["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hour| hour["released"]["canceled"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(released_in_hours, 1);
    let figure = browser.element("#throughput").await;
    assert_eq!(
        figure.attr("data-released").await.unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(
        figure.attr("data-settled").await.unwrap().as_deref(),
        Some("0")
    );
    assert_eq!(browser.text("#error-codes [data-code=canceled]").await, "1");
    assert!(browser.has("#watchlist").await && browser.has("#ledger-totals").await);
    let granted = browser.text("#ledger-totals [data-field=granted]").await;
    assert_eq!(granted, summary["ledger"]["granted"].to_string());
    browser.screenshot("overview").await;
    browser.client.clone().close().await.unwrap();
}

/// The list filtered to three waiting generations: the dry run counts them, the
/// confirmation takes the count and a reason, and the job's progress shows until every one
/// is released; the audit log has the action with its reason.
async fn an_operator_bulk_cancels_after_a_dry_run_and_a_confirmation(url: String) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.never_callback = true)
        .spawn()
        .await;
    let (account, key) = app.funded_account(100).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let generation = app.create_generation(&key).await;
        let id = generation["id"].as_str().unwrap().to_owned();
        app.wait_state(&key, &id, &["awaiting_callback"], PATIENCE)
            .await;
        ids.push(id);
    }
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    browser
        .goto(&app.url(&format!(
            "/ops/generations?state=awaiting_callback&account={account}"
        )))
        .await;
    browser.click("#bulk-dry-run").await;
    browser
        .wait_text("#bulk-count", "3 live generations match.")
        .await;
    // Nothing is done by counting.
    for id in &ids {
        let shown = app.get_json(&format!("/v1/generations/{id}"), &key).await;
        assert_eq!(shown["state"], "awaiting_callback");
    }
    browser
        .type_into("#bulk-reason", "provider outage drill")
        .await;
    browser.screenshot("bulk-confirm").await;
    browser.click("#bulk-confirm").await;
    browser.client.accept_alert().await.unwrap();
    browser.wait_text("#bulk-state", "finished").await;
    browser.wait_text("#bulk-done", "3").await;
    browser.screenshot("bulk-finished").await;
    for id in &ids {
        let shown = app.get_json(&format!("/v1/generations/{id}"), &key).await;
        assert_eq!(shown["state"], "released", "{id}");
    }
    assert_eq!(app.balance(&key).await["available"], 100);
    browser
        .goto(&app.url("/ops/audit?action=generation.bulk_cancel"))
        .await;
    browser
        .wait_text("#audit td[data-field=reason]", "provider outage drill")
        .await;
    browser.screenshot("audit").await;
    browser.client.clone().close().await.unwrap();
}

async fn paused(app: &TestApp, name: &str) -> bool {
    let providers = app.get_json("/v1/ops/providers", ADMIN_TOKEN).await;
    providers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|provider| provider["name"] == name)
        .map(|provider| provider["paused"].is_object())
        .expect("the provider is listed")
}

/// Pause needs a reason; the page follows the pause and the resume without a reload.
async fn an_operator_pauses_and_resumes_a_provider(url: String) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    browser.goto(&app.url("/ops/providers")).await;
    browser
        .element("#provider-simulator[data-paused=false]")
        .await;
    browser
        .type_into("#pause-reason-simulator", "vendor incident 42")
        .await;
    browser.click("#pause-simulator").await;
    browser
        .element("#provider-simulator[data-paused=true]")
        .await;
    assert!(paused(&app, "simulator").await);
    browser.screenshot("providers").await;
    browser.click("#resume-simulator").await;
    browser
        .element("#provider-simulator[data-paused=false]")
        .await;
    assert!(!paused(&app, "simulator").await);
    let audit = app
        .get_json("/v1/ops/audit?target_kind=provider", ADMIN_TOKEN)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["provider.resume", "provider.pause"]);
    assert_eq!(audit["items"][1]["reason"], "vendor incident 42");
    browser.client.clone().close().await.unwrap();
}

/// Find an account, grant it credits from its page (a refused grant shows the API's error
/// and changes nothing), then run verify from the ledger page.
async fn an_operator_grants_credits_and_runs_verify(url: String) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    let (account, key) = app.funded_account(100).await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    browser
        .goto(&app.url(&format!("/ops/accounts?query={account}")))
        .await;
    browser
        .element(&format!("#accounts a[href='/ops/accounts/{account}']"))
        .await;
    browser.screenshot("accounts").await;
    browser
        .click(&format!("#accounts a[href='/ops/accounts/{account}']"))
        .await;
    browser.wait_text("#available", "100").await;
    // The reference of the grant that funded it: the idempotent grant refuses a second use
    // with other credits, and the page says why.
    browser.type_into("#grant-credits", "7").await;
    browser
        .type_into("#grant-reference", &format!("fund-{account}"))
        .await;
    browser.click("#grant-submit").await;
    wait_for("the refusal to show", PATIENCE, || async {
        match browser.text("#flash").await {
            text if text.contains(':') => Ok(()),
            text => Err(text),
        }
    })
    .await;
    assert_eq!(app.balance(&key).await["available"], 100);
    browser
        .goto(&app.url(&format!("/ops/accounts/{account}")))
        .await;
    browser.type_into("#grant-credits", "50").await;
    browser
        .type_into("#grant-reference", "dashboard-top-up")
        .await;
    browser.click("#grant-submit").await;
    browser.wait_text("#available", "150").await;
    assert_eq!(app.balance(&key).await["available"], 150);
    browser.screenshot("account").await;
    void_disable_and_enable(&browser, &app, &account, &key).await;
    browser.goto(&app.url("/ops/ledger")).await;
    browser.click("#verify").await;
    browser.element("#verify-ok").await;
    browser.screenshot("ledger").await;
    browser.client.clone().close().await.unwrap();
}

/// On the account's page: void the top-up's 50 unused credits (a reason asked, a
/// confirmation accepted), then disable the account (its key is refused) and enable it again.
async fn void_disable_and_enable(browser: &Browser, app: &TestApp, account: &str, key: &str) {
    let detail = app
        .get_json(&format!("/v1/ops/accounts/{account}"), ADMIN_TOKEN)
        .await;
    let package = detail["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|package| package["reference"] == "dashboard-top-up")
        .expect("the top-up")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .type_into(&format!("#void-reason-{package}"), "granted by mistake")
        .await;
    browser.click(&format!("#void-{package}")).await;
    browser.client.accept_alert().await.unwrap();
    browser.wait_text("#available", "100").await;
    assert_eq!(app.balance(key).await["available"], 100);
    browser.type_into("#switch-reason", "chargeback").await;
    browser.click("#disable").await;
    browser.element("#disabled").await;
    let refused = app.get("/v1/balance", key).await;
    assert_eq!(
        crate::common::error_code(refused, 403).await,
        "account_disabled"
    );
    browser.click("#enable").await;
    browser.element("#disable").await;
    assert_eq!(app.balance(key).await["available"], 100);
}

/// The read-only token signs in and sees every page with no action on it; an action posted
/// with its session and its own CSRF token is refused and changes nothing.
#[actix_web::test]
async fn the_read_only_dashboard_shows_everything_and_allows_nothing() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("atelier-readonly-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/readonly.sqlite?mode=rwc", dir.display());
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.never_callback = true)
        .configure(|settings| settings.ops_read_token = Some(READ_TOKEN.into()))
        .spawn()
        .await;
    let (account, key) = app.funded_account(100).await;
    let generation = app.create_generation(&key).await;
    let id = generation["id"].as_str().unwrap().to_owned();
    sign_in(&browser, &app, READ_TOKEN).await;
    assert_eq!(browser.text("header .who").await, "read-only");
    let pages = [
        (
            format!("/ops/generations?account={account}"),
            "#generations",
            "#bulk",
        ),
        (format!("/ops/generations/{id}"), "#detail", "#cancel"),
        (
            "/ops/providers".to_owned(),
            "#provider-simulator",
            "#pause-simulator",
        ),
        (format!("/ops/accounts/{account}"), "#account", "#grant"),
        ("/ops/ledger".to_owned(), "#ledger", "#verify"),
        ("/ops/audit".to_owned(), "#audit", "form[hx-post]"),
        ("/ops/cluster".to_owned(), "#cluster", "#cluster form"),
    ];
    for (path, shown, action) in &pages {
        browser.goto(&app.url(path)).await;
        browser.element(shown).await;
        assert!(!browser.has(action).await, "{path} offers {action}");
    }
    // SQLite's one engine holds every shard without a lease: the page says so.
    let shards = browser.text("#cluster .shards").await;
    assert!(shards.contains("256 unowned"), "{shards}");
    // The session's own CSRF token, read off the page, does not make it an admin.
    let csrf = browser
        .element("meta[name=csrf-token]")
        .await
        .attr("content")
        .await
        .unwrap()
        .unwrap();
    let cookie = browser.cookie("atelier_ops").await.unwrap();
    let refused = app
        .client
        .post(app.url("/ops/providers/simulator/pause"))
        .header("cookie", format!("atelier_ops={cookie}"))
        .header("x-csrf-token", csrf)
        .form(&[("reason", "not allowed")])
        .send()
        .await
        .unwrap();
    assert_eq!(crate::common::error_code(refused, 403).await, "read_only");
    assert!(!paused(&app, "simulator").await);
    browser.client.clone().close().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// A client's API key is no operator token: it cannot sign in, and no dashboard page,
/// fragment or action answers it.
#[actix_web::test]
async fn a_client_key_gets_nothing_from_the_dashboard() {
    let dir = std::env::temp_dir().join(format!("atelier-clientkey-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/clientkey.sqlite?mode=rwc", dir.display());
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(10).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = client
        .post(app.url("/ops/login"))
        .form(&[("token", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 401);
    assert!(signed.headers().get("set-cookie").is_none());
    for page in [
        "/ops",
        "/ops/providers",
        "/ops/accounts",
        "/ops/ledger",
        "/ops/audit",
    ] {
        let answer = client
            .get(app.url(page))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303, "{page}");
        assert_eq!(answer.headers()["location"], "/ops/login");
    }
    let fragment = client
        .get(app.url("/ops/fragments/overview"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(crate::common::error_code(fragment, 401).await, "no_session");
    for action in [
        "/ops/providers/simulator/pause",
        "/ops/verify",
        "/ops/generations/bulk",
    ] {
        let answer = client
            .post(app.url(action))
            .bearer_auth(&key)
            .form(&[("reason", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            crate::common::error_code(answer, 401).await,
            "no_session",
            "{action}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
