//! The generation endpoints of docs/api.md over real HTTP: creating holds the credits in the
//! same transaction (402 creates nothing), idempotency keys, reading, listing, canceling, the
//! timeline, uploads and signed result URLs — against each database.

use crate::common::{TestApp, data_uri, error_code, generation_body, huge_png, png, stored_under};
use atelier_actors::storage::Bytes;
use atelier_actors::workflow::{Event, TransitionOutcome, Via, WorkflowState};
use futures::future::join_all;
use serde_json::{Value, json};
use uuid::Uuid;

database_tests!(
    a_generation_holds_its_cost_until_it_ends,
    without_credits_nothing_is_created,
    without_credits_nothing_is_written_to_storage,
    twenty_concurrent_submissions_on_five_credits,
    idempotency_keys_replay_or_conflict,
    bad_generation_requests_change_nothing,
    cancel_releases_and_a_settled_generation_cannot_be_canceled,
    uploads_can_be_used_as_inputs,
    result_urls_are_signed_and_expire,
    generations_list_filters_and_pages,
    another_accounts_generation_is_not_found,
    verify_finds_workflows_that_break_invariants,
    cancel_in_every_live_state_releases_the_credits,
    oversized_images_are_refused_at_the_door,
);

async fn a_generation_holds_its_cost_until_it_ends(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(3).await;
    let response = app.post_generation(&key, &generation_body(), None).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["state"], "reserved");
    assert_eq!(created["provider"], "simulator");
    assert_eq!(created["cost"], 1);
    assert!(created.get("result_url").is_none());
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(2), Some(1))
    );

    let id = created["id"].as_str().unwrap();
    let fetched: Value = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(fetched, created);
    let events: Value = app
        .get_json(&format!("/v1/generations/{id}/events"), &key)
        .await;
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["from"], Value::Null);
    assert_eq!(events[0]["to"], "reserved");
    let ledger: Value = app.get_json("/v1/ledger", &key).await;
    assert_eq!(ledger["items"][0]["kind"], "hold");
    assert_eq!(ledger["items"][0]["generation_id"], id);
}

async fn without_credits_nothing_is_created(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, key) = app.funded_account(0).await;
    let response = app
        .post_generation(&key, &generation_body(), Some("k1"))
        .await;
    assert_eq!(response.status(), 402);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_credits");
    assert_eq!(
        error["error"]["message"],
        "this generation needs 1 credit; 0 available"
    );
    let list: Value = app.get_json("/v1/generations", &key).await;
    assert_eq!(list["items"], json!([]));
    let ledger: Value = app.get_json("/v1/ledger", &key).await;
    assert_eq!(ledger["items"], json!([]));
    let inputs = app.state.settings.data_dir.join("inputs");
    let leftovers = std::fs::read_dir(&inputs).map_or(0, |shards| {
        shards
            .flatten()
            .flat_map(|shard| std::fs::read_dir(shard.path()).unwrap().flatten())
            .count()
    });
    assert_eq!(leftovers, 0, "inputs of a refused generation were kept");
    // The key was not used up by the refusal.
    app.grant(&account_id, &json!({"credits": 1, "reference": "late"}))
        .await;
    let retried = app
        .post_generation(&key, &generation_body(), Some("k1"))
        .await;
    assert_eq!(retried.status(), 202);
}

/// An account that cannot pay writes nothing: its `data:` inputs are refused before they are
/// decoded and stored, not stored and removed again. A replay of a generation it already made
/// still answers with that generation, and stores nothing either. To see that storage is not
/// touched at all, the inputs directory is replaced by a file: any write there fails (500).
async fn without_credits_nothing_is_written_to_storage(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let body = generation_body();
    let first = app.post_generation(&key, &body, Some("only-one")).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();

    let inputs = app.state.settings.data_dir.join("inputs");
    std::fs::rename(&inputs, app.state.settings.data_dir.join("inputs-before")).unwrap();
    std::fs::write(&inputs, b"not a directory").unwrap();
    let (_, broke) = app.funded_account(0).await;
    let refused = app.post_generation(&broke, &body, Some("k1")).await;
    assert_eq!(error_code(refused, 402).await, "insufficient_credits");
    let refused = app.post_generation(&key, &body, None).await;
    assert_eq!(error_code(refused, 402).await, "insufficient_credits");
    let replayed = app.post_generation(&key, &body, Some("only-one")).await;
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.json::<Value>().await.unwrap()["id"], first["id"]);
    let mut other = body.clone();
    other["prompt"] = json!("another request");
    let reused = app.post_generation(&key, &other, Some("only-one")).await;
    assert_eq!(error_code(reused, 409).await, "idempotency_key_reused");

    assert_eq!(std::fs::read(&inputs).unwrap(), b"not a directory");
    let list: Value = app.get_json("/v1/generations", &broke).await;
    assert_eq!(list["items"], json!([]));
}

async fn twenty_concurrent_submissions_on_five_credits(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(5).await;
    let body = generation_body();
    let responses = join_all((0..20).map(|_| app.post_generation(&key, &body, None))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        15,
        "{statuses:?}"
    );
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(0), Some(5))
    );
    let list: Value = app.get_json("/v1/generations", &key).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
}

async fn idempotency_keys_replay_or_conflict(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(5).await;
    let body = generation_body();
    let first = app.post_generation(&key, &body, Some("order-7")).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = app.post_generation(&key, &body, Some("order-7")).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let mut other = body.clone();
    other["prompt"] = json!("a different request");
    let conflict = app.post_generation(&key, &other, Some("order-7")).await;
    assert_eq!(error_code(conflict, 409).await, "idempotency_key_reused");
    // Racing replays still create one generation.
    let racing = join_all((0..6).map(|_| app.post_generation(&key, &body, Some("order-8")))).await;
    let mut ids = Vec::new();
    for response in racing {
        assert!([200, 202].contains(&response.status().as_u16()));
        let generation: Value = response.json().await.unwrap();
        ids.push(generation["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one generation per key");
    assert_eq!(app.balance(&key).await["held"], 2);
    // Naming the default provider is the same request as leaving it out.
    let mut named = body.clone();
    named["provider"] = json!("simulator");
    let same = app.post_generation(&key, &named, Some("order-7")).await;
    assert_eq!(same.status(), 200);
    // Keys are per account.
    let (_, other_key) = app.funded_account(1).await;
    let theirs = app
        .post_generation(&other_key, &body, Some("order-7"))
        .await;
    assert_eq!(theirs.status(), 202);
}

async fn bad_generation_requests_change_nothing(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(5).await;
    let good = generation_body();
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let jpeg_claiming_png = format!(
        "data:image/jpeg;base64,{}",
        data_uri(&png(2, 2, [0, 0, 0])).split(',').nth(1).unwrap()
    );
    let cases = [
        (
            with("person_image", json!("http://example.com/a.png")),
            "invalid_image",
        ),
        (
            with("person_image", json!("https://127.0.0.1/a.png")),
            "invalid_image",
        ),
        (
            with("garment_image", json!("data:image/png;base64,AAAA")),
            "invalid_image",
        ),
        (
            with("garment_image", json!(jpeg_claiming_png)),
            "invalid_image",
        ),
        (
            with("garment_image", json!("ftp://example.com/x.png")),
            "invalid_image",
        ),
        (
            with("garment_image", json!(format!("upload:{}", Uuid::new_v4()))),
            "unknown_upload",
        ),
        (with("provider", json!("nobody")), "unknown_provider"),
        (with("prompt", json!("x".repeat(2001))), "invalid_prompt"),
        (with("aspect_ratio", json!("5:7")), "invalid_aspect_ratio"),
        (with("seed", json!(4)), "unknown_field"),
        (
            json!({"person_image": good["person_image"]}),
            "missing_field",
        ),
        (with("prompt", json!(7)), "invalid_field"),
    ];
    for (body, code) in cases {
        let response = app.post_generation(&key, &body, None).await;
        assert_eq!(error_code(response, 422).await, code, "for {code}");
    }
    let bad_key = app.post_generation(&key, &good, Some("bad key")).await;
    assert_eq!(error_code(bad_key, 422).await, "invalid_idempotency_key");
    let long_key = app
        .post_generation(&key, &good, Some(&"k".repeat(256)))
        .await;
    assert_eq!(error_code(long_key, 422).await, "invalid_idempotency_key");

    let list: Value = app.get_json("/v1/generations", &key).await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(app.balance(&key).await["available"], 5);
}

async fn cancel_releases_and_a_settled_generation_cannot_be_canceled(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(2).await;
    let first: Value = app.create_generation(&key).await;
    let id = first["id"].as_str().unwrap();
    let canceled = app
        .post_empty(&format!("/v1/generations/{id}/cancel"), &key)
        .await;
    assert_eq!(canceled.status(), 200);
    let canceled: Value = canceled.json().await.unwrap();
    assert_eq!(canceled["state"], "released");
    assert_eq!(canceled["error"]["code"], "canceled");
    assert_eq!(app.balance(&key).await["available"], 2);
    let twice = app
        .post_empty(&format!("/v1/generations/{id}/cancel"), &key)
        .await;
    assert_eq!(twice.status(), 200);
    assert_eq!(app.balance(&key).await["available"], 2, "released once");
    let events: Value = app
        .get_json(&format!("/v1/generations/{id}/events"), &key)
        .await;
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert_eq!(events[1]["from"], "reserved");
    assert_eq!(events[1]["to"], "released");

    let second: Value = app.create_generation(&key).await;
    let id = Uuid::parse_str(second["id"].as_str().unwrap()).unwrap();
    settle_directly(&app, id).await;
    let refused = app
        .post_empty(&format!("/v1/generations/{id}/cancel"), &key)
        .await;
    assert_eq!(error_code(refused, 409).await, "already_settled");
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(1), Some(0))
    );
}

/// Walks a workflow to `settled` through the store, as the engine would, with a PNG result.
async fn settle_directly(app: &TestApp, id: Uuid) -> String {
    let key = atelier_actors::workflow::inputs::result_key(id);
    app.state
        .storage
        .put(&key, Bytes::from(png(3, 3, [1, 2, 3])))
        .await
        .unwrap();
    let steps = [
        Event::Accepted {
            task_id: "t-1".into(),
        },
        Event::Waiting,
        Event::ResultReady {
            source: "https://provider.example/r.png".into(),
            charge: None,
            via: Via::Callback,
        },
        Event::Stored {
            key: key.clone(),
            charge: 1,
        },
    ];
    for event in steps {
        let outcome = app
            .state
            .workflows
            .transition(id, None, event, None)
            .await
            .unwrap();
        assert!(
            matches!(outcome, TransitionOutcome::Applied(_)),
            "{outcome:?}"
        );
    }
    key
}

async fn uploads_can_be_used_as_inputs(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let image = png(5, 5, [9, 9, 9]);
    let upload = |content_type: &'static str, body: Vec<u8>, api_key: String| {
        app.client
            .post(app.url("/v1/uploads"))
            .bearer_auth(api_key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let created = upload("image/png", image.clone(), key.clone())
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let reference = created["reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("upload:"));
    let readback = app
        .client
        .get(created["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(readback.status(), 200);
    assert_eq!(readback.bytes().await.unwrap().as_ref(), image.as_slice());

    let wrong_type = upload("text/plain", image.clone(), key.clone())
        .await
        .unwrap();
    assert_eq!(error_code(wrong_type, 415).await, "unsupported_media_type");
    let not_png = upload("image/png", b"GIF89a....".to_vec(), key.clone())
        .await
        .unwrap();
    assert_eq!(not_png.status(), 422);
    let error: Value = not_png.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_image");
    assert_eq!(error["error"]["message"], "the body is not valid image/png");

    let (_, other_key) = app.funded_account(1).await;
    let mut body = generation_body();
    body["person_image"] = json!(reference);
    let theirs = app.post_generation(&other_key, &body, None).await;
    assert_eq!(error_code(theirs, 422).await, "unknown_upload");
    let mine = app.post_generation(&key, &body, None).await;
    assert_eq!(mine.status(), 202);
}

async fn result_urls_are_signed_and_expire(url: String) {
    let app = TestApp::builder(&url).manual_clock().spawn().await;
    let (_, key) = app.funded_account(1).await;
    let created: Value = app.create_generation(&key).await;
    let id = Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    settle_directly(&app, id).await;
    let settled: Value = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(settled["state"], "settled");
    let result_url = settled["result_url"].as_str().unwrap().to_owned();
    let download = app.client.get(&result_url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "image/png");
    let bytes = download.bytes().await.unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png
    );

    let tampered = result_url.replace(&id.to_string(), &Uuid::new_v4().to_string());
    let response = app.client.get(&tampered).send().await.unwrap();
    assert_eq!(error_code(response, 403).await, "invalid_signature");
    let unsigned = result_url.split('?').next().unwrap().to_owned();
    let response = app.client.get(&unsigned).send().await.unwrap();
    assert_eq!(error_code(response, 403).await, "invalid_signature");
    app.clock
        .as_ref()
        .unwrap()
        .advance(chrono::Duration::hours(2));
    let response = app.client.get(&result_url).send().await.unwrap();
    assert_eq!(error_code(response, 403).await, "url_expired");
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(0), Some(0))
    );
    let ledger: Value = app.get_json("/v1/ledger", &key).await;
    assert_eq!(ledger["items"][0]["kind"], "settle");
    let settled_state = WorkflowState::Settled.as_str();
    assert_eq!(settled["state"], settled_state);
}

async fn generations_list_filters_and_pages(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(5).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created: Value = app.create_generation(&key).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    app.post_empty(&format!("/v1/generations/{}/cancel", ids[1]), &key)
        .await;
    let page: Value = app.get_json("/v1/generations?limit=2", &key).await;
    let first: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get_json(&format!("/v1/generations?limit=2&cursor={cursor}"), &key)
        .await;
    assert_eq!(rest["items"][0]["id"], ids[0].as_str());
    assert_eq!(rest["next_cursor"], Value::Null);
    let released: Value = app.get_json("/v1/generations?state=released", &key).await;
    assert_eq!(released["items"].as_array().unwrap().len(), 1);
    assert_eq!(released["items"][0]["id"], ids[1].as_str());
    let bad = app.get("/v1/generations?state=done", &key).await;
    assert_eq!(error_code(bad, 422).await, "invalid_state");
    let bad = app.get("/v1/generations?cursor=7", &key).await;
    assert_eq!(error_code(bad, 422).await, "invalid_cursor");
}

async fn another_accounts_generation_is_not_found(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let (_, other) = app.funded_account(1).await;
    let created: Value = app.create_generation(&key).await;
    let id = created["id"].as_str().unwrap();
    for path in [
        format!("/v1/generations/{id}"),
        format!("/v1/generations/{id}/events"),
        "/v1/generations/not-an-id".to_owned(),
    ] {
        let response = app.get(&path, &other).await;
        assert_eq!(error_code(response, 404).await, "generation_not_found");
    }
    let cancel = app
        .post_empty(&format!("/v1/generations/{id}/cancel"), &other)
        .await;
    assert_eq!(error_code(cancel, 404).await, "generation_not_found");
    let mine: Value = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(mine["state"], "reserved");
}

async fn verify_finds_workflows_that_break_invariants(url: String) {
    use atelier_actors::workflow::verify::verify_workflows;

    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(3).await;
    let settled =
        Uuid::parse_str(app.create_generation(&key).await["id"].as_str().unwrap()).unwrap();
    let result_key = settle_directly(&app, settled).await;
    let waiting =
        Uuid::parse_str(app.create_generation(&key).await["id"].as_str().unwrap()).unwrap();
    let db = &app.state.db;
    let grace = chrono::Duration::seconds(60);
    let check = || verify_workflows(db, &app.state.storage, app.state.clock.now(), grace);
    assert_eq!(check().await.unwrap(), vec![]);

    app.state.storage.delete(&result_key).await.unwrap();
    use atelier_entities::{hold, workflow};
    use sea_orm::ActiveValue::Set;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    hold::Entity::update_many()
        .set(hold::ActiveModel {
            state: Set(hold::HoldState::Released),
            ..Default::default()
        })
        .filter(hold::Column::GenerationId.eq(waiting))
        .exec(db)
        .await
        .unwrap();
    workflow::Entity::update_many()
        .set(workflow::ActiveModel {
            deadline_at: Set(app.state.clock.now() - chrono::Duration::days(1)),
            ..Default::default()
        })
        .filter(workflow::Column::Id.eq(waiting))
        .exec(db)
        .await
        .unwrap();
    let violations = check().await.unwrap();
    let found: Vec<(u8, String)> = violations
        .iter()
        .map(|v| (v.invariant, v.subject.clone()))
        .collect();
    assert!(
        found.contains(&(5, format!("workflow {settled}"))),
        "{violations:?}"
    );
    assert!(
        found.contains(&(4, format!("workflow {waiting}"))),
        "{violations:?}"
    );
    assert!(
        found.contains(&(6, format!("workflow {waiting}"))),
        "{violations:?}"
    );

    // A timeline whose links do not meet, and a settle that charged other than was due.
    use atelier_entities::workflow_event;
    let third = Uuid::parse_str(app.create_generation(&key).await["id"].as_str().unwrap()).unwrap();
    let third_key = settle_directly(&app, third).await;
    assert!(app.state.storage.exists(&third_key).await.unwrap());
    workflow_event::Entity::update_many()
        .set(workflow_event::ActiveModel {
            to_state: Set(WorkflowState::AwaitingCallback),
            ..Default::default()
        })
        .filter(workflow_event::Column::WorkflowId.eq(third))
        .filter(workflow_event::Column::Version.eq(1))
        .exec(db)
        .await
        .unwrap();
    hold::Entity::update_many()
        .set(hold::ActiveModel {
            settled_amount: Set(0),
            ..Default::default()
        })
        .filter(hold::Column::GenerationId.eq(third))
        .exec(db)
        .await
        .unwrap();
    let violations = check().await.unwrap();
    let about_third: Vec<_> = violations
        .iter()
        .filter(|v| v.subject == format!("workflow {third}"))
        .map(|v| (v.invariant, v.detail.clone()))
        .collect();
    assert!(
        about_third
            .iter()
            .any(|(n, d)| *n == 8 && d.contains("comes from submitted")),
        "{about_third:?}"
    );
    assert!(
        about_third
            .iter()
            .any(|(n, d)| *n == 4 && d.contains("settled 0 credits where 1 were due")),
        "{about_third:?}"
    );
}

async fn cancel_in_every_live_state_releases_the_credits(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let path = [
        Event::Accepted {
            task_id: "t".into(),
        },
        Event::Waiting,
        Event::ResultReady {
            source: "https://provider.example/r.png".into(),
            charge: None,
            via: Via::Callback,
        },
    ];
    for steps in 0..=path.len() {
        let created = app.create_generation(&key).await;
        let id = Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
        for event in &path[..steps] {
            let outcome = app
                .state
                .workflows
                .transition(id, None, event.clone(), None)
                .await
                .unwrap();
            assert!(matches!(outcome, TransitionOutcome::Applied(_)));
        }
        let state = app.get_json(&format!("/v1/generations/{id}"), &key).await["state"].clone();
        let canceled = app
            .post_empty(&format!("/v1/generations/{id}/cancel"), &key)
            .await;
        assert_eq!(canceled.status(), 200, "cancel in {state}");
        let canceled: Value = canceled.json().await.unwrap();
        assert_eq!(canceled["state"], "released", "cancel in {state}");
        assert_eq!(canceled["error"]["code"], "canceled");
        let balance = app.balance(&key).await;
        assert_eq!(
            (balance["available"].as_i64(), balance["held"].as_i64()),
            (Some(1), Some(0)),
            "credits back after a cancel in {state}"
        );
    }
}

/// A few hundred kilobytes declaring 10000×10000 pixels: refused from the header, as an upload
/// and as a `data:` input, with nothing stored and no credits held.
async fn oversized_images_are_refused_at_the_door(url: String) {
    // Made first: encoding takes seconds, longer than an idle pooled connection lives.
    let huge = huge_png();
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(3).await;
    let upload = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&key)
        .header("content-type", "image/png")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(upload, 422).await, "image_too_large");
    let mut body = generation_body();
    body["garment_image"] = json!(data_uri(&huge));
    let generation = app.post_generation(&key, &body, None).await;
    assert_eq!(error_code(generation, 422).await, "image_too_large");

    let settings = &app.state.settings;
    assert!(!stored_under(settings, "uploads"), "the upload was stored");
    assert!(
        !stored_under(settings, "inputs"),
        "the data: input was stored"
    );
    let list: Value = app.get_json("/v1/generations", &key).await;
    assert_eq!(list["items"], json!([]));
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(3), Some(0))
    );
}
