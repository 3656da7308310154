//! Live status streams (Server-Sent Events): every committed transition in order, exact
//! resumption with `Last-Event-ID`, scopes, bounds, and what idle streams cost.
use std::sync::Arc;
use std::time::Duration;

use atelier_actors::workflow::feed::{Feed, Follower, Scope};
use futures::StreamExt;
use serde_json::Value;

use crate::common::{ADMIN_TOKEN, TestApp, wait_for};

database_tests!(
    a_generation_stream_sends_every_transition_in_order,
    last_event_id_resumes_without_gaps_or_duplicates,
    the_account_stream_shows_only_the_callers_generations,
    a_follower_behind_the_channel_reads_what_it_missed,
    another_processs_commits_reach_its_streams,
    a_stream_from_now_sends_nothing_committed_before_it,
);

/// How long a stream waits for its next event before the test gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// One event as a client parses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sse {
    pub(crate) id: i64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// An open stream, parsed event by event.
pub(crate) struct Reader {
    body: futures::stream::BoxStream<'static, reqwest::Result<actix_web::web::Bytes>>,
    buffer: String,
}

impl Reader {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event with data (comments and `retry:` skipped); `None` when the stream ends.
    /// Keep-alive comments do not keep a test waiting: the event must come within `PATIENCE`.
    async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(PATIENCE, self.next_event())
            .await
            .expect("no event came in time")
    }

    pub(crate) async fn next_event(&mut self) -> Option<Sse> {
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = self.body.next().await?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("stream body")).unwrap());
        }
    }

    /// Every event until the stream ends.
    async fn rest(&mut self) -> Vec<Sse> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

fn parse(block: &str) -> Option<Sse> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse().expect("numeric id"));
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("JSON data"));
        }
    }
    Some(Sse {
        id: id?,
        event: event?,
        data: data?,
    })
}

async fn open(
    app: &TestApp,
    path: &str,
    token: &str,
    last_event_id: Option<i64>,
) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    request.send().await.expect("request")
}

/// The generation's timeline as `GET /v1/generations/{id}/events` shows it: (from, to),
/// `from` "-" for the creation.
async fn timeline(app: &TestApp, key: &str, id: &str) -> Vec<(String, String)> {
    let whole = app.timeline(key, id).await;
    whole.into_iter().map(|(from, to, _)| (from, to)).collect()
}

/// An app whose simulator takes `delay_ms`, and a generation of a funded account on it.
async fn one_generation(url: &str, delay_ms: u64) -> (TestApp, String, String) {
    let app = TestApp::builder(url)
        .engine(|settings| settings.simulator.delay_ms = delay_ms)
        .spawn()
        .await;
    let (_, key) = app.funded_account(100).await;
    let generation = app.create_generation(&key).await;
    let id = generation["id"].as_str().unwrap().to_owned();
    (app, key, id)
}

/// `events` start with the state the stream opened in, then every move after it: the tail of
/// the generation's whole timeline, with increasing ids.
async fn assert_tail_of_timeline(app: &TestApp, key: &str, id: &str, events: &[Sse]) {
    assert_eq!(events[0].event, "state", "{events:?}");
    assert_eq!(events[0].data["generation_id"], id);
    assert_increasing(events);
    let whole = timeline(app, key, id).await;
    let start = events[0].data["state"].as_str().unwrap();
    let from = whole.iter().position(|(_, to)| to == start).unwrap();
    assert_eq!(moves(events), whole[from + 1..].to_vec(), "{events:?}");
}

fn moves(events: &[Sse]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|event| event.event == "transition")
        .map(|event| {
            (
                event.data["from"].as_str().unwrap_or("-").to_owned(),
                event.data["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_increasing(events: &[Sse]) {
    for pair in events.windows(2) {
        assert!(pair[0].id < pair[1].id, "ids out of order: {events:?}");
    }
}

/// From the state it is in when the stream opens to the terminal one, every transition once,
/// in order, with increasing ids; then the stream ends by itself.
async fn a_generation_stream_sends_every_transition_in_order(url: String) {
    let (app, key, id) = one_generation(&url, 300).await;
    let path = format!("/v1/generations/{id}/stream");
    let events = Reader::new(open(&app, &path, &key, None).await)
        .rest()
        .await;
    assert_eq!(events.last().unwrap().data["to"], "settled", "{events:?}");
    assert_tail_of_timeline(&app, &key, &id, &events).await;
    assert!(
        moves(&events).len() >= 2,
        "the stream opened before the work: {events:?}"
    );
}

/// A client that reconnects with the last id it saw gets exactly the events after it; once
/// the generation is terminal and seen to the end, 204 tells it to stop reconnecting.
async fn last_event_id_resumes_without_gaps_or_duplicates(url: String) {
    let (app, key, id) = one_generation(&url, 300).await;
    let path = format!("/v1/generations/{id}/stream");
    // Two events, then the connection drops.
    let mut first = Reader::new(open(&app, &path, &key, None).await);
    let mut seen = vec![first.next().await.unwrap(), first.next().await.unwrap()];
    drop(first);
    let resumed = Reader::new(open(&app, &path, &key, Some(seen[1].id)).await)
        .rest()
        .await;
    assert!(resumed.iter().all(|event| event.event == "transition"));
    seen.extend(resumed);
    assert_eq!(seen.last().unwrap().data["to"], "settled");
    assert_tail_of_timeline(&app, &key, &id, &seen).await;
    // Resuming from the first transition replays exactly the rest, finished or not.
    let again = Reader::new(open(&app, &path, &key, Some(seen[1].id)).await)
        .rest()
        .await;
    assert_eq!(again, seen[2..].to_vec());
    let done = open(&app, &path, &key, Some(seen.last().unwrap().id)).await;
    assert_eq!(done.status(), 204);
    // A finished generation without Last-Event-ID: its state, then the end.
    let finished = Reader::new(open(&app, &path, &key, None).await)
        .rest()
        .await;
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].data["state"], "settled");
    for bad in ["-1", "abc", "1.5"] {
        let response = app
            .client
            .get(app.url(&path))
            .bearer_auth(&key)
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(
            crate::common::error_code(response, 400).await,
            "invalid_last_event_id"
        );
    }
}

/// An account's stream carries its own generations' transitions only; the operators' stream
/// carries everyone's, with the account and the provider; a client key may not open it, nor
/// another account's generation's stream.
async fn the_account_stream_shows_only_the_callers_generations(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.delay_ms = 100)
        .spawn()
        .await;
    let (_, mine) = app.funded_account(100).await;
    let (other_id, other) = app.funded_account(100).await;
    let mut own = Reader::new(open(&app, "/v1/generations/stream", &mine, None).await);
    let mut ops = Reader::new(open(&app, "/v1/ops/stream", ADMIN_TOKEN, None).await);
    let theirs = app.create_generation(&other).await;
    let my = app.create_generation(&mine).await;
    let my_id = my["id"].as_str().unwrap();
    // Mine: from its creation to settled, nothing of theirs.
    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|event: &Sse| event.data["to"] != "settled")
    {
        seen.push(own.next().await.unwrap());
    }
    assert!(
        seen.iter()
            .all(|event| event.data["generation_id"] == my_id),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|event| event.data.get("account_id").is_none())
    );
    assert_eq!(moves(&seen), timeline(&app, &mine, my_id).await);
    // The operators see both, with whose they are.
    let theirs_id = theirs["id"].as_str().unwrap();
    let mut settled = std::collections::HashSet::new();
    while settled.len() < 2 {
        let event = ops.next().await.unwrap();
        assert_eq!(event.data["provider"], "simulator");
        if event.data["generation_id"] == theirs_id {
            assert_eq!(event.data["account_id"], other_id);
        }
        if event.data["to"] == "settled" {
            settled.insert(event.data["generation_id"].as_str().unwrap().to_owned());
        }
    }
    let refused = open(&app, "/v1/ops/stream", &mine, None).await;
    assert_eq!(crate::common::error_code(refused, 403).await, "forbidden");
    let unsigned = app
        .client
        .get(app.url("/v1/ops/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let foreign = open(
        &app,
        &format!("/v1/generations/{theirs_id}/stream"),
        &mine,
        None,
    )
    .await;
    assert_eq!(foreign.status(), 404);
}

/// A follower that was not read while the feed sent more batches than its channel keeps
/// reads the ones it missed from the database: every event once, in order, none invented.
/// (Either of its two ways of noticing suffices: the channel says it lagged, and the next
/// batch it does get starts after what it has read. With neither, this fails.)
async fn a_follower_behind_the_channel_reads_what_it_missed(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.delay_ms = 10)
        .spawn()
        .await;
    let db = app.state.db.clone();
    // A feed of its own with room for two batches, told by hand after each generation.
    let feed: Arc<Feed> = Feed::start_with_capacity(db.clone(), 2);
    let mut follower = Follower::new(&feed, db.clone(), Scope::All, 0);
    let (_, key) = app.funded_account(100).await;
    // It reads the (empty) past and waits for the feed, which then sends it more than two
    // batches while nobody reads it.
    let waited = tokio::time::timeout(Duration::from_millis(200), follower.next()).await;
    assert!(waited.is_err(), "nothing happened yet: {waited:?}");
    let mut ids = Vec::new();
    for _ in 0..6 {
        let generation = app.create_generation(&key).await;
        let id = generation["id"].as_str().unwrap().to_owned();
        app.wait_terminal(&key, &id, PATIENCE).await;
        feed.committed();
        ids.push(id);
    }
    let mut expected = 0;
    for id in &ids {
        expected += timeline(&app, &key, id).await.len();
    }
    let mut got = Vec::new();
    while got.len() < expected {
        let event = tokio::time::timeout(PATIENCE, follower.next())
            .await
            .expect("the follower caught up")
            .unwrap()
            .unwrap();
        got.push(event);
    }
    let got_ids: Vec<i64> = got.iter().map(|event| event.id).collect();
    let mut sorted = got_ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(got_ids, sorted, "in order, each once");
    for id in &ids {
        let of_it: Vec<(String, String)> = got
            .iter()
            .filter(|event| event.workflow_id.to_string() == *id)
            .map(|event| {
                let from = event.from.map_or("-", |from| from.as_str());
                (from.to_owned(), event.to.as_str().to_owned())
            })
            .collect();
        assert_eq!(of_it, timeline(&app, &key, id).await);
    }
    // Nothing more is there to come.
    feed.committed();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), follower.next())
            .await
            .is_err()
    );
}

/// A transition another process commits (an API-only process beside the engine) signals
/// nothing here: the feed's poll finds it.
async fn another_processs_commits_reach_its_streams(url: String) {
    let here = TestApp::builder(&url).spawn().await;
    let there = TestApp::builder(&url).spawn().await;
    let (_, key) = there.funded_account(100).await;
    let mut ops = Reader::new(open(&here, "/v1/ops/stream", ADMIN_TOKEN, None).await);
    let generation = there.create_generation(&key).await;
    let event = ops.next().await.unwrap();
    assert_eq!(event.data["generation_id"], generation["id"]);
    assert_eq!(event.data["to"], "reserved");
}

/// 1,000 idle streams hold a bounded amount of memory (the figure is printed: see the
/// README), the cap refuses one more with 503, and every slot comes back when they close.
#[actix_web::test]
async fn a_thousand_idle_streams_cost_bounded_memory() {
    const STREAMS: usize = 1000;
    let dir = tempfile_dir();
    let url = format!("sqlite://{}/streams.sqlite?mode=rwc", dir.display());
    let app = TestApp::builder(&url)
        .configure(|settings| {
            settings.http.max_streams = STREAMS;
            // Closed streams are noticed at the next keep-alive.
            settings.http.stream_keep_alive_secs = 1;
        })
        .spawn()
        .await;
    let (_, key) = app.funded_account(100).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let before = resident_kib();
    let mut open_streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let response = client
            .get(app.url("/v1/generations/stream"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        open_streams.push(response);
    }
    assert_eq!(app.state.streams.open(), STREAMS);
    let after = resident_kib();
    let per_stream = (after.saturating_sub(before)) as f64 / STREAMS as f64;
    println!(
        "{STREAMS} idle streams: resident memory {before} KiB -> {after} KiB, \
         {per_stream:.1} KiB per stream (server and client in one process)"
    );
    // Server and client together: well under 64 KiB per stream.
    assert!(per_stream < 64.0, "{per_stream} KiB per idle stream");
    let refused = client
        .get(app.url("/v1/generations/stream"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::common::error_code(refused, 503).await,
        "too_many_streams"
    );
    drop(open_streams);
    wait_for("every stream slot freed", PATIENCE, || async {
        match app.state.streams.open() {
            0 => Ok(()),
            open => Err(open),
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Stopping the process ends its open streams (a graceful stop would otherwise wait them out).
#[actix_web::test]
async fn closing_the_feed_ends_open_streams() {
    let dir = tempfile_dir();
    let url = format!("sqlite://{}/streams.sqlite?mode=rwc", dir.display());
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(100).await;
    let mut reader = Reader::new(open(&app, "/v1/generations/stream", &key, None).await);
    app.state.workflows.feed().close();
    assert_eq!(reader.next().await, None);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("atelier-streams-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// This process's resident set, in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// An entry whose transaction commits after one with a larger id (two writers: several
/// processes, or the API's beside the engine's) still reaches a stream, and in id order: the
/// feed holds the larger id back until the smaller one's transaction ended. (With a cursor
/// that follows the newest id, the late entry was never sent.)
#[actix_web::test]
async fn an_entry_committed_out_of_id_order_still_reaches_streams() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    crate::common::on_database(crate::common::Backend::Postgres, "late_commit", |url| async move {
        let app = TestApp::builder(&url)
            .engine(|settings| settings.simulator.delay_ms = 10)
            .spawn()
            .await;
        let (_, key) = app.funded_account(100).await;
        let mut ops = Reader::new(open(&app, "/v1/ops/stream", ADMIN_TOKEN, None).await);
        // The stream is live once it shows a generation through to its end.
        let generation = app.create_generation(&key).await;
        let id = generation["id"].as_str().unwrap().to_owned();
        while ops.next().await.unwrap().data["to"] != "settled" {}

        let other = atelier_actors::db::connect(&url).await.unwrap();
        let insert = |reason: &str, version: i64| {
            Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!(
                    "INSERT INTO workflow_events (workflow_id, from_state, to_state, reason, attempt, version, at) \
                     VALUES ('{id}', 'settled', 'settled', '{reason}', 0, {version}, now())"
                ),
            )
        };
        // The late entry takes its id first, then waits in its transaction.
        let late = other.begin().await.unwrap();
        late.execute_raw(insert("late", 100)).await.unwrap();
        app.state.db.execute_raw(insert("early", 101)).await.unwrap();
        app.state.workflows.feed().committed();
        let held = tokio::time::timeout(Duration::from_millis(500), ops.next_event()).await;
        assert!(held.is_err(), "sent past an entry still in its transaction: {held:?}");
        late.commit().await.unwrap();
        app.state.workflows.feed().committed();
        let first = ops.next().await.unwrap();
        let second = ops.next().await.unwrap();
        assert_eq!(first.data["reason"], "late");
        assert_eq!(second.data["reason"], "early");
        assert!(first.id < second.id);
    })
    .await;
}

/// A write transaction left open in another database of the same PostgreSQL cluster (another
/// application's, a test's) holds no stream back: the feed waits only for the transactions of
/// its own database. (By the snapshot alone, the cluster's oldest transaction would hold every
/// feed for `STALL`, 30 s.)
#[actix_web::test]
async fn a_transaction_open_in_another_database_holds_no_stream_back() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    crate::common::on_database(
        crate::common::Backend::Postgres,
        "foreign_txn",
        |url| async move {
            // The server's own database, where the scratch ones are made from.
            let base = std::env::var(crate::common::POSTGRES_URL_VAR).unwrap();
            let app = TestApp::builder(&url)
                .engine(|settings| settings.simulator.delay_ms = 10)
                .spawn()
                .await;
            let (_, key) = app.funded_account(100).await;
            let elsewhere = atelier_actors::db::connect(&base).await.unwrap();
            let long = elsewhere.begin().await.unwrap();
            let statement = "SELECT pg_current_xact_id()::text";
            long.execute_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                statement,
            ))
            .await
            .unwrap();
            let mut ops = Reader::new(open(&app, "/v1/ops/stream", ADMIN_TOKEN, None).await);
            let generation = app.create_generation(&key).await;
            loop {
                let event = ops.next().await.unwrap();
                if event.data["generation_id"] == generation["id"] && event.data["to"] == "settled"
                {
                    break;
                }
            }
            long.rollback().await.unwrap();
        },
    )
    .await;
}

/// A stream opened without `Last-Event-ID` starts from now: what committed just before it
/// connected is not sent, even by a feed nobody listened to (whose last look at the timeline
/// may be a second old); what commits after is.
async fn a_stream_from_now_sends_nothing_committed_before_it(url: String) {
    let app = TestApp::builder(&url)
        .engine(|settings| settings.simulator.delay_ms = 10)
        .spawn()
        .await;
    let (_, key) = app.funded_account(100).await;
    let before = app.create_generation(&key).await;
    let before = before["id"].as_str().unwrap().to_owned();
    app.wait_terminal(&key, &before, PATIENCE).await;
    let mut ops = Reader::new(open(&app, "/v1/ops/stream", ADMIN_TOKEN, None).await);
    let early = tokio::time::timeout(Duration::from_millis(1_500), ops.next_event()).await;
    assert!(
        early.is_err(),
        "sent what committed before it connected: {early:?}"
    );
    let after = app.create_generation(&key).await;
    let event = ops.next().await.unwrap();
    assert_eq!(event.data["generation_id"], after["id"]);
    assert_eq!(event.data["to"], "reserved");
}
