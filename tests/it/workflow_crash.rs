//! The real binary, SIGKILLed at random moments while 200 generations run against a slow
//! simulator, and restarted each time: every generation ends terminal, settled + released =
//! 200, the balance matches, and `atelier verify` passes. And SIGTERMed in the middle of a
//! step: it finishes the step (HTTP still up) before it exits.
use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    ADMIN_TOKEN, KillOnDrop, atelier_command, free_port, generation_body, remote_account,
    remote_get, wait_ready,
};
use rand::Rng;
use serde_json::Value;

const GENERATIONS: usize = 200;
const KILLS: usize = 3;
/// Submitting all generations through the kills takes a few seconds; this bound only turns a
/// hang (a service that never accepts again) into a failure.
const SUBMIT_WITHIN: Duration = Duration::from_secs(120);
/// At least this many generations settle: a kill releases what was in flight (the simulator
/// forgets its tasks), not the run. Runs settle 60 to 163 of 200; nothing settling fails.
const MIN_SETTLED: usize = GENERATIONS / 10;
/// Why a generation interrupted by a SIGKILL may be released (`error.code`): the restarted
/// simulator no longer knows its task (`provider_failed`) or its result (`upload_failed`).
const CRASH_RELEASE_CODES: [&str; 2] = ["provider_failed", "upload_failed"];

database_tests!(
    sigkill_at_random_moments_loses_nothing,
    sigterm_drains_the_engine_before_http_stops,
);

fn start(url: &str, port: u16, data_dir: &Path) -> KillOnDrop {
    let child = atelier_command(url)
        .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
        .env("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ATELIER_DATA_DIR", data_dir)
        .env("ATELIER_SIMULATOR__DELAY_MS", "300")
        .env("ATELIER_WORKFLOW__CALLBACK_DEADLINE_SECS", "2")
        .stdout(Stdio::null())
        .spawn()
        .expect("start atelier");
    KillOnDrop(child)
}

async fn submit(client: &reqwest::Client, base: &str, key: &str, index: usize) -> bool {
    let response = client
        .post(format!("{base}/v1/generations"))
        .bearer_auth(key)
        .header("Idempotency-Key", format!("crash-{index}"))
        .json(&generation_body())
        .send()
        .await;
    matches!(response, Ok(response) if [200, 202].contains(&response.status().as_u16()))
}

/// The generations of the account in `state` (at most 200).
async fn terminal(client: &reqwest::Client, base: &str, key: &str, state: &str) -> Vec<Value> {
    let path = format!("/v1/generations?state={state}&limit=200");
    let page = remote_get(client, base, &path, key).await;
    page["items"].as_array().unwrap().clone()
}

/// Most generations settled, and each released one for a reason a crash can cause.
fn assert_released_as_a_crash_may(settled: usize, released: &[Value]) {
    assert!(
        settled >= MIN_SETTLED,
        "only {settled} of {GENERATIONS} settled (at least {MIN_SETTLED} must)"
    );
    for generation in released {
        let code = generation["error"]["code"].as_str().unwrap_or("(none)");
        assert!(
            CRASH_RELEASE_CODES.contains(&code),
            "released with {code}, not one of {CRASH_RELEASE_CODES:?}: {generation}"
        );
    }
}

async fn sigkill_at_random_moments_loses_nothing(url: String) {
    let data_dir = std::env::temp_dir().join(format!("atelier-crash-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = start(&url, port, &data_dir);
    wait_ready(&client, &base, &mut child).await;

    let (_, key) = remote_account(&client, &base, GENERATIONS as i64, "crash-test").await;

    // Submit everything, retrying through the kills: the idempotency key makes a retry of an
    // accepted submission a no-op.
    let mut rng = common::seeded_rng("sigkill_at_random_moments_loses_nothing");
    let mut accepted = [false; GENERATIONS];
    let mut kills = 0;
    let submitting = Instant::now();
    let mut kill_at = Instant::now() + Duration::from_millis(rng.random_range(100..600));
    while accepted.iter().any(|done| !done) || kills < KILLS {
        let missing = accepted.iter().filter(|done| !**done).count();
        assert!(
            submitting.elapsed() < SUBMIT_WITHIN,
            "{missing} of {GENERATIONS} submissions not accepted within {SUBMIT_WITHIN:?}"
        );
        for (index, done) in accepted.iter_mut().enumerate() {
            if !*done && submit(&client, &base, &key, index).await {
                *done = true;
            }
            if kills < KILLS && Instant::now() >= kill_at {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                child = start(&url, port, &data_dir);
                wait_ready(&client, &base, &mut child).await;
                kill_at = Instant::now() + Duration::from_millis(rng.random_range(200..1_500));
            }
        }
        if accepted.iter().all(|done| *done) && kills < KILLS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Everything ends terminal on the last incarnation.
    let (settled, released) = common::wait_for(
        "every generation terminal",
        Duration::from_secs(120),
        || async {
            let settled = terminal(&client, &base, &key, "settled").await.len();
            let released = terminal(&client, &base, &key, "released").await;
            if settled + released.len() == GENERATIONS {
                Ok((settled, released))
            } else {
                Err(format!("{settled} settled + {} released", released.len()))
            }
        },
    )
    .await;
    assert_released_as_a_crash_may(settled, &released);
    let released = released.len();
    let balance = remote_get(&client, &base, "/v1/balance", &key).await;
    assert_eq!(balance["held"], 0);
    assert_eq!(balance["available"], (GENERATIONS - settled) as i64);
    child.kill().unwrap();
    child.wait().unwrap();

    let verify = atelier_command(&url)
        .env("ATELIER_DATA_DIR", &data_dir)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    eprintln!("after {KILLS} SIGKILLs: {settled} settled, {released} released");
    std::fs::remove_dir_all(&data_dir).ok();
}

/// Serves a PNG at `/slow.png` after two seconds: an input host the engine copies from.
fn slow_image_server() -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(|| {
        App::new().route(
            "/slow.png",
            web::get().to(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                HttpResponse::Ok()
                    .content_type("image/png")
                    .body(common::png(8, 12, [200, 180, 160]))
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://{address}/slow.png")
}

async fn sigterm_drains_the_engine_before_http_stops(url: String) {
    let data_dir = std::env::temp_dir().join(format!("atelier-term-{}", uuid::Uuid::new_v4()));
    // The image server binds first: a port `free_port` just let go of could be its.
    let image_url = slow_image_server();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = KillOnDrop(
        atelier_command(&url)
            .env("ATELIER_BIND", format!("127.0.0.1:{port}"))
            .env("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("ATELIER_DATA_DIR", &data_dir)
            .env("ATELIER_INPUTS__ALLOWED_HOSTS", "[\"127.0.0.1\"]")
            .stdout(Stdio::null())
            .spawn()
            .expect("start atelier"),
    );
    wait_ready(&client, &base, &mut child).await;
    let (_, key) = remote_account(&client, &base, 1, "term-test").await;
    let mut body = generation_body();
    // Copying this input takes two seconds: the submit step is running when the signal comes.
    body["person_image"] = image_url.into();
    let created = client
        .post(format!("{base}/v1/generations"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let exited = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            exited.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");

    // Nothing runs now: the row says what the process finished before it went. The step in
    // flight (copy the input, submit to the simulator, which HTTP still served) completed;
    // no further step was started.
    let db = atelier_actors::db::connect(&url).await.unwrap();
    use sea_orm::EntityTrait;
    let row = atelier_entities::workflow::Entity::find_by_id(uuid::Uuid::parse_str(&id).unwrap())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    use atelier_actors::workflow::WorkflowState::*;
    assert!(
        [Submitted, AwaitingCallback].contains(&row.state),
        "{:?}: {:?}",
        row.state,
        row.error_message
    );
    std::fs::remove_dir_all(&data_dir).ok();
}
