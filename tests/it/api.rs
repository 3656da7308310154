//! The HTTP contract of the foundation (docs/api.md): accounts, grants, balances, the ledger
//! list, auth and the error shape, over real HTTP against each database.

use crate::common::{ADMIN_TOKEN, TestApp, error_code, start_of_test_time};
use atelier_actors::ledger::sweeper;
use chrono::Duration as Span;
use serde_json::{Value, json};

database_tests!(
    admin_endpoints_need_the_admin_token,
    client_endpoints_need_an_account_key,
    grants_show_in_balance_in_consumption_order,
    grant_is_idempotent_by_reference,
    two_accounts_can_each_have_a_welcome_grant,
    bad_grants_get_their_error_and_change_nothing,
    oversized_and_non_json_bodies_are_refused,
    another_accounts_resources_are_not_found,
    expired_credits_stop_counting_before_the_sweep_records_them,
    ledger_pages_newest_first,
    bad_ledger_queries_are_refused,
    health_and_readiness,
    unknown_routes_and_methods_answer_in_the_error_shape,
);

async fn admin_endpoints_need_the_admin_token(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let post = |token: Option<&str>| {
        let mut request = app.client.post(app.url("/v1/accounts")).json(&json!({}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        error_code(post(None).await.unwrap(), 401).await,
        "missing_credentials"
    );
    assert_eq!(
        error_code(post(Some("not-the-token")).await.unwrap(), 401).await,
        "invalid_credentials"
    );
    let (_, api_key) = app.create_account().await;
    assert_eq!(
        error_code(post(Some(&api_key)).await.unwrap(), 403).await,
        "forbidden"
    );
    for scheme in ["bearer", "BEARER"] {
        let response = app
            .client
            .post(app.url("/v1/accounts"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "scheme {scheme}");
    }
    let basic = app
        .client
        .post(app.url("/v1/accounts"))
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(basic, 401).await, "invalid_credentials");
}

async fn client_endpoints_need_an_account_key(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let anonymous = app.client.get(app.url("/v1/balance")).send().await.unwrap();
    assert_eq!(error_code(anonymous, 401).await, "missing_credentials");
    let forged = app.get("/v1/balance", "atl_forged").await;
    assert_eq!(error_code(forged, 401).await, "invalid_credentials");
    // The admin token names no account, so the caller's own balance is not its to read.
    let admin = app.get("/v1/ledger", ADMIN_TOKEN).await;
    assert_eq!(error_code(admin, 403).await, "forbidden");
}

async fn grants_show_in_balance_in_consumption_order(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, api_key) = app.create_account().await;
    let later = chrono::Utc::now() + Span::days(30);
    let sooner = chrono::Utc::now() + Span::days(2);
    let never = app
        .grant(&account_id, &json!({"credits": 10, "reference": "never"}))
        .await;
    assert_eq!(never.status(), 201);
    let never: Value = never.json().await.unwrap();
    assert_eq!(never["credits"], 10);
    assert_eq!(never["remaining"], 10);
    assert_eq!(never["expires_at"], Value::Null);
    for (reference, expires_at) in [("later", later), ("sooner", sooner)] {
        let response = app
            .grant(
                &account_id,
                &json!({"credits": 5, "expires_at": expires_at, "reference": reference}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }

    let balance = app.balance(&api_key).await;
    assert_eq!(balance["available"], 20);
    assert_eq!(balance["held"], 0);
    let ids: Vec<&str> = balance["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| package["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], never["id"].as_str().unwrap(), "never-expiring last");
    let first_expiry = &balance["packages"][0]["expires_at"];
    let first_expiry: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first_expiry.clone()).unwrap();
    assert_eq!(
        first_expiry.timestamp_micros(),
        sooner.timestamp_micros(),
        "nearest expiry first"
    );

    let for_ops = app
        .get(&format!("/v1/accounts/{account_id}/balance"), ADMIN_TOKEN)
        .await;
    assert_eq!(for_ops.status(), 200);
    let for_ops: Value = for_ops.json().await.unwrap();
    assert_eq!(for_ops["available"], balance["available"]);
    assert_eq!(for_ops["packages"], balance["packages"]);

    let ledger: Value = app.get("/v1/ledger", &api_key).await.json().await.unwrap();
    let items = ledger["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|item| item["kind"] == "grant"));
    let afters: Vec<i64> = items
        .iter()
        .map(|item| item["available_after"].as_i64().unwrap())
        .collect();
    assert_eq!(afters, [20, 15, 10], "newest first, running balance");
    assert_eq!(ledger["next_cursor"], Value::Null);
}

async fn grant_is_idempotent_by_reference(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, api_key) = app.create_account().await;
    let body = json!({"credits": 7, "reference": "order-1001"});
    let first = app.grant(&account_id, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app.grant(&account_id, &body).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created_at"], first["created_at"]);

    let other_amount = app
        .grant(
            &account_id,
            &json!({"credits": 8, "reference": "order-1001"}),
        )
        .await;
    assert_eq!(error_code(other_amount, 409).await, "reference_conflict");
    let other_expiry = app
        .grant(
            &account_id,
            &json!({"credits": 7, "reference": "order-1001",
                    "expires_at": chrono::Utc::now() + Span::days(1)}),
        )
        .await;
    assert_eq!(error_code(other_expiry, 409).await, "reference_conflict");
    assert_eq!(app.balance(&api_key).await["available"], 7);
}

/// References are scoped per account: the README's `"welcome"` works for every account, and
/// each keeps the idempotent behaviour on its own.
async fn two_accounts_can_each_have_a_welcome_grant(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (first_account, first_key) = app.create_account().await;
    let (second_account, second_key) = app.create_account().await;
    let welcome = json!({"credits": 10, "reference": "welcome"});
    let first = app.grant(&first_account, &welcome).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = app
        .grant(
            &second_account,
            &json!({"credits": 3, "reference": "welcome"}),
        )
        .await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["account_id"], second_account.as_str());

    let again = app.grant(&first_account, &welcome).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other_amount = app.grant(&second_account, &welcome).await;
    assert_eq!(error_code(other_amount, 409).await, "reference_conflict");

    assert_eq!(app.balance(&first_key).await["available"], 10);
    assert_eq!(app.balance(&second_key).await["available"], 3);
}

async fn bad_grants_get_their_error_and_change_nothing(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, api_key) = app.create_account().await;
    let past = chrono::Utc::now() - Span::seconds(1);
    let cases = [
        (json!({"credits": 0, "reference": "a"}), "invalid_credits"),
        (json!({"credits": -5, "reference": "a"}), "invalid_credits"),
        (json!({"credits": 1.5, "reference": "a"}), "invalid_credits"),
        (
            json!({"credits": 1_000_000_000_001_i64, "reference": "a"}),
            "invalid_credits",
        ),
        (
            serde_json::from_str(r#"{"credits": 99999999999999999999999, "reference": "a"}"#)
                .unwrap(),
            "invalid_credits",
        ),
        (json!({"credits": "ten", "reference": "a"}), "invalid_field"),
        (json!({"reference": "a"}), "missing_field"),
        (json!({"credits": 5}), "missing_field"),
        (
            json!({"credits": 5, "reference": "  "}),
            "invalid_reference",
        ),
        (
            json!({"credits": 5, "reference": "x".repeat(256)}),
            "invalid_reference",
        ),
        (
            json!({"credits": 5, "reference": "a", "expires_at": past}),
            "expires_at_in_past",
        ),
        (
            json!({"credits": 5, "reference": "a", "expires_at": "tomorrow"}),
            "invalid_field",
        ),
        (
            json!({"credits": 5, "reference": "a", "bonus": true}),
            "unknown_field",
        ),
    ];
    for (body, code) in cases {
        let response = app.grant(&account_id, &body).await;
        let message_names_field = response.status() == 422;
        assert_eq!(error_code(response, 422).await, code, "for {body}");
        assert!(message_names_field);
    }
    let malformed = app
        .client
        .post(app.url(&format!("/v1/accounts/{account_id}/grants")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"credits": 5, "reference": "a""#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(malformed, 400).await, "malformed_json");

    let balance = app.balance(&api_key).await;
    assert_eq!(balance["available"], 0);
    assert_eq!(balance["packages"], json!([]));
    let ledger: Value = app.get("/v1/ledger", &api_key).await.json().await.unwrap();
    assert_eq!(ledger["items"], json!([]));
    // The refused reference is still free.
    let ok = app
        .grant(&account_id, &json!({"credits": 5, "reference": "a"}))
        .await;
    assert_eq!(ok.status(), 201);
}

async fn oversized_and_non_json_bodies_are_refused(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, api_key) = app.create_account().await;
    let grants = app.url(&format!("/v1/accounts/{account_id}/grants"));
    let huge = json!({"credits": 5, "reference": "r".repeat(100 * 1024)});
    let response = app
        .admin_post(&format!("/v1/accounts/{account_id}/grants"), &huge)
        .await;
    assert_eq!(error_code(response, 413).await, "payload_too_large");

    // Without a Content-Length the limit is enforced while reading.
    let chunks = futures::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let streamed = app
        .client
        .post(&grants)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(streamed, 413).await, "payload_too_large");

    let form = app
        .client
        .post(&grants)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("credits=5&reference=a")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(form, 415).await, "unsupported_media_type");
    assert_eq!(app.balance(&api_key).await["available"], 0);
}

async fn another_accounts_resources_are_not_found(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (mine, my_key) = app.create_account().await;
    let (theirs, _) = app.create_account().await;
    app.grant(&theirs, &json!({"credits": 3, "reference": "theirs"}))
        .await;

    let peek = app
        .get(&format!("/v1/accounts/{theirs}/balance"), &my_key)
        .await;
    assert_eq!(error_code(peek, 404).await, "account_not_found");
    let own = app
        .get(&format!("/v1/accounts/{mine}/balance"), &my_key)
        .await;
    assert_eq!(own.status(), 200);

    let unknown = uuid::Uuid::new_v4();
    let response = app
        .get(&format!("/v1/accounts/{unknown}/balance"), ADMIN_TOKEN)
        .await;
    assert_eq!(error_code(response, 404).await, "account_not_found");
    let response = app
        .grant(
            &unknown.to_string(),
            &json!({"credits": 3, "reference": "ghost"}),
        )
        .await;
    assert_eq!(error_code(response, 404).await, "account_not_found");
    let taken_reference = app
        .grant(
            &unknown.to_string(),
            &json!({"credits": 3, "reference": "theirs"}),
        )
        .await;
    assert_eq!(error_code(taken_reference, 404).await, "account_not_found");
    let response = app
        .grant("not-a-uuid", &json!({"credits": 3, "reference": "ghost"}))
        .await;
    assert_eq!(error_code(response, 404).await, "account_not_found");
    // The refused grants left the reference unused.
    let response = app
        .grant(&mine, &json!({"credits": 3, "reference": "ghost"}))
        .await;
    assert_eq!(response.status(), 201);
}

async fn expired_credits_stop_counting_before_the_sweep_records_them(url: String) {
    let app = TestApp::builder(&url).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let (account_id, api_key) = app.create_account().await;
    let expires_at = start_of_test_time() + Span::hours(1);
    let response = app
        .grant(
            &account_id,
            &json!({"credits": 5, "reference": "trial", "expires_at": expires_at}),
        )
        .await;
    assert_eq!(response.status(), 201);
    app.grant(&account_id, &json!({"credits": 2, "reference": "paid"}))
        .await;
    assert_eq!(app.balance(&api_key).await["available"], 7);

    clock.advance(Span::hours(1));
    let balance = app.balance(&api_key).await;
    assert_eq!(balance["available"], 2, "expired at exactly expires_at");
    assert_eq!(balance["packages"].as_array().unwrap().len(), 1);
    let ledger: Value = app.get("/v1/ledger", &api_key).await.json().await.unwrap();
    assert_eq!(
        ledger["items"].as_array().unwrap().len(),
        2,
        "not swept yet"
    );

    let expired = sweeper::sweep_once(&app.state.ledger).await.unwrap();
    assert_eq!(expired, 5);
    let ledger: Value = app.get("/v1/ledger", &api_key).await.json().await.unwrap();
    let newest = &ledger["items"][0];
    assert_eq!(newest["kind"], "expire");
    assert_eq!(newest["amount"], 5);
    assert_eq!(newest["available_after"], 2);
    assert_eq!(sweeper::sweep_once(&app.state.ledger).await.unwrap(), 0);
    assert_eq!(app.balance(&api_key).await["available"], 2);
}

async fn ledger_pages_newest_first(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, api_key) = app.create_account().await;
    for index in 1..=5 {
        app.grant(
            &account_id,
            &json!({"credits": index, "reference": format!("page-{index}")}),
        )
        .await;
    }
    let mut amounts = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/ledger?limit=2&cursor={cursor}"),
            None => "/v1/ledger?limit=2".to_owned(),
        };
        let page: Value = app.get(&path, &api_key).await.json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            amounts.push(item["amount"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(amounts, [5, 4, 3, 2, 1]);
    assert_eq!(pages, 3);
}

async fn bad_ledger_queries_are_refused(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, api_key) = app.create_account().await;
    for query in ["limit=0", "limit=201", "limit=ten", "limit=-1"] {
        let response = app.get(&format!("/v1/ledger?{query}"), &api_key).await;
        assert_eq!(error_code(response, 422).await, "invalid_limit", "{query}");
    }
    for query in ["cursor=abc", "cursor=", "cursor=-5"] {
        let response = app.get(&format!("/v1/ledger?{query}"), &api_key).await;
        assert_eq!(error_code(response, 422).await, "invalid_cursor", "{query}");
    }
}

async fn health_and_readiness(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

async fn unknown_routes_and_methods_answer_in_the_error_shape(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let missing = app.get("/v1/nothing-here", ADMIN_TOKEN).await;
    assert_eq!(error_code(missing, 404).await, "not_found");
    let wrong_method = app
        .client
        .delete(app.url("/v1/balance"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong_method, 405).await, "method_not_allowed");
}
