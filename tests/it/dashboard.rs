//! The operators' dashboard in a real headless Chromium: signing in, live counts, CSRF and
//! session expiry, signing out. Each page it visits is saved under `target/screenshots/`.
use std::time::Duration;

use atelier_actors::workflow::read as workflows;
use atelier_entities::workflow::WorkflowState;

use crate::common::browser::Browser;
use crate::common::{ADMIN_TOKEN, TestApp, wait_for};

database_tests!(
    the_dashboard_signs_in_counts_live_and_signs_out,
    an_operator_filters_opens_and_cancels_a_generation,
);

const PATIENCE: Duration = Duration::from_secs(20);

/// How many generations the database has in `state`, as the API's readers count them.
async fn count(app: &TestApp, state: WorkflowState) -> u64 {
    workflows::count_in(&app.state.db, state).await.unwrap()
}

/// Signs in with `token` through the form; the browser lands on the overview.
pub async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&app.url("/ops")).await;
    assert_eq!(
        browser.path().await,
        "/ops/login",
        "unsigned: sent to sign in"
    );
    browser
        .element("#token")
        .await
        .send_keys(token)
        .await
        .unwrap();
    browser.element("#sign-in").await.click().await.unwrap();
    browser.element("#counts").await;
    assert_eq!(browser.path().await, "/ops");
}

/// A POST with the browser's session cookie but without the page's CSRF token: refused.
async fn assert_csrf_refused(browser: &Browser, app: &TestApp, path: &str, form: &[(&str, &str)]) {
    let cookie = browser
        .cookie("atelier_ops")
        .await
        .expect("a session cookie");
    let forged = app
        .client
        .post(app.url(path))
        .header("cookie", format!("atelier_ops={cookie}"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::common::error_code(forged, 403).await,
        "csrf_token_invalid"
    );
}

async fn settled_card(browser: &Browser) -> u64 {
    let text = browser.text("#counts [data-state=settled] .n").await;
    text.trim().parse().unwrap()
}

async fn the_dashboard_signs_in_counts_live_and_signs_out(url: String) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    let (_, key) = app.funded_account(100).await;
    let first = app.create_generation(&key).await;
    app.wait_terminal(&key, first["id"].as_str().unwrap(), PATIENCE)
        .await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    for state in WorkflowState::ALL {
        let shown = browser
            .text(&format!("#counts [data-state={}] .n", state.as_str()))
            .await;
        assert_eq!(shown, count(&app, state).await.to_string(), "{state:?}");
    }
    browser.screenshot("overview").await;
    // A generation settles while the page is open: the count follows without a reload.
    let before = settled_card(&browser).await;
    let second = app.create_generation(&key).await;
    app.wait_terminal(&key, second["id"].as_str().unwrap(), PATIENCE)
        .await;
    wait_for("the settled count to follow live", PATIENCE, || async {
        match settled_card(&browser).await {
            now if now == before + 1 => Ok(()),
            now => Err(now),
        }
    })
    .await;
    // The session cookie without the page's CSRF token changes nothing.
    assert_csrf_refused(&browser, &app, "/ops/logout", &[("csrf", "not-the-token")]).await;
    browser.element("#sign-out").await.click().await.unwrap();
    browser.element("#sign-in").await;
    browser.screenshot("signin").await;
    browser.goto(&app.url("/ops")).await;
    assert_eq!(browser.path().await, "/ops/login", "signed out");
    browser.client.clone().close().await.unwrap();
}

/// The list filtered by a URL one can share, a generation opened from it, and canceled from
/// its page: the state changes while the page stays open, and the ledger released the hold.
async fn an_operator_filters_opens_and_cancels_a_generation(url: String) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.never_callback = true)
        .spawn()
        .await;
    let (_, key) = app.funded_account(100).await;
    let generation = app.create_generation(&key).await;
    let id = generation["id"].as_str().unwrap().to_owned();
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    browser
        .goto(&app.url(&format!("/ops/generations?q={id}")))
        .await;
    let link = format!("#generations a[href='/ops/generations/{id}']");
    browser.element(&link).await;
    browser.screenshot("generations").await;
    // Another filter in the URL leaves it out.
    browser
        .goto(&app.url("/ops/generations?state=settled"))
        .await;
    assert_eq!(browser.text("#generations").await, "Nothing matches.");
    browser
        .goto(&app.url(&format!("/ops/generations?q={id}")))
        .await;
    browser.element(&link).await.click().await.unwrap();
    assert_eq!(browser.path().await, format!("/ops/generations/{id}"));
    browser.element("#objects").await;
    browser.screenshot("generation").await;
    // The same cancel without the page's CSRF token is refused and changes nothing.
    let cancel = format!("/ops/generations/{id}/cancel");
    assert_csrf_refused(&browser, &app, &cancel, &[]).await;
    let still = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(still["state"], "awaiting_callback");
    browser.element("#cancel").await.click().await.unwrap();
    // The confirmation dialog, then the page follows the state without a reload.
    browser.client.accept_alert().await.unwrap();
    wait_for("the page to show released", PATIENCE, || async {
        match browser.text("#state").await.as_str() {
            "released" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
    assert_eq!(browser.path().await, format!("/ops/generations/{id}"));
    let shown = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(shown["state"], "released");
    assert_eq!(shown["error"]["code"], "canceled");
    assert_eq!(app.balance(&key).await["available"], 100);
    retry_then_wake(&browser, &app, &key, &id).await;
    browser.client.clone().close().await.unwrap();
}

/// From a released generation's page: retry it as new (the browser goes to the new one's page,
/// which links back, and the new one holds credits again), then wake the new one, which asks
/// the provider at once instead of at its next poll (minutes away), finds the result and
/// settles while the page follows.
async fn retry_then_wake(browser: &Browser, app: &TestApp, key: &str, id: &str) {
    browser.click("#retry-submit").await;
    let before = format!("/ops/generations/{id}");
    let retried = wait_for("the new generation's page", PATIENCE, || async {
        match browser.path().await {
            path if path != before => Ok(path),
            path => Err(path),
        }
    })
    .await;
    let new_id = retried.trim_start_matches("/ops/generations/").to_owned();
    assert_eq!(browser.text("#detail [data-field=retry_of]").await, id);
    let new = app
        .get_json(&format!("/v1/generations/{new_id}"), key)
        .await;
    assert_ne!(new["state"], "released", "{new}");
    assert_eq!(app.balance(key).await["available"], 99);
    app.wait_state(key, &new_id, &["awaiting_callback"], PATIENCE)
        .await;
    browser.click("#wake").await;
    browser.wait_text("#state", "settled").await;
    let audit = app
        .get_json(&format!("/v1/ops/audit?target_id={new_id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(audit["items"][0]["action"], "generation.wake");
}

/// A session past `ops.session_ttl_secs` is refused: pages send the browser to sign in again
/// (saying why), fragments and the dashboard's stream answer 401.
#[actix_web::test]
async fn an_expired_session_is_refused() {
    let dir = std::env::temp_dir().join(format!("atelier-dashboard-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/dashboard.sqlite?mode=rwc", dir.display());
    let app = TestApp::builder(&url).manual_clock().spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = client
        .post(app.url("/ops/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let set_cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ops", "Max-Age=28800"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let get = |path: &'static str| {
        client
            .get(app.url(path))
            .header("cookie", cookie.clone())
            .send()
    };
    assert_eq!(get("/ops").await.unwrap().status(), 200);
    let ttl = app.state.settings.ops.session_ttl_secs as i64;
    app.clock
        .as_ref()
        .unwrap()
        .advance(chrono::Duration::seconds(ttl + 1));
    let page = get("/ops").await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/ops/login");
    let fragment = get("/ops/fragments/overview").await.unwrap();
    assert_eq!(crate::common::error_code(fragment, 401).await, "no_session");
    let events = get("/ops/events").await.unwrap();
    assert_eq!(events.status(), 401);
    // A wrong token is refused and sets no cookie.
    let refused = client
        .post(app.url("/ops/login"))
        .form(&[("token", "not-an-operator-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("set-cookie").is_none());
    let _ = std::fs::remove_dir_all(dir);
}
