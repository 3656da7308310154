//! The rest of the customer's API over real HTTP, on each database: generations echo what was
//! asked, uploads are read, listed and deleted (and sent as forms), the ledger is filtered,
//! unknown query parameters are refused, and API keys rotate with a grace period.

use crate::common::{ADMIN_TOKEN, TestApp, data_uri, error_code, generation_body, png};
use atelier_migrations::{Migrator, MigratorTrait};
use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};

database_tests!(
    generations_echo_what_was_asked,
    uploads_are_listed_read_and_deleted,
    an_upload_a_live_generation_uses_is_not_deleted,
    multipart_uploads_take_one_file_part,
    the_ledger_filters_by_kind_generation_and_time,
    unknown_or_bad_query_parameters_are_refused,
    rotated_keys_work_for_the_grace_period_then_stop,
    keys_made_before_the_key_table_still_work,
);

const BOUNDARY: &str = "atelier-test-boundary";

/// A form part: its name, its Content-Type and its bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

impl TestApp {
    async fn upload_raw(
        &self,
        api_key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/uploads"))
            .bearer_auth(api_key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Uploads a small PNG, which must be accepted, and returns the upload.
    async fn upload_png(&self, api_key: &str) -> Value {
        let response = self
            .upload_raw(api_key, "image/png", png(5, 5, [9, 9, 9]))
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    async fn delete(&self, path: &str, api_key: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(api_key)
            .send()
            .await
            .expect("request")
    }
}

/// A `multipart/form-data` body of `parts` (name, Content-Type, bytes), with its Content-Type.
fn form(parts: &[Part]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.png\"\r\n"
            )
            .as_bytes(),
        );
        if let Some(content_type) = content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

async fn generations_echo_what_was_asked(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(2).await;
    let upload = app.upload_png(&key).await;
    let reference = upload["reference"].as_str().unwrap();
    let body = json!({
        "person_image": reference,
        "garment_image": data_uri(&png(4, 4, [20, 40, 200])),
        "prompt": "a red coat, studio light",
        "aspect_ratio": "3:4",
    });
    let response = app.post_generation(&key, &body, None).await;
    assert_eq!(response.status(), 202);
    let text = response.text().await.unwrap();
    for leak in ["base64", "uploads/", "inputs/"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["prompt"], "a red coat, studio light");
    assert_eq!(created["aspect_ratio"], "3:4");
    assert_eq!(
        created["inputs"],
        json!({
            "person_image": {"source": "upload", "reference": reference},
            "garment_image": {"source": "data"},
        })
    );
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/generations/{id}"), &key).await,
        created
    );
    let listed = app.get_json("/v1/generations", &key).await;
    assert_eq!(listed["items"][0], created);

    let mut by_url = generation_body();
    by_url["person_image"] = json!("https://example.com/person.png");
    let response = app.post_generation(&key, &by_url, None).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        created["inputs"]["person_image"],
        json!({"source": "url", "url": "https://example.com/person.png"})
    );
    assert!(created.get("prompt").is_none());
    assert!(created.get("aspect_ratio").is_none());
}

async fn uploads_are_listed_read_and_deleted(url: String) {
    // On a clock that stands still, the views' signed URLs are the same every time.
    let app = TestApp::builder(&url).manual_clock().spawn().await;
    let (account_id, key) = app.funded_account(1).await;
    let (_, other_key) = app.funded_account(0).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(app.upload_png(&key).await);
    }

    let first = app.get_json("/v1/uploads?limit=2", &key).await;
    assert_eq!(first["items"], json!([made[2], made[1]]), "newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get_json(&format!("/v1/uploads?limit=2&cursor={cursor}"), &key)
        .await;
    assert_eq!(second["items"], json!([made[0]]));
    assert_eq!(second["next_cursor"], Value::Null);
    let theirs = app.get_json("/v1/uploads", &other_key).await;
    assert_eq!(theirs["items"], json!([]));

    let id = made[1]["id"].as_str().unwrap();
    let path = format!("/v1/uploads/{id}");
    assert_eq!(app.get_json(&path, &key).await, made[1]);
    for response in [
        app.get(&path, &other_key).await,
        app.delete(&path, &other_key).await,
        app.get("/v1/uploads/not-an-id", &key).await,
    ] {
        assert_eq!(error_code(response, 404).await, "upload_not_found");
    }
    let object = format!("uploads/{account_id}/{id}");
    assert!(app.state.storage.exists(&object).await.unwrap());

    let deleted = app.delete(&path, &key).await;
    assert_eq!(deleted.status(), 204);
    assert!(!app.state.storage.exists(&object).await.unwrap());
    assert_eq!(
        error_code(app.get(&path, &key).await, 404).await,
        "upload_not_found"
    );
    assert_eq!(
        error_code(app.delete(&path, &key).await, 404).await,
        "upload_not_found"
    );
    let left = app.get_json("/v1/uploads", &key).await;
    assert_eq!(left["items"], json!([made[2], made[0]]));
    let mut body = generation_body();
    body["person_image"] = made[1]["reference"].clone();
    let response = app.post_generation(&key, &body, None).await;
    assert_eq!(error_code(response, 422).await, "unknown_upload");
}

/// A generation's provider reads the upload while the generation is live: deleting it then is
/// refused, and allowed once the generation has ended.
async fn an_upload_a_live_generation_uses_is_not_deleted(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    let upload = app.upload_png(&key).await;
    let mut body = generation_body();
    body["garment_image"] = upload["reference"].clone();
    let response = app.post_generation(&key, &body, None).await;
    assert_eq!(response.status(), 202);
    let generation: Value = response.json().await.unwrap();

    let path = format!("/v1/uploads/{}", upload["id"].as_str().unwrap());
    let refused = app.delete(&path, &key).await;
    assert_eq!(error_code(refused, 409).await, "upload_in_use");
    // The same upload; its URL is signed afresh (its expiry may be a second later).
    let without_url = |mut upload: Value| {
        upload.as_object_mut().unwrap().remove("url");
        upload
    };
    assert_eq!(
        without_url(app.get_json(&path, &key).await),
        without_url(upload.clone())
    );

    let id = generation["id"].as_str().unwrap();
    let canceled = app
        .post_empty(&format!("/v1/generations/{id}/cancel"), &key)
        .await;
    assert_eq!(canceled.status(), 200);
    assert_eq!(app.delete(&path, &key).await.status(), 204);
    // The ended generation still says what it was asked.
    let ended = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(
        ended["inputs"]["garment_image"]["reference"],
        upload["reference"]
    );
}

async fn multipart_uploads_take_one_file_part(url: String) {
    let limit = 4096;
    let app = TestApp::builder(&url)
        .configure(|settings| settings.http.upload_limit_bytes = limit)
        .spawn()
        .await;
    let (_, key) = app.funded_account(0).await;
    let image = png(6, 6, [1, 2, 3]);

    let (content_type, body) = form(&[("file", Some("image/png"), &image)]);
    let response = app.upload_raw(&key, &content_type, body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["content_type"], "image/png");
    assert_eq!(created["size"], image.len());
    let readback = app
        .client
        .get(created["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(readback.bytes().await.unwrap().as_ref(), image.as_slice());

    let too_big = vec![0_u8; limit + 1];
    let far_too_big = vec![0_u8; 64 * 1024];
    let bad: Vec<(Vec<Part>, u16, &str)> = vec![
        (
            vec![("file", Some("text/plain"), &image)],
            415,
            "unsupported_media_type",
        ),
        (vec![("file", None, &image)], 415, "unsupported_media_type"),
        (
            vec![("file", Some("image/jpeg"), &image)],
            422,
            "invalid_image",
        ),
        (
            vec![("file", Some("image/png"), &too_big)],
            413,
            "payload_too_large",
        ),
        (
            vec![("file", Some("image/png"), &far_too_big)],
            413,
            "payload_too_large",
        ),
        (vec![], 422, "missing_file"),
        (
            vec![("image", Some("image/png"), &image)],
            422,
            "unexpected_part",
        ),
        (
            vec![("file", Some("image/png"), &image), ("note", None, b"hi")],
            422,
            "unexpected_part",
        ),
        (
            vec![
                ("file", Some("image/png"), &image),
                ("file", Some("image/png"), &image),
            ],
            422,
            "unexpected_part",
        ),
    ];
    for (parts, status, code) in bad {
        let (content_type, body) = form(&parts);
        let response = app.upload_raw(&key, &content_type, body).await;
        assert_eq!(error_code(response, status).await, code, "{parts:?}");
    }
    let no_boundary = app
        .upload_raw(
            &key,
            "multipart/form-data",
            form(&[("file", None, &image)]).1,
        )
        .await;
    assert_eq!(error_code(no_boundary, 400).await, "malformed_multipart");

    let listed = app.get_json("/v1/uploads", &key).await;
    // Each read signs the URL anew, its expiry counted from that second: the rows are
    // compared without it (two reads across a second's turn differed by one).
    let unsigned = |item: &Value| {
        let mut item = item.clone();
        item.as_object_mut().unwrap().remove("url");
        item
    };
    let listed: Vec<Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(unsigned)
        .collect();
    assert_eq!(
        listed,
        [unsigned(&created)],
        "only the good form stored anything"
    );
}

async fn the_ledger_filters_by_kind_generation_and_time(url: String) {
    let app = TestApp::builder(&url).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let (_, key) = app.funded_account(5).await;
    let t1 = app.state.clock.now() + Span::minutes(1);
    clock.advance(Span::minutes(1));
    let first = app.create_generation(&key).await;
    let first_id = first["id"].as_str().unwrap();
    clock.advance(Span::minutes(1));
    let second = app.create_generation(&key).await;
    let second_id = second["id"].as_str().unwrap();
    clock.advance(Span::minutes(1));
    let t3 = app.state.clock.now();
    let canceled = app
        .post_empty(&format!("/v1/generations/{first_id}/cancel"), &key)
        .await;
    assert_eq!(canceled.status(), 200);

    let kinds = |query: String| {
        let app = &app;
        let key = key.clone();
        async move {
            let page = app.get_json(&format!("/v1/ledger?{query}"), &key).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| {
                    let generation = item["generation_id"].as_str().unwrap_or("-");
                    format!("{} {generation}", item["kind"].as_str().unwrap())
                })
                .collect::<Vec<_>>()
        }
    };
    let at = |instant: DateTime<Utc>| instant.to_rfc3339().replace('+', "%2B");
    let grant = "grant -".to_owned();
    let hold = |id: &str| format!("hold {id}");
    assert_eq!(
        kinds("kind=hold".into()).await,
        [hold(second_id), hold(first_id)]
    );
    assert_eq!(
        kinds("kind=release".into()).await,
        [format!("release {first_id}")]
    );
    assert_eq!(
        kinds(format!("generation={first_id}")).await,
        [format!("release {first_id}"), hold(first_id)]
    );
    assert_eq!(
        kinds(format!("kind=hold&generation={second_id}")).await,
        [hold(second_id)]
    );
    assert_eq!(kinds(format!("to={}", at(t1))).await, [grant.as_str()]);
    assert_eq!(
        kinds(format!("from={}&to={}", at(t1), at(t3))).await,
        [hold(second_id), hold(first_id)]
    );
    assert_eq!(
        kinds(format!("from={}", at(t3))).await,
        [format!("release {first_id}")]
    );
    // `Z` and offsets name the same instants.
    let z = t1.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    assert_eq!(kinds(format!("to={z}")).await, [grant]);
    let paged = app.get_json("/v1/ledger?kind=hold&limit=1", &key).await;
    let cursor = paged["next_cursor"].as_str().unwrap();
    assert_eq!(
        kinds(format!("kind=hold&limit=1&cursor={cursor}")).await,
        [hold(first_id)]
    );
}

async fn unknown_or_bad_query_parameters_are_refused(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    app.create_generation(&key).await;
    let before = app.get_json("/v1/ledger", &key).await;
    for (path, code) in [
        ("/v1/ledger?kinds=hold", "unknown_parameter"),
        ("/v1/ledger?kind=hold&kind=grant", "duplicate_parameter"),
        ("/v1/ledger?kind=refund", "invalid_kind"),
        ("/v1/ledger?kind=", "invalid_kind"),
        ("/v1/ledger?generation=42", "invalid_generation"),
        ("/v1/ledger?from=yesterday", "invalid_time"),
        ("/v1/ledger?to=2030-01-01", "invalid_time"),
        // An unescaped `+` reads as a space.
        ("/v1/ledger?from=2030-01-01T00:00:00+00:00", "invalid_time"),
        (
            "/v1/ledger?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z",
            "invalid_range",
        ),
        (
            "/v1/ledger?from=2030-01-01T00:00:00Z&to=2030-01-01T00:00:00Z",
            "invalid_range",
        ),
        ("/v1/ledger?limit=500", "invalid_limit"),
        ("/v1/ledger?cursor=x", "invalid_cursor"),
        ("/v1/generations?status=settled", "unknown_parameter"),
        (
            "/v1/generations?state=settled&state=released",
            "duplicate_parameter",
        ),
        ("/v1/uploads?page=2", "unknown_parameter"),
        ("/v1/uploads?cursor=7", "invalid_cursor"),
        ("/v1/uploads?limit=0", "invalid_limit"),
        ("/v1/api-keys?limit=5", "unknown_parameter"),
        ("/v1/ledger?%ZZ=1", "unknown_parameter"),
    ] {
        let response = app.get(path, &key).await;
        assert_eq!(error_code(response, 422).await, code, "{path}");
    }
    let rotate = app.post_empty("/v1/api-keys?grace=0", &key).await;
    assert_eq!(error_code(rotate, 422).await, "unknown_parameter");
    assert_eq!(
        app.get_json("/v1/ledger", &key).await,
        before,
        "nothing written"
    );
    let keys = app.get_json("/v1/api-keys", &key).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1, "no key made");
}

async fn rotated_keys_work_for_the_grace_period_then_stop(url: String) {
    let app = TestApp::builder(&url)
        .manual_clock()
        .configure(|settings| settings.api_keys.rotation_grace_secs = 3600)
        .spawn()
        .await;
    let clock = app.clock.clone().unwrap();
    let (_, old) = app.funded_account(0).await;
    let works = |key: String| {
        let app = &app;
        async move { app.get("/v1/balance", &key).await.status().as_u16() }
    };
    let listed = app.get_json("/v1/api-keys", &old).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["masked"],
        format!("atl_…{}", &old[old.len() - 4..])
    );
    assert!(items[0].get("expires_at").is_none());
    assert!(!listed.to_string().contains(&old));

    let now = app.state.clock.now();
    let response = app.post_empty("/v1/api-keys", &old).await;
    assert_eq!(response.status(), 201);
    let rotated: Value = response.json().await.unwrap();
    let new = rotated["api_key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("atl_") && new != old);
    let expires: DateTime<Utc> = rotated["previous_keys_expire_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires, now + Span::hours(1));
    assert_eq!(
        (works(old.clone()).await, works(new.clone()).await),
        (200, 200)
    );

    let listed = app.get_json("/v1/api-keys", &new).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], rotated["id"], "newest first");
    assert!(items[0].get("expires_at").is_none());
    let old_expires: DateTime<Utc> = items[1]["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(old_expires, expires);

    clock.advance(Span::seconds(3599));
    assert_eq!(works(old.clone()).await, 200, "still in the grace period");
    clock.advance(Span::seconds(1));
    let refused = app.get("/v1/balance", &old).await;
    assert_eq!(error_code(refused, 401).await, "invalid_credentials");
    assert_eq!(works(new.clone()).await, 200);
    let listed = app.get_json("/v1/api-keys", &new).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // Rotations within a grace period pile up keys that work, up to a bound.
    let mut latest = new;
    for _ in 1..atelier::accounts::MAX_LIVE_KEYS {
        let response = app.post_empty("/v1/api-keys", &latest).await;
        assert_eq!(response.status(), 201);
        let rotated: Value = response.json().await.unwrap();
        latest = rotated["api_key"].as_str().unwrap().to_owned();
    }
    let refused = app.post_empty("/v1/api-keys", &latest).await;
    assert_eq!(error_code(refused, 409).await, "too_many_keys");
    let listed = app.get_json("/v1/api-keys", &latest).await;
    assert_eq!(
        listed["items"].as_array().unwrap().len() as u64,
        atelier::accounts::MAX_LIVE_KEYS
    );
    clock.advance(Span::hours(1));
    assert_eq!(app.post_empty("/v1/api-keys", &latest).await.status(), 201);
    let admin = app.post_empty("/v1/api-keys", ADMIN_TOKEN).await;
    assert_eq!(error_code(admin, 403).await, "forbidden");
}

/// An account made before `api_keys` existed keeps its key through the migration.
async fn keys_made_before_the_key_table_still_work(url: String) {
    use atelier_entities::account;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let db = atelier_actors::db::connect(&url).await.unwrap();
    let migrations = Migrator::migrations();
    let ours = migrations
        .iter()
        .position(|migration| migration.name() == "m20261202_000010_customer_api")
        .expect("the migration is registered");
    Migrator::up(&db, Some(ours as u32)).await.unwrap();
    let now = crate::common::start_of_test_time();
    let key = "atl_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let id = uuid::Uuid::now_v7();
    account::Entity::insert(account::ActiveModel {
        id: Set(id),
        name: Set(None),
        api_key_hash: Set(atelier::accounts::hash_secret(key)),
        created_at: Set(now),
        // Columns of later migrations stay unset.
        ..Default::default()
    })
    .exec_without_returning(&db)
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let found = atelier::accounts::find_by_api_key(&db, key, now)
        .await
        .unwrap();
    assert_eq!(found.map(|account| account.id), Some(id));
    let keys = atelier::accounts::live_keys(&db, id, now).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(atelier::accounts::masked_key(&keys[0]), "atl_…????");
    let from_ours = (migrations.len() - ours) as u32;
    Migrator::down(&db, Some(from_ours)).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let found = atelier::accounts::find_by_api_key(&db, key, now)
        .await
        .unwrap();
    assert_eq!(
        found.map(|account| account.id),
        Some(id),
        "after down and up"
    );
}
