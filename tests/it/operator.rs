//! The real binary as an operator runs it: what it logs, what it refuses to start with, and
//! the CLI's answers.
use crate::common;

use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::common::{ADMIN_TOKEN, atelier_command, free_port, wait_ready};

/// A throwaway directory for a SQLite database and the data dir.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atelier-operator-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}/atelier.sqlite?mode=rwc", dir.display())
}

/// `atelier serve` on a fresh SQLite database in `dir`, logging at INFO into a pipe.
fn serve(dir: &std::path::Path, port: u16) -> Child {
    atelier_command(&sqlite_url(dir))
        .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
        .env("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ATELIER_DATA_DIR", dir.join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start atelier")
}

#[actix_web::test]
async fn the_access_log_masks_callback_tokens_and_signatures() {
    let dir = scratch_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = serve(&dir, port);
    wait_ready(&client, &base, &mut child).await;
    let id = uuid::Uuid::new_v4();
    client
        .post(format!(
            "{base}/webhooks/simulator/{id}?token=cb_topsecret1234"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    client
        .get(format!(
            "{base}/v1/files/results/x?expires=99&signature=feedface5678"
        ))
        .send()
        .await
        .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !log.contains("cb_topsecret1234"),
        "a token in the log: {log}"
    );
    assert!(
        !log.contains("feedface5678"),
        "a signature in the log: {log}"
    );
    assert!(
        log.contains(&format!("/webhooks/simulator/{id}?token=[redacted]")),
        "the request is logged: {log}"
    );
    assert!(log.contains("expires=99&signature=[redacted]"), "{log}");
}

/// Waits for `child` to exit on its own (killing it after `seconds`): its stderr, and whether
/// it failed.
fn exit_within(mut child: Child, seconds: u64) -> (bool, String) {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(seconds) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after {seconds} s: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        !output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_empty_or_short_signing_key_stops_the_start() {
    for kept in ["", "0123456789"] {
        let dir = scratch_dir();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/signing.key"), kept).unwrap();
        let (failed, stderr) = exit_within(serve(&dir, free_port()), 20);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(failed, "{stderr}");
        assert!(
            stderr.contains(&format!("signing.key holds {} bytes", kept.len()))
                && stderr.contains("at least 32"),
            "{stderr}"
        );
    }
}

/// `atelier migrate` on `database_url`: it must fail soon, with one line on stderr.
fn migrate_fails_in_one_line(database_url: &str) -> String {
    let child = atelier_command(database_url)
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start atelier migrate");
    let (failed, stderr) = exit_within(child, 15);
    assert!(failed, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn an_unreachable_postgres_fails_the_start_at_once_naming_host_and_database() {
    let stderr = migrate_fails_in_one_line("postgres://postgres@127.0.0.1:1/atelier_db");
    assert!(
        stderr.starts_with("atelier: cannot open database"),
        "{stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("atelier_db"),
        "{stderr}"
    );
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

#[test]
fn a_missing_postgres_database_says_so_once() {
    let Some(server) = common::server_url(common::Backend::Postgres) else {
        return;
    };
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path("/atelier_no_such_database");
    let stderr = migrate_fails_in_one_line(url.as_str());
    assert!(
        stderr.contains("database \"atelier_no_such_database\" does not exist")
            && stderr.contains("createdb"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
    assert!(!stderr.contains("at line"), "{stderr}");
}

database_tests!(the_cli_refuses_what_http_refuses_and_answers_in_its_shapes);

/// Runs the CLI on `url`: (succeeded, stdout, stderr).
fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = atelier_command(url)
        .args(args)
        .output()
        .expect("run atelier");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn the_cli_refuses_what_http_refuses_and_answers_in_its_shapes(url: String) {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = common::TestApp::builder(&url).spawn().await;
    let long = "n".repeat(300);
    for name in ["", "   ", long.as_str()] {
        let (ok, _, stderr) = cli(&url, &["accounts", "create", "--name", name]);
        assert!(!ok, "{name:?} accepted");
        assert!(
            stderr.contains("--name: must be 1 to 200 characters"),
            "{stderr}"
        );
        let http = app
            .admin_post("/v1/accounts", &serde_json::json!({"name": name}))
            .await;
        assert_eq!(common::error_code(http, 422).await, "invalid_name");
    }
    let accounts = atelier_entities::account::Entity::find()
        .count(&app.state.db)
        .await;
    assert_eq!(accounts.unwrap(), 0, "a refused name created an account");

    let (ok, stdout, stderr) = cli(&url, &["accounts", "create", "--name", "Ada"]);
    assert!(ok, "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(created["name"], "Ada");
    let http = app.admin_post("/v1/accounts", &serde_json::json!({})).await;
    let http_created: serde_json::Value = http.json().await.unwrap();
    assert_eq!(keys(&created), keys(&http_created));

    let account = created["id"].as_str().unwrap();
    let args = [
        "grants",
        "add",
        "--account",
        account,
        "--credits",
        "5",
        "--reference",
        "cli",
    ];
    let (ok, stdout, stderr) = cli(&url, &args);
    assert!(ok, "{stderr}");
    let granted: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (granted["credits"].as_i64(), granted["held"].as_i64()),
        (Some(5), Some(0))
    );
    let http = app
        .grant(
            account,
            &serde_json::json!({"credits": 5, "reference": "cli"}),
        )
        .await;
    assert_eq!(http.status(), 200, "the same grant");
    let http_granted: serde_json::Value = http.json().await.unwrap();
    assert_eq!(granted, http_granted);
}

/// Every configuration error, wherever it is found, is one line with the documented prefix.
#[test]
fn configuration_errors_carry_the_documented_prefix() {
    let dir = scratch_dir();
    let replicate = dir.join("replicate.toml");
    std::fs::write(&replicate, "[providers.replicate]\ncost = 2\n").unwrap();
    let cases: [(&str, String, &str); 6] = [
        (
            "ATELIER_CONFIG",
            dir.join("missing.toml").display().to_string(),
            "missing.toml",
        ),
        (
            "ATELIER_CONFIG",
            replicate.display().to_string(),
            "providers.replicate.api_token",
        ),
        ("ATELIER_PUBLIC_URL", "notaurl".into(), "public_url"),
        (
            "ATELIER_HTTP__UPLOAD_LIMIT_BYTES",
            "0".into(),
            "http.upload_limit_bytes",
        ),
        (
            "ATELIER_WORKFLOW__MAX_ATTEMPTS",
            "0".into(),
            "workflow.max_attempts",
        ),
        ("ATELIER_INPUTS__MAX_BYTES", "0".into(), "inputs.max_bytes"),
    ];
    for (variable, value, named) in cases {
        let child = atelier_command(&sqlite_url(&dir))
            .env(variable, &value)
            .env("ATELIER_DATA_DIR", dir.join("data"))
            .env("ATELIER_BIND", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (failed, stderr) = exit_within(child, 20);
        assert!(failed, "{variable}={value}: {stderr}");
        assert!(
            stderr.starts_with("atelier: invalid configuration: ") && stderr.contains(named),
            "{variable}={value}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

database_tests!(a_public_url_with_a_trailing_slash_still_settles);

/// `ATELIER_PUBLIC_URL=http://host:port/` used to make the simulator's URL `//simulator/…`,
/// and every generation ended `provider_rejected`.
async fn a_public_url_with_a_trailing_slash_still_settles(url: String) {
    let port = free_port();
    let app = common::TestApp::builder(&url)
        .engine(|settings| {
            settings.bind = format!("127.0.0.1:{port}").parse().unwrap();
            settings.public_url = Some(format!("http://127.0.0.1:{port}/"));
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(1).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app
        .wait_terminal(&key, &id, std::time::Duration::from_secs(20))
        .await;
    assert_eq!(done["state"], "settled", "{done}");
    let result_url = done["result_url"].as_str().unwrap();
    assert!(
        result_url.starts_with(&format!("http://127.0.0.1:{port}/v1/files/")),
        "{result_url}"
    );
}

/// `atelier bench verify` parks workflows (each with its hold and timeline) and verifies them:
/// every invariant holds over the seeded rows, the figures come as one JSON line, and with
/// stderr piped its progress comes as plain lines with counts.
#[test]
fn bench_verify_seeds_whole_workflows_and_shows_progress_as_lines() {
    let dir = scratch_dir();
    let output = atelier_command(&sqlite_url(&dir))
        .args(["bench", "verify", "--workflows", "300"])
        .env("ATELIER_DATA_DIR", dir.join("data"))
        .output()
        .expect("run atelier bench verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(figures["bench"], "verify");
    assert_eq!(figures["workflows"], 300);
    assert!(figures["verify_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        stderr.contains("verify: workflows: 300/300 (100%)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bench verify: parking workflows: 300/300"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "no terminal bar when piped: {stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
