//! `atelier ops bulk` as an operator runs it: the real binary as a client of a running
//! service's ops API. A dry run counts and changes nothing, and prints the command that
//! confirms it; that command, piped, follows the job in plain lines to its summary; a stale
//! `--expect` and a missing token are refused before anything changes.
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::common::{ADMIN_TOKEN, TestApp, atelier_command};

const WITHIN: Duration = Duration::from_secs(20);
const COUNT: usize = 3;

database_tests!(a_bulk_cancel_from_the_cli_counts_then_follows_the_job);

/// `atelier <args>` with `env` (and no token but the one `env` gives), run off the test's
/// runtime so that the service it talks to keeps answering.
async fn atelier(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = atelier_command(database_url);
    command
        .args(args)
        .env_remove("ATELIER_ADMIN_TOKEN")
        .env_remove("ATELIER_OPS_READ_TOKEN")
        .envs(env.iter().copied());
    actix_web::rt::task::spawn_blocking(move || command.output().expect("run atelier"))
        .await
        .expect("the command's thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The states of `ids`, as the API shows them.
async fn states(app: &TestApp, key: &str, ids: &[String]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        let generation = app.get_json(&format!("/v1/generations/{id}"), key).await;
        states.push(generation["state"].as_str().unwrap().to_owned());
    }
    states
}

async fn a_bulk_cancel_from_the_cli_counts_then_follows_the_job(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.never_callback = true)
        .spawn()
        .await;
    let (account, key, ids) = waiting_generations(&app).await;
    let token = [("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)];
    let filter = ["ops", "bulk", "cancel", "--account", account.as_str()];
    // The service's address from the configuration (`bind`), as a real operator's would be.
    let bind = app.address.trim_start_matches("http://");
    let with_bind = [token[0], ("ATELIER_BIND", bind)];
    let confirm = the_dry_run_prints_its_confirmation(&url, &filter, &with_bind, &account).await;
    assert_eq!(states(&app, &key, &ids).await, ["awaiting_callback"; COUNT]);
    stale_and_tokenless_runs_are_refused(&app, &url, &filter).await;
    let jobs = app.get_json("/v1/ops/bulk", ADMIN_TOKEN).await;
    assert_eq!(jobs["items"], serde_json::json!([]), "no job was started");
    assert_eq!(states(&app, &key, &ids).await, ["awaiting_callback"; COUNT]);
    // The printed command, with a reason, and the URL the dry run took from `bind`.
    let confirm = confirm.replace("'<why>'", "provider-outage");
    let job = the_confirmed_run_follows_the_job(&url, &confirm, &with_bind).await;
    assert_eq!(states(&app, &key, &ids).await, ["released"; COUNT]);
    show_prints_the_job_or_its_absence(&app, &url, &job).await;
}

/// `COUNT` generations of a new account, each waiting for its callback: the account's id,
/// its key and their ids.
async fn waiting_generations(app: &TestApp) -> (String, String, Vec<String>) {
    let (account, key) = app.funded_account(COUNT as i64).await;
    let mut ids = Vec::new();
    for _ in 0..COUNT {
        let id = app.create_generation(&key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.wait_state(&key, &id, &["awaiting_callback"], WITHIN)
            .await;
        ids.push(id);
    }
    (account, key, ids)
}

/// The dry run counts, changes nothing, and prints the command that confirms it on the same
/// account with its time range made absolute: that command, without `atelier `.
async fn the_dry_run_prints_its_confirmation(
    url: &str,
    filter: &[&str],
    env: &[(&str, &str)],
    account: &str,
) -> String {
    let dry = atelier(url, filter, env).await;
    let (stdout, stderr) = (text(&dry.stdout), text(&dry.stderr));
    assert!(dry.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{COUNT} live generations match; nothing was changed\n"
        )),
        "{stdout}"
    );
    let confirm = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("atelier "))
        .unwrap_or_else(|| panic!("no command to confirm: {stdout}"))
        .to_owned();
    assert!(
        confirm.contains(&format!("--account {account} "))
            && confirm.contains("--created-from ")
            && confirm.ends_with(&format!("--yes --expect {COUNT} --reason '<why>'")),
        "{confirm}"
    );
    confirm
}

/// A stale `--expect` is refused by the API (`count_changed`), a missing token before any
/// call.
async fn stale_and_tokenless_runs_are_refused(app: &TestApp, url: &str, filter: &[&str]) {
    let token = [("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)];
    let stale = [filter, &["--url", &app.address, "--yes", "--expect", "2"]].concat();
    let stale = [&stale[..], &["--reason", "outage"]].concat();
    let refused = atelier(url, &stale, &token).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains(&format!(
            "atelier: count_changed: {COUNT} generations match now, not 2"
        )),
        "{}",
        text(&refused.stderr)
    );
    let tokenless = atelier(url, &stale, &[]).await;
    assert!(!tokenless.status.success());
    assert!(
        text(&tokenless.stderr).contains("ATELIER_ADMIN_TOKEN is not set"),
        "{}",
        text(&tokenless.stderr)
    );
}

/// The confirmed command, piped: plain progress lines (no bar, no token) and the summary on
/// stdout, exit 0. The job's id, from the summary.
async fn the_confirmed_run_follows_the_job(
    url: &str,
    confirm: &str,
    env: &[(&str, &str)],
) -> String {
    let args: Vec<&str> = confirm.split_whitespace().collect();
    let run = atelier(url, &args, env).await;
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("ops bulk: started bulk job "), "{stderr}");
    assert!(
        stderr.contains(&format!("ops bulk: cancel: {COUNT}/{COUNT} (100%)")),
        "no progress line: {stderr}"
    );
    assert!(stderr.contains(" done in "), "no last line: {stderr}");
    assert!(!stderr.contains('\r'), "a bar when piped: {stderr}");
    assert!(!stderr.contains(ADMIN_TOKEN) && !stdout.contains(ADMIN_TOKEN));
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "finished: {COUNT} done, 0 skipped, 0 failed (bulk job "
        )),
        "{stdout}"
    );
    summary
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

/// `ops bulk show` prints the finished job as JSON, and an unknown one's 404.
async fn show_prints_the_job_or_its_absence(app: &TestApp, url: &str, job: &str) {
    let token = [("ATELIER_ADMIN_TOKEN", ADMIN_TOKEN)];
    let show = atelier(
        url,
        &["ops", "bulk", "show", job, "--url", &app.address],
        &token,
    )
    .await;
    assert!(show.status.success(), "{}", text(&show.stderr));
    let shown: Value = serde_json::from_slice(&show.stdout).expect("show prints JSON");
    assert_eq!(
        (&shown["state"], &shown["done"]),
        (&"finished".into(), &COUNT.into())
    );
    let unknown = "0192abcd-0000-7000-8000-000000000001";
    let missing = atelier(
        url,
        &["ops", "bulk", "show", unknown, "--url", &app.address],
        &token,
    )
    .await;
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("atelier: bulk_job_not_found: no such bulk job"),
        "{}",
        text(&missing.stderr)
    );
}
