//! The Cog adapter against a real Cog server (`python -m cog.server.http`, cog 0.23.1) serving
//! the stand-in try-on model in `tests/fixtures/cog/predict.py`: a generation settles with the
//! model's image (charged its cost, or its reported compute time when priced by the second), a
//! raising model and a killed server release the credits, and the real binary SIGKILLed
//! mid-prediction settles after a restart (the result redelivered by Cog) without starting a
//! second prediction. Against each database.
//!
//! The server runs from the Python named by `ATELIER_TEST_COG_PYTHON` (`.ci/cog-setup.sh`
//! provides one, `.ci/run` sets it); without it these tests print a note and pass.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    self, ADMIN_TOKEN, TestApp, atelier_command, data_uri, free_port, png, remote_account,
    wait_ready,
};
use atelier::config::Settings;
use atelier_actors::providers::config::ProviderConfig;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

const COG_PYTHON_VAR: &str = "ATELIER_TEST_COG_PYTHON";
const WITHIN: Duration = Duration::from_secs(30);
const PERSON: [u8; 3] = [200, 180, 160];
const GARMENT: [u8; 3] = [20, 40, 200];
/// What a generation on Cog holds and charges; accounts start with `CREDITS`.
const COST: i64 = 2;
const CREDITS: i64 = 5;

database_tests!(
    a_generation_on_cog_settles_with_the_models_image,
    a_raising_model_releases_with_its_exception,
    a_cog_server_killed_mid_prediction_releases,
    a_sigkilled_atelier_resumes_without_a_second_prediction,
    a_time_priced_cog_charges_the_reported_compute,
);

/// The Python of a venv with Cog, or `None` (with a note) when the tests are not set up; a
/// failure then when `common::services_required()`.
fn cog_python() -> Option<PathBuf> {
    common::service_var(
        COG_PYTHON_VAR,
        "Cog (`bash .ci/cog-setup.sh` prints the python)",
    )
    .map(PathBuf::from)
}

/// A real Cog server on a free port, in its own process group and temporary directory (its
/// `TMPDIR`, its log and the predictions file); killed as a group and removed on drop.
struct CogServer {
    base_url: String,
    child: Option<Child>,
    dir: PathBuf,
}

impl CogServer {
    async fn start() -> Option<Self> {
        let python = cog_python()?;
        let bin = python
            .parent()
            .expect("the Cog python lies in a venv's bin/");
        let dir = std::env::temp_dir().join(format!("atelier-cog-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let port = free_port();
        // coglet starts its worker as `python` from PATH: the venv's must come first.
        let path = std::env::join_paths(
            std::iter::once(bin.to_path_buf()).chain(
                std::env::var_os("PATH")
                    .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )
        .unwrap();
        let child = Command::new(&python)
            .args(["-m", "cog.server.http", "--host", "127.0.0.1"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cog"))
            .env("PORT", port.to_string())
            .env("COG_PREDICT_TYPE_STUB", "predict.py:Predictor")
            .env("COG_FIXTURE_PREDICTIONS", dir.join("predictions"))
            .env("PATH", path)
            .env("TMPDIR", dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", python.display()));
        // Built before waiting, so that a server that never gets ready is still cleaned up.
        let mut server = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            dir,
        };
        server.wait_ready().await;
        Some(server)
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client
                .get(format!("{}/health-check", self.base_url))
                .send()
                .await
                && let Ok(health) = response.json::<Value>().await
                && health["status"] == "READY"
            {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && started.elapsed() < Duration::from_secs(60),
                "the Cog server did not get ready ({exited:?}):\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The `garment_des` of every prediction the model started, in order.
    fn predictions(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("predictions"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// SIGKILLs the whole group (the HTTP server and its Python worker) and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Atelier's provider table for this server.
    fn provider(&self, extra_input: &[(&str, Value)]) -> ProviderConfig {
        let mut config = ProviderConfig::costing(COST);
        config.base_url = Some(self.base_url.clone());
        config.extra_input = extra_input
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        config
    }
}

impl Drop for CogServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Settings for an app whose default provider is `cog`, with deadlines short enough that a
/// stuck generation fails the test in seconds.
fn on_cog(settings: &mut Settings, provider: ProviderConfig, overall_deadline_secs: u64) {
    settings.providers.by_name.insert("cog".into(), provider);
    settings.default_provider = "cog".into();
    settings.workflow.overall_deadline_secs = overall_deadline_secs;
    settings.workflow.submit_deadline_secs = 5;
}

/// A 40x60 person photo, a 10x10 garment and a prompt (the model's `garment_des`).
fn try_on(prompt: &str) -> Value {
    json!({
        "person_image": data_uri(&png(40, 60, PERSON)),
        "garment_image": data_uri(&png(10, 10, GARMENT)),
        "prompt": prompt,
    })
}

async fn create(app: &TestApp, key: &str, prompt: &str) -> String {
    let response = app.post_generation(key, &try_on(prompt), None).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["provider"], "cog", "{created}");
    assert_eq!(created["cost"], COST, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Waits until the generation is awaiting its callback and the model has started predicting.
async fn wait_predicting(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    cog: &CogServer,
) {
    let started = Instant::now();
    loop {
        let generation: Value = client
            .get(format!("{base}/v1/generations/{id}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if generation["state"] == "awaiting_callback" && !cog.predictions().is_empty() {
            return;
        }
        assert!(
            ["reserved", "submitted", "awaiting_callback"]
                .contains(&generation["state"].as_str().unwrap()),
            "{generation}"
        );
        assert!(
            started.elapsed() < WITHIN,
            "not predicting in time: {generation}\n{}",
            cog.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Released with one of `codes`, every credit available again, the hold released once.
async fn assert_released(app: &TestApp, key: &str, generation: &Value, codes: &[&str]) {
    assert_eq!(generation["state"], "released", "{generation}");
    let code = generation["error"]["code"].as_str().unwrap_or_default();
    assert!(codes.contains(&code), "{generation}");
    assert!(generation.get("result_url").is_none(), "{generation}");
    let balance = app.balance(key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(CREDITS), Some(0)),
        "{balance}"
    );
    assert_eq!(app.ledger_kinds(key).await, ["release", "hold", "grant"]);
}

async fn a_generation_on_cog_settles_with_the_models_image(url: String) {
    let Some(cog) = CogServer::start().await else {
        return;
    };
    let provider = cog.provider(&[]);
    let app = TestApp::builder(&url)
        .engine(|s| on_cog(s, provider, 20))
        .spawn()
        .await;
    let (_, key) = app.funded_account(CREDITS).await;
    let id = create(&app, &key, "a blue shirt").await;
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}\n{}", cog.log());
    assert_eq!(done["charged"], COST, "{done}");

    // The model's image, copied into our storage: the person photo with the garment on it.
    let download = app
        .client
        .get(done["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let bytes = download.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (40, 60), "the person photo's size");
    assert_eq!(
        image.get_pixel(20, 30).0,
        GARMENT,
        "the garment at the centre"
    );
    assert_eq!(image.get_pixel(1, 1).0, PERSON, "the person around it");

    assert_eq!(cog.predictions(), ["a blue shirt"], "one prediction");
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(CREDITS - COST), Some(0)),
        "{balance}"
    );
    assert_eq!(app.ledger_kinds(&key).await, ["settle", "hold", "grant"]);

    let events = app.timeline(&key, &id).await;
    let moves: Vec<(&str, &str)> = events
        .iter()
        .map(|(from, to, _)| (from.as_str(), to.as_str()))
        .collect();
    assert_eq!(
        moves,
        [
            ("-", "reserved"),
            ("reserved", "submitted"),
            ("submitted", "awaiting_callback"),
            ("awaiting_callback", "uploading"),
            ("uploading", "settled"),
        ],
        "{events:?}"
    );
    // The prediction's id is the generation's: that is what makes a resubmission idempotent.
    assert!(events[1].2.contains(&id), "{events:?}");
    assert!(
        events[4].2.contains(&format!("charged {COST}")),
        "{events:?}"
    );
    assert!(events[3].2.contains("by callback"), "{events:?}");

    // Cog inlined its image in the callback: it went straight to our storage, and the
    // workflow row keeps a short note instead of megabytes of base64.
    let row = atelier_entities::workflow::Entity::find_by_id(uuid::Uuid::parse_str(&id).unwrap())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let source = row.result_source.unwrap();
    assert!(
        !source.starts_with("data:") && source.len() < 100,
        "{source}"
    );
}

async fn a_raising_model_releases_with_its_exception(url: String) {
    let Some(cog) = CogServer::start().await else {
        return;
    };
    let provider = cog.provider(&[]);
    let app = TestApp::builder(&url)
        .engine(|s| on_cog(s, provider, 20))
        .spawn()
        .await;
    let (_, key) = app.funded_account(CREDITS).await;
    let id = create(&app, &key, "please explode").await;
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_released(&app, &key, &done, &["provider_failed"]).await;
    assert_eq!(
        done["error"]["message"],
        "the provider could not complete the generation"
    );
    // The model's own words are for the timeline, not for the client.
    let (_, _, reason) = app.timeline(&key, &id).await.pop().unwrap();
    assert!(
        reason.contains("ValueError") && reason.contains("the try-on model exploded"),
        "{reason}"
    );
    assert_eq!(cog.predictions(), ["please explode"]);
}

async fn a_cog_server_killed_mid_prediction_releases(url: String) {
    let Some(mut cog) = CogServer::start().await else {
        return;
    };
    let provider = cog.provider(&[("delay_ms", json!(3_000))]);
    const OVERALL_DEADLINE_SECS: u64 = 5;
    let app = TestApp::builder(&url)
        .engine(|s| {
            on_cog(s, provider, OVERALL_DEADLINE_SECS);
            s.workflow.callback_deadline_secs = 1;
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(CREDITS).await;
    let created_at = Instant::now();
    let id = create(&app, &key, "doomed").await;
    wait_predicting(&app.client, &app.address, &key, &id, &cog).await;
    cog.kill();

    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_released(&app, &key, &done, &["provider_failed", "timeout"]).await;
    eprintln!(
        "killed Cog server: released after {:?} with {}",
        created_at.elapsed(),
        done["error"]
    );
    // No callback can come and every poll finds no server: the wait ends in one release, by
    // the overall deadline unless a poll already failed for good. Nothing is resubmitted.
    let events = app.timeline(&key, &id).await;
    let steps: Vec<_> = events
        .iter()
        .map(|(from, to, _)| (from.clone(), to.clone()))
        .collect();
    let mut expected = common::happy_timeline();
    expected.truncate(3);
    expected.push(("awaiting_callback".into(), "released".into()));
    assert_eq!(steps, expected, "{events:?}");
    let code = done["error"]["code"].as_str().unwrap();
    let (_, _, reason) = events.last().unwrap();
    match code {
        "timeout" => assert_eq!(reason, "timeout: no result within the overall deadline"),
        _ => assert!(reason.starts_with(&format!("{code}: ")), "{reason}"),
    }
}

async fn a_time_priced_cog_charges_the_reported_compute(url: String) {
    let Some(cog) = CogServer::start().await else {
        return;
    };
    // About 0.2 s of compute (Cog's `metrics.predict_time`) at 1 credit a second: 1 credit,
    // less than the 2 held.
    let mut provider = cog.provider(&[("delay_ms", json!(200))]);
    provider.credits_per_second = Some(1.0);
    let app = TestApp::builder(&url)
        .engine(|s| on_cog(s, provider, 20))
        .spawn()
        .await;
    let (_, key) = app.funded_account(CREDITS).await;
    let id = create(&app, &key, "by the second").await;
    let done = app.wait_terminal(&key, &id, WITHIN).await;
    assert_eq!(done["state"], "settled", "{done}\n{}", cog.log());
    assert_eq!(
        (done["cost"].as_i64(), done["charged"].as_i64()),
        (Some(COST), Some(1)),
        "{done}"
    );
    let balance = app.balance(&key).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(CREDITS - 1), Some(0)),
        "{balance}"
    );
    // The settle charges 1 of the hold; the other credit is released.
    assert_eq!(
        app.ledger_kinds(&key).await,
        ["release", "settle", "hold", "grant"]
    );
}

/// The real binary on a Cog provider configured through the environment.
fn start_atelier(url: &str, port: u16, data_dir: &Path, cog: &CogServer) -> Child {
    atelier_command(url)
        .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
        .env("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ATELIER_DATA_DIR", data_dir)
        .env("ATELIER_DEFAULT_PROVIDER", "cog")
        .env("ATELIER_PROVIDERS__COG__COST", COST.to_string())
        .env("ATELIER_PROVIDERS__COG__BASE_URL", &cog.base_url)
        .env("ATELIER_PROVIDERS__COG__EXTRA_INPUT__DELAY_MS", "2500")
        .env("ATELIER_WORKFLOW__CALLBACK_DEADLINE_SECS", "2")
        .env("ATELIER_WORKFLOW__OVERALL_DEADLINE_SECS", "30")
        .stdout(Stdio::null())
        .spawn()
        .expect("start atelier")
}

/// What cog 0.23.1 logs when it could not deliver a prediction's final webhook and will try
/// again (after 200 ms, then twice as long each time).
const UNDELIVERED: &str = "Terminal webhook request error, retrying";

/// Kills the binary for good when the test fails half-way.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn a_sigkilled_atelier_resumes_without_a_second_prediction(url: String) {
    let Some(cog) = CogServer::start().await else {
        return;
    };
    let data_dir = std::env::temp_dir().join(format!("atelier-cog-crash-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut atelier = Killed(start_atelier(&url, port, &data_dir, &cog));
    wait_ready(&client, &base, &mut atelier.0).await;

    let (_, key) = remote_account(&client, &base, CREDITS, "cog-crash").await;
    let response = client
        .post(format!("{base}/v1/generations"))
        .bearer_auth(&key)
        .json(&try_on("crash and restart"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["provider"], "cog", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // Accepted by Cog and running (its inputs fetched): now the process dies, and stays down
    // until the prediction has finished and Cog failed to deliver its result, so that the
    // result reaches the next process through Cog's redelivery.
    wait_predicting(&client, &base, &key, &id, &cog).await;
    atelier.0.kill().unwrap(); // SIGKILL
    atelier.0.wait().unwrap();
    let killed_at = Instant::now();
    while !cog.log().contains(UNDELIVERED) {
        assert!(
            killed_at.elapsed() < WITHIN,
            "Cog never tried to deliver the result:\n{}",
            cog.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    atelier = Killed(start_atelier(&url, port, &data_dir, &cog));
    wait_ready(&client, &base, &mut atelier.0).await;
    eprintln!("atelier down for {:?}", killed_at.elapsed());

    let started = Instant::now();
    let done = loop {
        let generation: Value = client
            .get(format!("{base}/v1/generations/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["settled", "released"].contains(&generation["state"].as_str().unwrap()) {
            break generation;
        }
        assert!(
            started.elapsed() < WITHIN,
            "not terminal in time: {generation}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Polling Cog cannot yield a result (it only tells whether the server is alive): the
    // result came with the callback that Cog redelivered to the new process.
    assert_eq!(done["state"], "settled", "{done}\n{}", cog.log());
    assert_eq!(
        cog.predictions(),
        ["crash and restart"],
        "the restart started a second prediction"
    );
    let result = client
        .get(done["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(result.status(), 200);
    let image = image::load_from_memory(&result.bytes().await.unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (40, 60));
    let balance: Value = client
        .get(format!("{base}/v1/balance"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(CREDITS - COST), Some(0)),
        "{balance}"
    );
    drop(atelier);

    let verify = atelier_command(&url)
        .env("ATELIER_DATA_DIR", &data_dir)
        .env("ATELIER_DEFAULT_PROVIDER", "cog")
        .env("ATELIER_PROVIDERS__COG__COST", COST.to_string())
        .env("ATELIER_PROVIDERS__COG__BASE_URL", &cog.base_url)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    std::fs::remove_dir_all(&data_dir).ok();
}
