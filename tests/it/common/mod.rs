//! The test harness: throwaway databases of each kind, the real HTTP service on port 0, and a
//! client for it.
//!
//! Every database test runs on SQLite (always) and on PostgreSQL when `ATELIER_TEST_POSTGRES_URL`
//! names a server; each run gets a fresh database that is dropped afterwards, also when the test
//! fails.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use atelier::config::Settings;
use atelier::scratch::ScratchDatabase;
use atelier_actors::{Clock, SystemClock};
use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use serde_json::{Value, json};

pub mod browser;
pub mod s3_server;
mod test_app;
pub use s3_server::S3Server;
pub use test_app::TestApp;

pub const POSTGRES_URL_VAR: &str = "ATELIER_TEST_POSTGRES_URL";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Set (as CI sets `CI`), a service a test needs and cannot find fails the test instead of
/// skipping it, so that a run cannot pass by skipping.
pub const REQUIRE_SERVICES_VARS: [&str; 2] = ["CI", "ATELIER_TEST_REQUIRE_SERVICES"];

/// Whether `REQUIRE_SERVICES_VARS` asks for every service ("", "0" and "false" do not).
pub fn services_required() -> bool {
    REQUIRE_SERVICES_VARS.iter().any(|name| {
        std::env::var(name).is_ok_and(|value| !["", "0", "false"].contains(&value.as_str()))
    })
}

/// The value of `var`, which names a service `what`; without it the test is skipped with a
/// note on stderr, or fails when `services_required()`.
pub fn service_var(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if services_required() => panic!(
            "{what} is required ({} is set) but {var} is not set",
            REQUIRE_SERVICES_VARS.join(" or ")
        ),
        _ => {
            eprintln!("skipped on {what}: {var} is not set");
            None
        }
    }
}

/// Where scratch databases of `backend` are made: `None` (with a note on stderr) when the
/// PostgreSQL server is not configured, a failure when `services_required()`.
pub fn server_url(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => Some("sqlite://unused".to_owned()),
        Backend::Postgres => service_var(POSTGRES_URL_VAR, "PostgreSQL"),
    }
}

/// Runs `test` against a fresh database of `backend` and drops the database afterwards. A
/// PostgreSQL run without `ATELIER_TEST_POSTGRES_URL` is skipped with a note on stderr (or
/// fails, when `services_required()`).
pub async fn on_database<F, Fut>(backend: Backend, label: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(like) = server_url(backend) else {
        return;
    };
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    let scratch = ScratchDatabase::create(&like, &label.to_lowercase())
        .await
        .expect("create scratch database");
    let outcome = AssertUnwindSafe(test(scratch.url.clone()))
        .catch_unwind()
        .await;
    scratch.destroy().await.expect("drop scratch database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `database_tests!(name, ...)` turns each `async fn name(url: String)` into two tests,
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! database_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[actix_web::test]
                async fn sqlite() {
                    $crate::common::on_database(
                        $crate::common::Backend::Sqlite, stringify!($name), super::$name,
                    ).await;
                }

                #[actix_web::test]
                async fn postgres() {
                    $crate::common::on_database(
                        $crate::common::Backend::Postgres, stringify!($name), super::$name,
                    ).await;
                }
            }
        )*
    };
}

pub fn settings(database_url: &str) -> Settings {
    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Settings::default()
    };
    settings.http.workers = 1;
    // API tests watch rows stand still; workflow tests start the engine themselves.
    settings.workflow.run_engine = false;
    // Leases turn over within a few seconds, so a test of a takeover need not wait long.
    settings.cluster.lease_ttl_ms = 3_000;
    settings.cluster.renew_ms = 300;
    settings.data_dir = std::env::temp_dir().join(format!("atelier-test-{}", uuid::Uuid::new_v4()));
    settings
}

pub fn start_of_test_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

impl TestApp {
    /// Polls the generation until it is terminal (or fails after `within`).
    pub async fn wait_terminal(
        &self,
        api_key: &str,
        id: &str,
        within: std::time::Duration,
    ) -> Value {
        self.wait_state(api_key, id, &["settled", "released"], within)
            .await
    }

    /// Polls the generation until it is in one of `states` (or fails after `within`).
    pub async fn wait_state(
        &self,
        api_key: &str,
        id: &str,
        states: &[&str],
        within: std::time::Duration,
    ) -> Value {
        let path = &format!("/v1/generations/{id}");
        wait_for(
            &format!("generation {id} in {states:?}"),
            within,
            || async move {
                let generation = self.get_json(path, api_key).await;
                match generation["state"].as_str() {
                    Some(state) if states.contains(&state) => Ok(generation),
                    _ => Err(generation),
                }
            },
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Creates an account and returns (id, api key).
    pub async fn create_account(&self) -> (String, String) {
        let response = self.admin_post("/v1/accounts", &json!({})).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn grant(&self, account_id: &str, body: &Value) -> reqwest::Response {
        self.admin_post(&format!("/v1/accounts/{account_id}/grants"), body)
            .await
    }

    pub async fn balance(&self, api_key: &str) -> Value {
        let response = self.get("/v1/balance", api_key).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// Asserts the API's error shape and returns the error code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status, "unexpected status");
    let body: Value = response.json().await.expect("error body is JSON");
    let message = body["error"]["message"].as_str().expect("error.message");
    assert!(!message.is_empty(), "error message is empty");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// The `atelier` binary on `database_url`, isolated from any configuration lying around.
pub fn atelier_command(database_url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    command
        .env("DATABASE_URL", database_url)
        .env_remove("ATELIER_CONFIG")
        .env("RUST_LOG", "error")
        .current_dir(std::env::temp_dir());
    command
}

/// `atelier verify` on the database of `app`, whose storage it checks results in.
pub fn verify_app(app: &TestApp) -> (bool, String) {
    let mut command = atelier_command(&app.state.settings.database_url);
    command
        .arg("verify")
        .env("ATELIER_DATA_DIR", &app.state.settings.data_dir);
    run_verify(command)
}

/// Runs an `atelier verify` command: (whether every invariant holds, what it printed). Exit
/// code 2 is broken invariants; anything else but 0 is a verify that could not run.
pub fn run_verify(mut command: std::process::Command) -> (bool, String) {
    let output = command.output().expect("run atelier verify");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    match output.status.code() {
        Some(0) => (true, report),
        Some(2) => (false, report),
        other => panic!(
            "verify could not run ({other:?}): {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// A migrated database and a ledger actor on it, on the system clock.
pub async fn open_ledger(
    database_url: &str,
) -> (sea_orm::DatabaseConnection, atelier_actors::ledger::Ledger) {
    use atelier_actors::ledger::{Ledger, store::LedgerStore};
    let db = atelier::startup::open_database(database_url)
        .await
        .expect("open database");
    let ledger = Ledger::start(LedgerStore::new(db.clone(), Arc::new(SystemClock)), 512);
    (db, ledger)
}

/// A new account holding one never-expiring grant of `credits`.
pub async fn funded_account(
    db: &sea_orm::DatabaseConnection,
    ledger: &atelier_actors::ledger::Ledger,
    credits: i64,
) -> uuid::Uuid {
    use atelier_actors::ledger::GrantOutcome;
    let account = atelier::accounts::create(db, None, SystemClock.now())
        .await
        .expect("create account")
        .account
        .id;
    let credits = atelier_actors::Credits::parse(credits).expect("valid credits");
    let granted = ledger
        .grant(account, credits, None, format!("fund-{account}"))
        .await;
    assert!(
        matches!(granted, Ok(GrantOutcome::Created(_))),
        "{granted:?}"
    );
    account
}

/// A real PNG of `width` x `height` in one colour.
pub fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode png");
    bytes.into_inner()
}

/// A real 10000×10000 PNG of under a megabyte that would take 300 MB to decode: larger than
/// the default image limits.
pub fn huge_png() -> Vec<u8> {
    static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    HUGE.get_or_init(|| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::GrayImage::new(10_000, 10_000)
            .write_to(&mut bytes, image::ImageFormat::Png)
            .expect("encode png");
        bytes.into_inner()
    })
    .clone()
}

/// Whether anything is stored under `prefix` (e.g. `uploads`) in the app's data directory.
pub fn stored_under(settings: &Settings, prefix: &str) -> bool {
    fn any_file(dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let path = entry.path();
                path.is_file() || any_file(&path)
            })
        })
    }
    any_file(&settings.data_dir.join(prefix))
}

pub fn data_uri(png: &[u8]) -> String {
    use base64::Engine;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

impl TestApp {
    /// A request to the built-in simulator's task API, with the key Atelier uses.
    pub fn simulator(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let key = self.state.settings.simulator.api_key.as_deref();
        self.client
            .request(method, self.url(path))
            .bearer_auth(key.expect("the simulator key is set at start"))
    }

    /// An account with `credits` never-expiring credits: (id, api key).
    pub async fn funded_account(&self, credits: i64) -> (String, String) {
        let (id, key) = self.create_account().await;
        if credits > 0 {
            let response = self
                .grant(
                    &id,
                    &json!({"credits": credits, "reference": format!("fund-{id}")}),
                )
                .await;
            assert_eq!(response.status(), 201);
        }
        (id, key)
    }

    pub async fn post_generation(
        &self,
        api_key: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/v1/generations"))
            .bearer_auth(api_key)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request")
    }

    /// Creates a generation that must be accepted (202) and returns it.
    pub async fn create_generation(&self, api_key: &str) -> Value {
        let response = self
            .post_generation(api_key, &generation_body(), None)
            .await;
        assert_eq!(response.status(), 202);
        response.json().await.expect("generation JSON")
    }

    /// GETs `path` expecting 200 and returns the JSON body.
    pub async fn get_json(&self, path: &str, api_key: &str) -> Value {
        let response = self.get(path, api_key).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    pub async fn post_empty(&self, path: &str, api_key: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(api_key)
            .send()
            .await
            .expect("request")
    }
}

/// A valid generation request with both images inline.
pub fn generation_body() -> Value {
    json!({
        "person_image": data_uri(&png(8, 12, [200, 180, 160])),
        "garment_image": data_uri(&png(4, 4, [20, 40, 200])),
    })
}

/// Logs go through the test harness's capture; `RUST_LOG` widens them (default: warnings).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl TestApp {
    /// A generation's timeline as (from, to, reason); `from` is "-" for the creation.
    pub async fn timeline(&self, api_key: &str, id: &str) -> Vec<(String, String, String)> {
        let events = self
            .get_json(&format!("/v1/generations/{id}/events"), api_key)
            .await;
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|event| {
                (
                    event["from"].as_str().unwrap_or("-").to_owned(),
                    event["to"].as_str().unwrap().to_owned(),
                    event["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The kinds of the account's ledger entries, newest first.
    pub async fn ledger_kinds(&self, api_key: &str) -> Vec<String> {
        let ledger = self.get_json("/v1/ledger", api_key).await;
        ledger["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the real binary at `base` answers `/readyz`; fails at once if it exited.
pub async fn wait_ready(client: &reqwest::Client, base: &str, child: &mut std::process::Child) {
    let started = std::time::Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return;
        }
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && started.elapsed() < std::time::Duration::from_secs(30),
            "atelier did not become ready ({exited:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// GETs `path` from the real binary at `base` as `key`: the JSON body.
pub async fn remote_get(client: &reqwest::Client, base: &str, path: &str, key: &str) -> Value {
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// An account on the real binary at `base`, granted `credits`: (id, api key).
pub async fn remote_account(
    client: &reqwest::Client,
    base: &str,
    credits: i64,
    reference: &str,
) -> (String, String) {
    let account: Value = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, key) = (
        account["id"].as_str().unwrap().to_owned(),
        account["api_key"].as_str().unwrap().to_owned(),
    );
    let grant = client
        .post(format!("{base}/v1/accounts/{id}/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"credits": credits, "reference": reference}))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), 201);
    (id, key)
}

/// The (from, to) timeline of a generation that went well; `from` is "-" for the creation.
pub fn happy_timeline() -> Vec<(String, String)> {
    [
        ("-", "reserved"),
        ("reserved", "submitted"),
        ("submitted", "awaiting_callback"),
        ("awaiting_callback", "uploading"),
        ("uploading", "settled"),
    ]
    .iter()
    .map(|(from, to)| (from.to_string(), to.to_string()))
    .collect()
}

/// Replays a crash test's random choices: set to the seed a failed run printed.
pub const SEED_VAR: &str = "ATELIER_TEST_SEED";

/// The random choices of the test `name`, from `ATELIER_TEST_SEED` or a fresh seed; the seed is
/// printed either way so that a failure can be replayed (its timing still varies).
pub fn seeded_rng(name: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed = match std::env::var(SEED_VAR) {
        Ok(seed) => seed.parse().expect("ATELIER_TEST_SEED is a u64"),
        Err(_) => rand::random(),
    };
    eprintln!("{name}: seed {seed} (replay with {SEED_VAR}={seed})");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Polls `probe` every 20 ms until it yields a value, and returns it; fails the test, saying
/// what it waited for and what `probe` last saw, once `within` has passed.
pub async fn wait_for<T, Seen, Fut>(
    what: &str,
    within: std::time::Duration,
    mut probe: impl FnMut() -> Fut,
) -> T
where
    Seen: std::fmt::Debug,
    Fut: Future<Output = Result<T, Seen>>,
{
    let started = std::time::Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                started.elapsed() < within,
                "{what}: not within {within:?}; last seen {seen:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A child process that is killed when the test lets go of it, also when the test fails: a
/// server left running would hold the harness's output open and hang the whole run.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `atelier verify` over `database_url`, with storage under `data_dir`, exits 0.
pub fn assert_verify_passes(database_url: &str, data_dir: &std::path::Path) {
    let verify = atelier_command(database_url)
        .env("ATELIER_DATA_DIR", data_dir)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Waits until a process's listener on `db` is connected and listening on `channel` (a
/// notification sent before would only be found by the channel's poll).
pub async fn wait_listening(db: &sea_orm::DatabaseConnection, channel: &str) {
    use sea_orm::ConnectionTrait;
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'LISTEN%{channel}%'"
    );
    let sql = &sql;
    wait_for(
        "the listener",
        std::time::Duration::from_secs(10),
        || async move {
            let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
            let row = db.query_one_raw(statement).await.unwrap().unwrap();
            let listening: i64 = row.try_get_by_index(0).unwrap();
            if listening > 0 {
                Ok(())
            } else {
                Err(listening)
            }
        },
    )
    .await;
}
