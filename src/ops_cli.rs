//! `atelier ops`: operator commands that are clients of a running service's ops API, so the
//! service does the work durably and the command line only starts and follows it. Today
//! `ops bulk cancel|wake` (a dry run, or with `--yes` a job followed to its end) and
//! `ops bulk show`.
//!
//! The token comes from the environment (or the configuration file), never from a flag: a
//! flag would show in `ps` and in shell history. It is sent only as a bearer header.
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use atelier_actors::progress::Progress;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::api::ops::generation_filter::FilterSpec;
use crate::config::Settings;
use crate::progress::Reporter;

/// Longest one HTTP call may take (a dry run counts for up to 5 s on the service).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two looks at a running job.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long following a job tolerates a service that does not answer (a restart resumes
/// the job, so a short outage is waited out).
const FOLLOW_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Cancel or wake every live generation a filter matches, as a job in the service.
    Bulk {
        #[command(subcommand)]
        command: BulkCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BulkCommand {
    /// Cancel (release) the live generations the filter matches.
    Cancel(Box<BulkArgs>),
    /// Make the live generations the filter matches due now.
    Wake(Box<BulkArgs>),
    /// Print one bulk job as `GET /v1/ops/bulk/{id}` answers it.
    Show {
        id: Uuid,
        #[command(flatten)]
        service: ServiceArgs,
    },
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service's base URL; `http://` + the configured `bind` address when absent.
    #[arg(long)]
    url: Option<String>,
}

#[derive(Debug, Args)]
pub struct BulkArgs {
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// Start the job; without it only count (a dry run).
    #[arg(long, requires_all = ["expect", "reason"])]
    yes: bool,
    /// The count the dry run printed; the job starts only if it is still the count.
    #[arg(long, requires = "yes")]
    expect: Option<u64>,
    /// Why, for the audit log (1 to 1000 bytes).
    #[arg(long, requires = "yes")]
    reason: Option<String>,
}

/// The filter of `GET /v1/ops/generations`, as flags.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// States, comma-separated (e.g. reserved,submitted).
    #[arg(long)]
    state: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    /// An account id.
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    error_code: Option<String>,
    /// RFC 3339. Without any time range or --q: the last 24 hours.
    #[arg(long)]
    created_from: Option<String>,
    #[arg(long)]
    created_to: Option<String>,
    #[arg(long)]
    updated_from: Option<String>,
    #[arg(long)]
    updated_to: Option<String>,
    /// A generation id or a provider task id.
    #[arg(long)]
    q: Option<String>,
}

impl From<FilterArgs> for FilterSpec {
    fn from(args: FilterArgs) -> Self {
        Self {
            state: args.state,
            provider: args.provider,
            account: args.account,
            error_code: args.error_code,
            created_from: args.created_from,
            created_to: args.created_to,
            updated_from: args.updated_from,
            updated_to: args.updated_to,
            q: args.q,
        }
    }
}

/// `spec` as the flags that say it, in the order `--help` lists them.
fn filter_flags(spec: &FilterSpec) -> Vec<(&'static str, &str)> {
    [
        ("--state", &spec.state),
        ("--provider", &spec.provider),
        ("--account", &spec.account),
        ("--error-code", &spec.error_code),
        ("--created-from", &spec.created_from),
        ("--created-to", &spec.created_to),
        ("--updated-from", &spec.updated_from),
        ("--updated-to", &spec.updated_to),
        ("--q", &spec.q),
    ]
    .into_iter()
    .filter_map(|(flag, value)| value.as_deref().map(|value| (flag, value)))
    .collect()
}

/// What a dry run answers.
#[derive(Debug, Deserialize)]
struct DryRun {
    count: u64,
    /// The filter with its time range made absolute.
    filter: FilterSpec,
}

/// The part of a bulk job's view the command line shows.
#[derive(Debug, Deserialize)]
struct Job {
    id: Uuid,
    action: String,
    state: String,
    total: u64,
    done: u64,
    skipped: u64,
    failed: u64,
    error: Option<String>,
}

impl Job {
    fn processed(&self) -> u64 {
        (self.done + self.skipped + self.failed).min(self.total)
    }

    fn summary(&self) -> String {
        format!(
            "{}: {} done, {} skipped, {} failed (bulk job {})",
            self.state, self.done, self.skipped, self.failed, self.id
        )
    }
}

pub async fn run(settings: &Settings, command: OpsCommand) -> anyhow::Result<ExitCode> {
    let OpsCommand::Bulk { command } = command;
    match command {
        BulkCommand::Cancel(args) => bulk(settings, "cancel", *args).await,
        BulkCommand::Wake(args) => bulk(settings, "wake", *args).await,
        BulkCommand::Show { id, service } => {
            let client = OpsClient::new(settings, &service, Need::Read)?;
            let job: serde_json::Value = client.get(&format!("/v1/ops/bulk/{id}")).await?;
            println!("{job}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn bulk(settings: &Settings, action: &str, args: BulkArgs) -> anyhow::Result<ExitCode> {
    let client = OpsClient::new(settings, &args.service, Need::Admin)?;
    let filter = FilterSpec::from(args.filter);
    let body = serde_json::json!({
        "filter": filter,
        "action": action,
        "dry_run": !args.yes,
        "expected_count": args.expect,
        "reason": args.reason,
    });
    if !args.yes {
        let dry: DryRun = client.post("/v1/ops/generations/bulk", &body).await?;
        print!(
            "{}",
            dry_run_report(action, &dry, args.service.url.as_deref())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let job: Job = client.post("/v1/ops/generations/bulk", &body).await?;
    eprintln!(
        "ops bulk: started bulk job {} ({action}, {} generations); it runs in the service: \
         Ctrl-C stops following it, not the job",
        job.id, job.total
    );
    let job = follow(&client, job, &Reporter::new("ops bulk")).await?;
    println!("{}", job.summary());
    exit_code(&job)
}

/// The dry run's count, and the command that starts the job on the same (absolute) filter, so
/// that the job covers what was counted and not a time window that has moved on since.
fn dry_run_report(action: &str, dry: &DryRun, url: Option<&str>) -> String {
    let mut report = format!(
        "{} live generations match; nothing was changed\n",
        dry.count
    );
    if dry.count == 0 {
        return report;
    }
    let mut command = format!("atelier ops bulk {action}");
    for (flag, value) in filter_flags(&dry.filter) {
        let _ = write!(command, " {flag} {}", shell_quote(value));
    }
    if let Some(url) = url {
        let _ = write!(command, " --url {}", shell_quote(url));
    }
    let _ = write!(command, " --yes --expect {} --reason '<why>'", dry.count);
    let _ = writeln!(report, "to {action} them, run:\n  {command}");
    report
}

/// `value` as one shell word: as it is when it is plainly safe, else in single quotes.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/+@=".contains(c));
    match plain {
        true => value.to_owned(),
        false => format!("'{}'", value.replace('\'', r"'\''")),
    }
}

/// 0 when every target was acted on or skipped; 2 when the job finished but the action failed
/// on some generations (as `verify` says 2 for a check that ran and found problems); an error
/// (1) when the job itself failed.
fn exit_code(job: &Job) -> anyhow::Result<ExitCode> {
    match job.state.as_str() {
        "finished" if job.failed == 0 => Ok(ExitCode::SUCCESS),
        "finished" => Ok(ExitCode::from(2)),
        _ => bail!(
            "bulk job {} failed: {}",
            job.id,
            job.error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

/// Looks at `job` every `POLL_EVERY` until it is no longer running, reporting how many of its
/// targets were handled. A service that stops answering is waited for up to `FOLLOW_PATIENCE`.
async fn follow(client: &OpsClient, mut job: Job, progress: &dyn Progress) -> anyhow::Result<Job> {
    let path = format!("/v1/ops/bulk/{}", job.id);
    progress.phase(&job.action, Some(job.total));
    let mut shown = 0;
    let mut last_answer = Instant::now();
    let mut unanswered = false;
    loop {
        let processed = job.processed();
        if processed > shown {
            progress.advance(processed - shown);
            shown = processed;
        }
        if job.state != "running" {
            progress.finish();
            return Ok(job);
        }
        tokio::time::sleep(POLL_EVERY).await;
        match client.get::<Job>(&path).await {
            Ok(seen) => {
                if std::mem::take(&mut unanswered) {
                    eprintln!("ops bulk: the service answers again");
                }
                job = seen;
                last_answer = Instant::now();
            }
            // One line per outage, not one per look.
            Err(error) if last_answer.elapsed() < FOLLOW_PATIENCE => {
                if !std::mem::replace(&mut unanswered, true) {
                    eprintln!(
                        "ops bulk: {error:#}; trying again for up to {}s",
                        FOLLOW_PATIENCE.as_secs()
                    );
                }
            }
            Err(error) => {
                return Err(error.context(format!(
                    "the service did not answer for {}s; the job goes on there: \
                     atelier ops bulk show {}",
                    FOLLOW_PATIENCE.as_secs(),
                    job.id
                )));
            }
        }
    }
}

/// Which token a command needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Actions: the admin token.
    Admin,
    /// Reads: the admin token or the read-only operator token.
    Read,
}

/// The ops API of one service, with a token and a timeout on every call.
struct OpsClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl OpsClient {
    fn new(settings: &Settings, service: &ServiceArgs, need: Need) -> anyhow::Result<Self> {
        let read = settings
            .ops_read_token
            .as_ref()
            .filter(|_| need == Need::Read);
        let token = settings.admin_token.as_ref().or(read).ok_or_else(|| {
            let var = match need {
                Need::Admin => "ATELIER_ADMIN_TOKEN",
                Need::Read => "ATELIER_ADMIN_TOKEN (or ATELIER_OPS_READ_TOKEN)",
            };
            anyhow!("{var} is not set: give the service's token in the environment")
        })?;
        let base = match &service.url {
            Some(url) => checked_url(url)?,
            None => default_url(settings),
        };
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            http,
            base,
            token: token.expose().to_owned(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// Sends `request` with the token; the answer's body, or the API's error as `code: message`.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| anyhow::Error::new(error.without_url()))
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| anyhow::Error::new(error.without_url()))
            .context("reading the answer")?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("unexpected answer from {}", self.base))
    }
}

/// The API's error body as `code: message`; any other body (a proxy's page) by its status.
fn api_error(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Error {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { error }) => anyhow!("{}: {}", error.code, error.message),
        Err(_) => anyhow!("the service answered {status}"),
    }
}

/// `--url`: an http(s) URL, without a trailing slash (paths are appended to it).
fn checked_url(raw: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(raw).map_err(|error| anyhow!("--url: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("--url: an http(s) URL, e.g. http://127.0.0.1:8080");
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The configured `bind` address as a URL; a wildcard address (0.0.0.0, ::) is reached on
/// loopback.
fn default_url(settings: &Settings) -> String {
    let mut address = settings.bind;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed command says the counted filter again, quoted where a shell needs it.
    #[test]
    fn the_dry_run_prints_the_command_that_confirms_it() {
        let dry = DryRun {
            count: 3,
            filter: FilterSpec {
                state: Some("reserved,submitted".into()),
                q: Some("it's".into()),
                created_from: Some("2026-12-06T14:00:00Z".into()),
                created_to: Some("2026-12-07T14:00:00Z".into()),
                ..FilterSpec::default()
            },
        };
        let report = dry_run_report("cancel", &dry, Some("http://127.0.0.1:9000"));
        assert_eq!(
            report,
            "3 live generations match; nothing was changed\nto cancel them, run:\n  \
             atelier ops bulk cancel --state reserved,submitted \
             --created-from 2026-12-06T14:00:00Z --created-to 2026-12-07T14:00:00Z \
             --q 'it'\\''s' --url http://127.0.0.1:9000 --yes --expect 3 --reason '<why>'\n"
        );
        let none = DryRun {
            count: 0,
            filter: FilterSpec::default(),
        };
        assert!(!dry_run_report("wake", &none, None).contains("--yes"));
    }

    /// A script can tell a clean job (0) from one that failed on some generations (2) and from
    /// one that failed as a whole (an error: 1).
    #[test]
    fn the_exit_code_says_how_the_job_ended() {
        let job = |state: &str, failed| Job {
            id: Uuid::nil(),
            action: "cancel".into(),
            state: state.into(),
            total: 4,
            done: 3,
            skipped: 2,
            failed,
            error: Some("database is locked".into()),
        };
        assert_eq!(job("running", 0).processed(), 4, "never past the total");
        assert_eq!(exit_code(&job("finished", 0)).unwrap(), ExitCode::SUCCESS);
        assert_eq!(exit_code(&job("finished", 1)).unwrap(), ExitCode::from(2));
        let failed = exit_code(&job("failed", 0)).unwrap_err().to_string();
        assert!(failed.ends_with("failed: database is locked"), "{failed}");
    }

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        let on = |bind: &str| Settings {
            bind: bind.parse().unwrap(),
            ..Settings::default()
        };
        assert_eq!(default_url(&on("0.0.0.0:8081")), "http://127.0.0.1:8081");
        assert_eq!(default_url(&on("[::]:8081")), "http://[::1]:8081");
        assert_eq!(default_url(&on("10.0.0.5:80")), "http://10.0.0.5:80");
        assert!(checked_url("ftp://example.com").is_err());
        assert_eq!(checked_url("http://h:1/").unwrap(), "http://h:1");
    }
}
