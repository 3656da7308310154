//! The ops API's generations over real HTTP: the filtered list with its totals and cursor, one
//! generation's whole story, the operator's cancel, wake and retry-as-new (each with its effect
//! on the workflow, the ledger and the audit log), bulk actions that survive a restart, and who
//! may call what.
use std::sync::Arc;
use std::time::Duration;

use atelier::ops::bulk::PageHook;
use atelier_actors::ledger::{Command, HoldOutcome, Outcome};
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::workflow::inputs::{InputImage, Inputs};
use atelier_actors::workflow::{WorkflowState, seed};
use atelier_actors::{Clock, Credits, SystemClock};
use atelier_entities::ledger_entry::{self, EntryKind};
use atelier_entities::{workflow, workflow_event};
use futures::future::join_all;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{self, ADMIN_TOKEN, TestApp, error_code, wait_for};

const READ_TOKEN: &str = "test-ops-read-token-0123456789";
const WITHIN: Duration = Duration::from_secs(20);

database_tests!(
    the_list_filters_sorts_pages_and_totals,
    the_detail_tells_the_whole_story,
    cancel_and_wake_act_and_are_audited,
    retry_runs_a_released_generation_again_as_a_new_one,
    every_route_wants_an_operator_and_actions_the_admin,
    a_bulk_cancel_survives_a_restart_and_cancels_each_once,
    a_bulk_wake_makes_each_due_now,
    a_bulk_action_over_more_than_ten_thousand_is_refused,
);

fn with_read_token(settings: &mut atelier::config::Settings) {
    settings.ops_read_token = Some(READ_TOKEN.into());
}

impl TestApp {
    async fn ops_get(&self, path: &str) -> Value {
        self.get_json(path, ADMIN_TOKEN).await
    }

    async fn ops_post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// The audit rows of `action`, newest first.
    async fn audit_of(&self, action: &str) -> Vec<Value> {
        let page = self
            .ops_get(&format!("/v1/ops/audit?action={action}"))
            .await;
        page["items"].as_array().unwrap().clone()
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

/// Three generations of one account and one of another, the first of the three canceled by
/// its client: (the first account's id, its three, oldest first, the other one).
async fn three_and_another(app: &TestApp) -> (String, Vec<String>, String) {
    let (first, first_key) = app.funded_account(10).await;
    let (_, second_key) = app.funded_account(10).await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(
            app.create_generation(&first_key).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let other = app.create_generation(&second_key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let canceled = &created[0];
    let response = app
        .post_empty(&format!("/v1/generations/{canceled}/cancel"), &first_key)
        .await;
    assert_eq!(response.status(), 200);
    (first, created, other)
}

/// The unfiltered list: newest first, the totals by state, the default range shown.
async fn assert_the_default_list(app: &TestApp, created: &[String], other: &str) {
    let all = app.ops_get("/v1/ops/generations").await;
    let mut newest_first = created.to_vec();
    newest_first.push(other.to_owned());
    newest_first.reverse();
    assert_eq!(ids(&all), newest_first, "newest first by default");
    assert_eq!(all["totals"]["reserved"], 3, "{all}");
    assert_eq!(all["totals"]["released"], 1);
    assert_eq!(all["totals_capped"], false);
    assert!(
        all["filter"]["created_from"].is_string(),
        "the default range is shown"
    );
}

/// Each filter (state, account, error code, provider, id, range) keeps only what matches.
async fn assert_each_filter(app: &TestApp, first: &str, canceled: &str, other: &str) {
    let released = app.ops_get("/v1/ops/generations?state=released").await;
    assert_eq!(ids(&released), [canceled]);
    assert_eq!(released["items"][0]["error_code"], "canceled");
    // The totals leave the state filter out.
    assert_eq!(released["totals"]["reserved"], 3);
    let both = app
        .ops_get("/v1/ops/generations?state=released,reserved")
        .await;
    assert_eq!(ids(&both).len(), 4);
    let mine = app
        .ops_get(&format!("/v1/ops/generations?account={first}"))
        .await;
    assert_eq!(ids(&mine).len(), 3);
    assert_eq!(mine["totals"]["reserved"], 2);
    let by_code = app.ops_get("/v1/ops/generations?error_code=canceled").await;
    assert_eq!(ids(&by_code), [canceled]);
    let elsewhere = app.ops_get("/v1/ops/generations?provider=replicate").await;
    assert!(ids(&elsewhere).is_empty());
    let by_id = app.ops_get(&format!("/v1/ops/generations?q={other}")).await;
    assert_eq!(ids(&by_id), [other]);
    let future = app
        .ops_get(
            "/v1/ops/generations?created_from=2099-01-01T00:00:00Z&created_to=2099-01-02T00:00:00Z",
        )
        .await;
    assert!(ids(&future).is_empty());
}

/// Pages of two, then the rest, oldest first by update time: every generation once, the
/// canceled one last. Returns the first page's cursor.
async fn assert_pages_by_update_time(app: &TestApp, created: &[String], other: &str) -> String {
    let first_page = app
        .ops_get("/v1/ops/generations?limit=2&sort=updated_at&order=asc")
        .await;
    let cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .ops_get(&format!(
            "/v1/ops/generations?limit=2&sort=updated_at&order=asc&cursor={cursor}"
        ))
        .await;
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let mut paged = ids(&first_page);
    paged.extend(ids(&rest));
    // The canceled one changed last.
    let mut expected: Vec<String> = created[1..].to_vec();
    expected.push(other.to_owned());
    expected.push(created[0].clone());
    assert_eq!(paged, expected);
    cursor
}

/// Each bad query is a 422 with its code; `cursor`, of one order, is refused under another.
async fn assert_bad_queries_refused(app: &TestApp, cursor: &str) {
    for (query, code) in [
        ("state=lost", "invalid_state"),
        (
            "created_from=2026-01-01T00:00:00Z&created_to=2026-03-01T00:00:00Z",
            "invalid_range",
        ),
        ("created_from=yesterday", "invalid_time"),
        ("account=nobody", "invalid_account"),
        ("sort=cost", "invalid_sort"),
        ("cursor=bm9wZQ", "invalid_cursor"),
        ("stat=reserved", "unknown_parameter"),
    ] {
        let response = app
            .get(&format!("/v1/ops/generations?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(error_code(response, 422).await, code, "{query}");
    }
    // A cursor of one order is refused under another.
    let response = app
        .get(
            &format!("/v1/ops/generations?limit=2&cursor={cursor}"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(error_code(response, 422).await, "invalid_cursor");
}

async fn the_list_filters_sorts_pages_and_totals(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (first, created, other) = three_and_another(&app).await;
    assert_the_default_list(&app, &created, &other).await;
    assert_each_filter(&app, &first, &created[0], &other).await;
    let cursor = assert_pages_by_update_time(&app, &created, &other).await;
    assert_bad_queries_refused(&app, &cursor).await;
}

async fn the_detail_tells_the_whole_story(url: String) {
    let app = TestApp::builder(&url).engine(|_| {}).spawn().await;
    let (_, key) = app.funded_account(3).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}");

    let detail = app.ops_get(&format!("/v1/ops/generations/{id}")).await;
    assert_eq!(detail["generation"]["state"], "settled", "{detail}");
    assert!(detail["generation"]["provider_task_id"].is_string());
    assert!(detail["retried_as"].is_null());
    let timeline = detail["timeline"].as_array().unwrap();
    let moves: Vec<&str> = timeline
        .iter()
        .map(|step| step["to"].as_str().unwrap())
        .collect();
    assert_eq!(moves.first(), Some(&"reserved"));
    assert_eq!(moves.last(), Some(&"settled"));
    for step in &timeline[..timeline.len() - 1] {
        assert!(step["seconds_in_state"].as_f64().unwrap() >= 0.0, "{step}");
    }
    assert!(timeline.last().unwrap()["seconds_in_state"].is_null());

    let hold = &detail["hold"];
    assert_eq!(hold["state"], "settled");
    assert_eq!(hold["settled_amount"], 1);
    let package = &hold["packages"][0];
    assert_eq!(package["held"], 1);
    let kinds: Vec<&str> = package["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["hold", "settle"]);

    let inbox = detail["inbox"].as_array().unwrap();
    assert!(!inbox.is_empty(), "the simulator calls back: {detail}");
    for callback in inbox {
        assert!(callback["processed_at"].is_string(), "{callback}");
        assert!(["applied", "ignored"].contains(&callback["outcome"].as_str().unwrap()));
    }

    let objects = &detail["objects"];
    assert_eq!(objects["inputs"][0]["field"], "person_image");
    assert_eq!(objects["inputs"][0]["source"], "stored");
    let result = objects["result"]["preview_url"].as_str().unwrap();
    let preview = app.client.get(result).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    assert_eq!(
        objects["preview_ttl_secs"],
        app.state.settings.workflow.url_ttl_secs
    );

    let missing = app
        .get(
            &format!("/v1/ops/generations/{}", Uuid::now_v7()),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(error_code(missing, 404).await, "generation_not_found");
}

/// Wake: the engine polls now instead of at the callback deadline; the wake is audited,
/// without a reason.
async fn assert_a_wake_polls_now(app: &TestApp, id: &str) {
    let before = app.ops_get(&format!("/v1/ops/generations/{id}")).await["generation"].clone();
    let woken = app
        .ops_post(
            &format!("/v1/ops/generations/{id}/wake"),
            ADMIN_TOKEN,
            &json!({}),
        )
        .await;
    assert_eq!(woken.status(), 200);
    let attempt = before["attempt"].as_i64().unwrap();
    let path = &format!("/v1/ops/generations/{id}");
    wait_for("the woken generation polled", WITHIN, || async move {
        let row = app.ops_get(path).await["generation"].clone();
        (row["attempt"].as_i64().unwrap() > attempt)
            .then_some(())
            .ok_or(row)
    })
    .await;
    let audit = app.audit_of("generation.wake").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["target_id"], id);
    assert!(audit[0]["reason"].is_null());
}

/// The operator's cancel releases the generation and its hold, and is audited with its
/// reason.
async fn assert_a_cancel_releases_the_hold(app: &TestApp, key: &str, id: &str) {
    let canceled = app
        .ops_post(
            &format!("/v1/ops/generations/{id}/cancel"),
            ADMIN_TOKEN,
            &json!({"reason": "stuck at the provider"}),
        )
        .await;
    assert_eq!(canceled.status(), 200);
    let canceled: Value = canceled.json().await.unwrap();
    assert_eq!(canceled["generation"]["state"], "released");
    assert_eq!(canceled["generation"]["error_code"], "canceled");
    assert_eq!(app.balance(key).await["available"], 5);
    assert_eq!(app.ledger_kinds(key).await, ["release", "hold", "grant"]);
    let audit = app.audit_of("generation.cancel").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["reason"], "stuck at the provider");
    assert_eq!(audit[0]["target_kind"], "generation");
}

/// Once released: a second cancel changes nothing; a wake has nothing to run; a reason over
/// 1,000 characters is refused. Two cancels are audited.
async fn assert_a_released_one_is_done(app: &TestApp, key: &str, id: &str) {
    let again = app
        .ops_post(
            &format!("/v1/ops/generations/{id}/cancel"),
            ADMIN_TOKEN,
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.ledger_kinds(key).await, ["release", "hold", "grant"]);
    let late = app
        .ops_post(
            &format!("/v1/ops/generations/{id}/wake"),
            ADMIN_TOKEN,
            &json!({}),
        )
        .await;
    assert_eq!(error_code(late, 409).await, "terminal");
    let long = "x".repeat(1001);
    let refused = app
        .ops_post(
            &format!("/v1/ops/generations/{id}/cancel"),
            ADMIN_TOKEN,
            &json!({"reason": long}),
        )
        .await;
    assert_eq!(error_code(refused, 422).await, "invalid_reason");
    assert_eq!(app.audit_of("generation.cancel").await.len(), 2);
}

async fn cancel_and_wake_act_and_are_audited(url: String) {
    let app = TestApp::builder(&url)
        .engine(|s| {
            // The task stays pending: a poll finds nothing and counts an attempt.
            s.simulator.never_callback = true;
            s.simulator.delay_ms = 600_000;
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(5).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_state(&key, &id, &["awaiting_callback"], WITHIN)
        .await;
    assert_a_wake_polls_now(&app, &id).await;
    assert_a_cancel_releases_the_hold(&app, &key, &id).await;
    assert_a_released_one_is_done(&app, &key, &id).await;
    common::assert_verify_passes(&url, &app.state.settings.data_dir);
}

/// A live generation is not retried; once its client cancels it, an unknown provider is
/// still refused.
async fn assert_only_a_released_one_retries(app: &TestApp, key: &str, old: &str) {
    let live = app
        .ops_post(
            &format!("/v1/ops/generations/{old}/retry"),
            ADMIN_TOKEN,
            &json!({}),
        )
        .await;
    assert_eq!(error_code(live, 409).await, "not_released");
    let response = app
        .post_empty(&format!("/v1/generations/{old}/cancel"), key)
        .await;
    assert_eq!(response.status(), 200);
    let unknown = app
        .ops_post(
            &format!("/v1/ops/generations/{old}/retry"),
            ADMIN_TOKEN,
            &json!({"provider": "nope"}),
        )
        .await;
    assert_eq!(error_code(unknown, 422).await, "unknown_provider");
}

/// The retry is a new generation of the same account at the chosen provider, holding again
/// at its cost, linked both ways and audited. Returns the new one's id.
async fn assert_the_retry_is_a_new_generation(app: &TestApp, key: &str, old: &str) -> String {
    let retried = app
        .ops_post(
            &format!("/v1/ops/generations/{old}/retry"),
            ADMIN_TOKEN,
            &json!({"provider": "pricier", "reason": "the simulator was down"}),
        )
        .await;
    assert_eq!(retried.status(), 201);
    let retried: Value = retried.json().await.unwrap();
    let new = retried["generation"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(retried["generation"]["state"], "reserved");
    assert_eq!(retried["generation"]["provider"], "pricier");
    assert_eq!(retried["generation"]["retry_of"], old);
    // It holds again, at the new provider's cost.
    let balance = app.balance(key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(1), Some(2))
    );
    let old_detail = app.ops_get(&format!("/v1/ops/generations/{old}")).await;
    assert_eq!(old_detail["retried_as"], new.as_str());
    let new_detail = app.ops_get(&format!("/v1/ops/generations/{new}")).await;
    assert_eq!(new_detail["generation"]["retry_of"], old);
    let client_view = app.get_json(&format!("/v1/generations/{new}"), key).await;
    assert_eq!(
        client_view["state"], "reserved",
        "the account owns the retry"
    );
    let audit = app.audit_of("generation.retry").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["target_id"], old);
    new
}

/// Short of credits: 402 as a client's create, and nothing held.
async fn assert_short_of_credits_is_402(app: &TestApp, key: &str, new: &str) {
    let response = app
        .post_empty(&format!("/v1/generations/{new}/cancel"), key)
        .await;
    assert_eq!(response.status(), 200);
    app.create_generation(key).await;
    app.create_generation(key).await;
    let short = app
        .ops_post(
            &format!("/v1/ops/generations/{new}/retry"),
            ADMIN_TOKEN,
            &json!({"provider": "pricier"}),
        )
        .await;
    assert_eq!(error_code(short, 402).await, "insufficient_credits");
    assert_eq!(app.balance(key).await["held"], 2);
}

/// A generation whose garment is a new upload, canceled by its client: (its id, the
/// upload's id).
async fn released_with_an_upload(app: &TestApp, key: &str) -> (String, String) {
    let upload: Value = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(key)
        .header("content-type", "image/png")
        .body(common::png(5, 5, [9, 9, 9]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut body = common::generation_body();
    body["garment_image"] = upload["reference"].clone();
    let response = app.post_generation(key, &body, None).await;
    assert_eq!(response.status(), 202);
    let uses: Value = response.json().await.unwrap();
    let uses = uses["id"].as_str().unwrap();
    let response = app
        .post_empty(&format!("/v1/generations/{uses}/cancel"), key)
        .await;
    assert_eq!(response.status(), 200);
    (uses.to_owned(), upload["id"].as_str().unwrap().to_owned())
}

/// An input upload deleted since: the generation cannot run again.
async fn assert_a_deleted_input_is_refused(app: &TestApp, key: &str) {
    let (uses, upload) = released_with_an_upload(app, key).await;
    let deleted = app
        .client
        .delete(app.url(&format!("/v1/uploads/{upload}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app
        .ops_post(
            &format!("/v1/ops/generations/{uses}/retry"),
            ADMIN_TOKEN,
            &json!({}),
        )
        .await;
    assert_eq!(error_code(gone, 409).await, "input_unavailable");
}

async fn retry_runs_a_released_generation_again_as_a_new_one(url: String) {
    let app = TestApp::builder(&url)
        .configure(|s| {
            let mut other = ProviderConfig::costing(2);
            other.adapter = Some("simulator".into());
            s.providers.by_name.insert("pricier".into(), other);
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(3).await;
    let old = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_only_a_released_one_retries(&app, &key, &old).await;
    let new = assert_the_retry_is_a_new_generation(&app, &key, &old).await;
    assert_short_of_credits_is_402(&app, &key, &new).await;
    assert_a_deleted_input_is_refused(&app, &key).await;
    assert_eq!(
        app.audit_of("generation.retry").await.len(),
        1,
        "refusals are not audited"
    );
    common::assert_verify_passes(&url, &app.state.settings.data_dir);
}

async fn every_route_wants_an_operator_and_actions_the_admin(url: String) {
    let app = TestApp::builder(&url)
        .configure(with_read_token)
        .spawn()
        .await;
    let (_, key) = app.funded_account(2).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = Uuid::now_v7();
    let reads = [
        "/v1/ops/generations".to_owned(),
        format!("/v1/ops/generations/{id}"),
        "/v1/ops/bulk".to_owned(),
    ];
    let actions = [
        format!("/v1/ops/generations/{id}/cancel"),
        format!("/v1/ops/generations/{id}/wake"),
        format!("/v1/ops/generations/{id}/retry"),
        "/v1/ops/generations/bulk".to_owned(),
    ];
    for path in &reads {
        assert_eq!(
            error_code(app.get(path, &key).await, 403).await,
            "forbidden",
            "{path}"
        );
        let anonymous = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        assert_eq!(app.get(path, READ_TOKEN).await.status(), 200, "{path}");
    }
    let unknown_job = app.get(&format!("/v1/ops/bulk/{job}"), READ_TOKEN).await;
    assert_eq!(error_code(unknown_job, 404).await, "bulk_job_not_found");
    // Bodies each route takes, so that only the caller is wrong.
    let bulk = json!({"filter": {}, "action": "cancel", "dry_run": true});
    for path in &actions {
        let body = if path.ends_with("/bulk") {
            &bulk
        } else {
            &json!({})
        };
        let client = app.ops_post(path, &key, body).await;
        assert_eq!(error_code(client, 403).await, "forbidden", "{path}");
        let anonymous = app
            .client
            .post(app.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let observer = app.ops_post(path, READ_TOKEN, body).await;
        assert_eq!(error_code(observer, 403).await, "read_only", "{path}");
    }
    let row = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(row["state"], "reserved", "nothing acted");
    assert!(
        app.ops_get("/v1/ops/audit").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// `count` reserved workflows of `account_id`, due in an hour, each holding 1 credit through
/// the ledger, written with their timelines by the benchmark's seed (as creates would leave
/// them, without `count` requests).
async fn park(app: &TestApp, account_id: Uuid, count: usize) {
    let now = SystemClock.now();
    let inputs = Inputs {
        person_image: InputImage::Stored("inputs/parked/person".into()),
        garment_image: InputImage::Stored("inputs/parked/garment".into()),
        prompt: None,
        aspect_ratio: None,
    }
    .to_json();
    let ids: Vec<(Uuid, Uuid)> = (0..count)
        .map(|_| (Uuid::now_v7(), Uuid::now_v7()))
        .collect();
    let holds = ids.iter().map(|(id, hold_id)| {
        app.state.ledger.execute(Command::Hold {
            hold_id: *hold_id,
            account_id,
            credits: Credits::parse(1).unwrap(),
            generation_id: Some(*id),
        })
    });
    for outcome in join_all(holds).await {
        assert!(matches!(
            outcome.unwrap(),
            Outcome::Hold(HoldOutcome::Held(_))
        ));
    }
    let rows = ids.iter().map(|(id, hold_id)| workflow::Model {
        id: *id,
        account_id,
        state: WorkflowState::Reserved,
        version: 0,
        provider: "simulator".into(),
        cost: 1,
        charge: None,
        hold_id: *hold_id,
        inputs: inputs.clone(),
        callback_token: atelier::accounts::random_token("cb_"),
        provider_task_id: None,
        result_source: None,
        result_key: None,
        attempt: 0,
        next_attempt_at: Some(now + chrono::Duration::hours(1)),
        deadline_at: now + chrono::Duration::hours(2),
        error_code: None,
        error_message: None,
        created_at: now,
        updated_at: now,
        retry_of: None,
        shard: atelier_actors::cluster::shard_of(*id),
        pruned_at: None,
        result_expired_at: None,
    });
    seed::insert_parked(&app.state.db, rows.collect())
        .await
        .unwrap();
}

async fn bulk_job(app: &TestApp, id: &str) -> Value {
    app.ops_get(&format!("/v1/ops/bulk/{id}")).await
}

/// An app whose bulk jobs stop after two pages, as if the process had ended there.
async fn app_that_stops_after_two_pages(url: &str) -> TestApp {
    let stop_after_two: PageHook = Arc::new(|pages: u64| pages < 2);
    let seams = atelier::startup::Seams {
        bulk_page_hook: Some(stop_after_two),
        ..Default::default()
    };
    TestApp::builder(url).seams(seams).spawn().await
}

/// A dry run counts the `count` matches and acts on nothing, not even an audit row.
async fn assert_a_dry_run_counts(app: &TestApp, filter: &Value, count: usize) {
    let dry = app
        .ops_post(
            "/v1/ops/generations/bulk",
            ADMIN_TOKEN,
            &json!({"filter": filter, "action": "cancel", "dry_run": true}),
        )
        .await;
    assert_eq!(dry.status(), 200);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["count"], count);
    assert!(
        app.audit_of("generation.bulk_cancel").await.is_empty(),
        "a dry run acts on nothing"
    );
}

/// A real run wants a reason and the count the dry run saw; retry is no bulk action.
async fn assert_bad_bulk_requests_refused(app: &TestApp, filter: &Value, count: usize) {
    for (body, status, code) in [
        (
            json!({"filter": filter, "action": "cancel", "dry_run": false, "expected_count": count}),
            422,
            "missing_reason",
        ),
        (
            json!({"filter": filter, "action": "cancel", "dry_run": false, "reason": "outage"}),
            422,
            "missing_expected_count",
        ),
        (
            json!({"filter": filter, "action": "cancel", "dry_run": false, "expected_count": count - 1, "reason": "outage"}),
            409,
            "count_changed",
        ),
        (
            json!({"filter": filter, "action": "retry", "dry_run": true}),
            422,
            "invalid_action",
        ),
    ] {
        let response = app
            .ops_post("/v1/ops/generations/bulk", ADMIN_TOKEN, &body)
            .await;
        assert_eq!(error_code(response, status).await, code, "{body}");
    }
}

/// Starts the bulk cancel of `count` and waits for its two pages; returns the job's id.
async fn start_the_bulk_cancel(app: &TestApp, filter: &Value, count: usize) -> String {
    let started = app
        .ops_post(
            "/v1/ops/generations/bulk",
            ADMIN_TOKEN,
            &json!({"filter": filter, "action": "cancel", "dry_run": false,
                    "expected_count": count, "reason": "provider outage"}),
        )
        .await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    let job = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["total"], count);
    let job_ref = &job;
    wait_for("two pages done", WITHIN, || async move {
        let seen = bulk_job(app, job_ref).await;
        (seen["done"] == 200).then_some(()).ok_or(seen)
    })
    .await;
    job
}

/// The bulk cancel has one audit row: the job, its reason and its filter.
async fn assert_the_bulk_cancel_audited(app: &TestApp, job: &str, account: Uuid) {
    let audit = app.audit_of("generation.bulk_cancel").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["target_id"], job);
    assert_eq!(audit[0]["reason"], "provider outage");
    assert_eq!(audit[0]["filter"]["account"], account.to_string());
}

/// Polls the bulk job until it is finished, and returns it.
async fn finished_job(app: &TestApp, what: &str, job: &str) -> Value {
    wait_for(what, WITHIN, || async move {
        let seen = bulk_job(app, job).await;
        (seen["state"] == "finished")
            .then_some(seen.clone())
            .ok_or(seen)
    })
    .await
}

/// The resumed job finishes, every one of `count` done, and is listed first.
async fn assert_the_resumed_job_finishes(app: &TestApp, job: &str, count: usize) {
    let finished = finished_job(app, "the resumed job finished", job).await;
    assert_eq!(
        (&finished["done"], &finished["skipped"], &finished["failed"]),
        (&json!(count), &json!(0), &json!(0)),
        "{finished}"
    );
    let listed = app.ops_get("/v1/ops/bulk").await;
    assert_eq!(listed["items"][0]["id"], job);
}

/// Across the restart, each of `count` workflows was released once, with one release entry
/// per hold.
async fn assert_each_released_once(app: &TestApp, count: usize) {
    let released = workflow_event::Entity::find()
        .filter(workflow_event::Column::ToState.eq(WorkflowState::Released))
        .all(&app.state.db)
        .await
        .unwrap();
    let mut once: Vec<Uuid> = released.iter().map(|event| event.workflow_id).collect();
    once.sort();
    once.dedup();
    assert_eq!(
        (released.len(), once.len()),
        (count, count),
        "one release each"
    );
    let releases = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::Kind.eq(EntryKind::Release))
        .all(&app.state.db)
        .await
        .unwrap();
    let mut holds: Vec<Uuid> = releases.iter().filter_map(|entry| entry.hold_id).collect();
    holds.sort();
    holds.dedup();
    assert_eq!(
        (releases.len(), holds.len()),
        (count, count),
        "one release entry per hold"
    );
}

async fn a_bulk_cancel_survives_a_restart_and_cancels_each_once(url: String) {
    const COUNT: usize = 500;
    let app = app_that_stops_after_two_pages(&url).await;
    let account = common::funded_account(&app.state.db, &app.state.ledger, COUNT as i64).await;
    let (_, bystander_key) = app.funded_account(1).await;
    let bystander = app.create_generation(&bystander_key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    park(&app, account, COUNT).await;
    let filter = json!({"account": account.to_string(), "state": "reserved"});
    assert_a_dry_run_counts(&app, &filter, COUNT).await;
    assert_bad_bulk_requests_refused(&app, &filter, COUNT).await;
    let job = start_the_bulk_cancel(&app, &filter, COUNT).await;
    assert_the_bulk_cancel_audited(&app, &job, account).await;
    drop(app);

    let app = TestApp::builder(&url).spawn().await;
    assert_the_resumed_job_finishes(&app, &job, COUNT).await;
    assert_each_released_once(&app, COUNT).await;
    let untouched = app
        .get_json(&format!("/v1/generations/{bystander}"), &bystander_key)
        .await;
    assert_eq!(untouched["state"], "reserved", "outside the filter");
    common::assert_verify_passes(&url, &app.state.settings.data_dir);
}

async fn a_bulk_wake_makes_each_due_now(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let account = common::funded_account(&app.state.db, &app.state.ledger, 3).await;
    park(&app, account, 3).await;
    let filter = json!({"account": account.to_string()});
    let started = app
        .ops_post(
            "/v1/ops/generations/bulk",
            ADMIN_TOKEN,
            &json!({"filter": filter, "action": "wake", "dry_run": false,
                    "expected_count": 3, "reason": "the provider is back"}),
        )
        .await;
    assert_eq!(started.status(), 202);
    let job: Value = started.json().await.unwrap();
    let job = job["id"].as_str().unwrap();
    let finished = finished_job(&app, "the wake job finished", job).await;
    assert_eq!(finished["done"], 3, "{finished}");
    let page = app
        .ops_get(&format!("/v1/ops/generations?account={account}"))
        .await;
    let soon = chrono::Utc::now() + chrono::Duration::minutes(1);
    for item in page["items"].as_array().unwrap() {
        let due: chrono::DateTime<chrono::Utc> =
            item["next_attempt_at"].as_str().unwrap().parse().unwrap();
        assert!(due < soon, "still waiting out its hour: {item}");
        assert_eq!(item["state"], "reserved");
    }
    assert_eq!(app.audit_of("generation.bulk_wake").await.len(), 1);
}

/// 10,001 live generations match: neither the dry run nor the real run goes ahead, and
/// nothing is written — no job, no audit row.
async fn a_bulk_action_over_more_than_ten_thousand_is_refused(url: String) {
    const OVER: usize = atelier::ops::bulk::MAX_TARGETS as usize + 1;
    let app = TestApp::builder(&url).spawn().await;
    let account = common::funded_account(&app.state.db, &app.state.ledger, OVER as i64).await;
    // In chunks: one insert of every row would pass SQLite's limit on bound variables.
    for chunk in [1_000; 10].into_iter().chain([OVER - 10_000]) {
        park(&app, account, chunk).await;
    }
    let filter = json!({"account": account.to_string()});
    for body in [
        json!({"filter": filter, "action": "cancel", "dry_run": true}),
        json!({"filter": filter, "action": "cancel", "dry_run": false,
               "expected_count": OVER, "reason": "too much at once"}),
    ] {
        let refused = app
            .ops_post("/v1/ops/generations/bulk", ADMIN_TOKEN, &body)
            .await;
        assert_eq!(error_code(refused, 422).await, "too_many", "{body}");
    }
    let jobs = app.ops_get("/v1/ops/bulk").await;
    assert!(jobs["items"].as_array().unwrap().is_empty(), "{jobs}");
    let audit = app.ops_get("/v1/ops/audit").await;
    assert!(audit["items"].as_array().unwrap().is_empty(), "{audit}");
}
