//! `GET /metrics`: the counters and histograms move as generations run, the scrape-time
//! gauges count this database's live generations, no label names an account or a
//! generation, and the text is valid Prometheus exposition format (checked by a strict
//! parser below). The recorder is process-wide and other tests run beside these, so each
//! test runs its generations on a provider named for it and compares deltas.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use atelier::config::Settings;
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::workflow::{BatchFault, Event, WriteCommand};

use crate::common::{self, TestApp};

database_tests!(
    counters_and_histograms_move_as_generations_run,
    a_rolled_back_transition_counts_nothing,
    live_gauges_count_this_databases_generations,
);

/// A sample's labels, sorted.
type Labels = BTreeMap<String, String>;

/// One parsed exposition: the declared type of each family and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<(String, Labels, f64)>,
}

impl Exposition {
    /// The sum of the samples named `name` whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, labels, _)| {
                sample == name
                    && with
                        .iter()
                        .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    fn has(&self, name: &str, with: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(sample, labels, _)| {
            sample == name
                && with
                    .iter()
                    .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
        })
    }
}

fn is_name(name: &str, first: fn(char) -> bool) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn metric_name(name: &str) -> bool {
    is_name(name, |c| c.is_ascii_alphabetic() || c == '_' || c == ':')
}

fn label_name(name: &str) -> bool {
    is_name(name, |c| c.is_ascii_alphabetic() || c == '_') && !name.contains(':')
}

fn value(raw: &str) -> f64 {
    match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        raw => raw
            .parse()
            .unwrap_or_else(|_| panic!("not a sample value: {raw:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `text`: the labels and the rest of the line.
fn labels(text: &str) -> (Labels, &str) {
    let mut labels = Labels::new();
    let mut rest = text.strip_prefix('{').expect("labels open with {");
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(label_name(name), "bad label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("label value closes") {
                (_, '\\') => match chars.next().expect("escape") {
                    (_, 'n') => value.push('\n'),
                    (_, c @ ('\\' | '"')) => value.push(c),
                    (_, c) => panic!("bad escape \\{c}"),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` are its own.
fn family<'a>(types: &HashMap<String, String>, sample: &'a str) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
        {
            return base;
        }
    }
    sample
}

/// Parses the text exposition format strictly: every line a comment (`# HELP`, `# TYPE`
/// before the family's samples), or a sample with valid names, quoted and escaped label
/// values and a number; histograms cumulative, ending in `+Inf` equal to `_count`.
fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().expect("a name"));
            assert!(metric_name(name), "bad metric name in {line:?}");
            if keyword == "TYPE" {
                let kind = parts.next().expect("a type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type in {line:?}"
                );
                let fresh = exposition.types.insert(name.to_owned(), kind.to_owned());
                assert!(fresh.is_none(), "TYPE of {name} twice");
            }
            continue;
        }
        let cut = line.find(['{', ' ']).expect("a sample has a value");
        let name = &line[..cut];
        assert!(metric_name(name), "bad metric name in {line:?}");
        let (labels, rest) = if line[cut..].starts_with('{') {
            labels(&line[cut..])
        } else {
            (Labels::new(), &line[cut..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .expect("a space before the value")
            .split(' ');
        let sample = value(fields.next().expect("a value"));
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().expect("an integer timestamp");
        }
        assert!(fields.next().is_none(), "trailing text in {line:?}");
        let base = family(&exposition.types, name);
        assert!(
            exposition.types.contains_key(base),
            "{name} has no TYPE before it"
        );
        exposition.samples.push((name.to_owned(), labels, sample));
    }
    check_histograms(&exposition);
    exposition
}

fn check_histograms(exposition: &Exposition) {
    let mut series: HashMap<(String, Labels), Vec<(f64, f64)>> = HashMap::new();
    for (name, labels, count) in &exposition.samples {
        if let Some(base) = name.strip_suffix("_bucket") {
            let mut rest = labels.clone();
            let le = value(&rest.remove("le").expect("a bucket has le"));
            series
                .entry((base.to_owned(), rest))
                .or_default()
                .push((le, *count));
        }
    }
    for ((base, labels), buckets) in series {
        assert!(
            buckets
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1),
            "{base}{labels:?}: buckets not cumulative: {buckets:?}"
        );
        let (last_le, last) = *buckets.last().unwrap();
        assert_eq!(last_le, f64::INFINITY, "{base}: the last bucket is +Inf");
        let count = exposition
            .samples
            .iter()
            .find(|(name, other, _)| *name == format!("{base}_count") && *other == labels)
            .map(|(_, _, count)| *count);
        assert_eq!(
            count,
            Some(last),
            "{base}{labels:?}: _count equals the +Inf bucket"
        );
    }
}

async fn scrape(app: &TestApp) -> (String, Exposition) {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let parsed = parse(&text);
    (text, parsed)
}

/// A provider named for this test and backend, served by the built-in simulator.
fn metered(url: &str) -> String {
    let backend = if url.starts_with("postgres") {
        "pg"
    } else {
        "lite"
    };
    format!("metered_{backend}")
}

/// Voiding the 3 credits the account has left counts them as `voided`.
async fn assert_voids_are_counted(app: &TestApp, account: &str, before: &Exposition) {
    let detail = app
        .get_json(&format!("/v1/ops/accounts/{account}"), common::ADMIN_TOKEN)
        .await;
    let package = detail["packages"][0]["id"].as_str().unwrap();
    let voided = app
        .admin_post(
            &format!("/v1/ops/accounts/{account}/grants/{package}/void"),
            &serde_json::json!({"reason": "metrics test"}),
        )
        .await;
    assert_eq!(voided.status(), 200);
    let (_, after) = scrape(app).await;
    let movement = [("movement", "voided")];
    let counted = after.sum("atelier_ledger_credits_total", &movement)
        - before.sum("atelier_ledger_credits_total", &movement);
    assert!(counted >= 3.0, "{counted}");
}

fn on_simulator(settings: &mut Settings, name: &str) {
    let mut config = ProviderConfig::costing(1);
    config.adapter = Some("simulator".into());
    settings.providers.by_name.insert(name.to_owned(), config);
    settings.default_provider = name.to_owned();
}

async fn counters_and_histograms_move_as_generations_run(url: String) {
    let provider = metered(&url);
    let app = TestApp::builder(&url)
        .engine(|settings| on_simulator(settings, &provider))
        .spawn()
        .await;
    let (account, key) = app.funded_account(5).await;
    let (_, before) = scrape(&app).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = app.create_generation(&key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.wait_terminal(&key, &id, Duration::from_secs(20)).await;
        ids.push(id);
    }
    let on = ("provider", provider.as_str());
    let (text, after) = scrape_once_settled(&app, on).await;
    assert_the_providers_series_moved(&before, &after, on);
    assert_process_wide_series_moved(&before, &after);
    assert_voids_are_counted(&app, &account, &after).await;
    assert_eq!(after.types["atelier_batch_size"], "histogram");
    assert_eq!(after.types["atelier_transitions_total"], "counter");
    for secret in ids.iter().chain([&account, &key]) {
        assert!(!text.contains(secret.as_str()), "{secret} is in a label");
    }
}

/// A scrape once both webhook→settled samples are in: that time is read after the settle
/// commits, so it may follow a moment later.
async fn scrape_once_settled(app: &TestApp, on: (&str, &str)) -> (String, Exposition) {
    common::wait_for(
        "the webhook→settled samples",
        Duration::from_secs(5),
        || async {
            let (text, after) = scrape(app).await;
            let settled = after.sum("atelier_webhook_to_settled_seconds_count", &[on]);
            if settled >= 2.0 {
                Ok((text, after))
            } else {
                Err(settled)
            }
        },
    )
    .await
}

/// The provider's own series moved by exactly the two generations: created, settled, none
/// released, two submits; its gauges are there.
fn assert_the_providers_series_moved(before: &Exposition, after: &Exposition, on: (&str, &str)) {
    let delta = |name: &str, with: &[(&str, &str)]| after.sum(name, with) - before.sum(name, with);
    let transitions = "atelier_transitions_total";
    let created = [
        ("from", "none"),
        ("to", "reserved"),
        on,
        ("error_code", "none"),
    ];
    assert_eq!(delta(transitions, &created), 2.0);
    assert_eq!(
        delta(transitions, &[("from", "uploading"), ("to", "settled"), on]),
        2.0
    );
    assert_eq!(delta(transitions, &[("to", "released"), on]), 0.0);
    let submits = [on, ("call", "submit"), ("outcome", "ok")];
    assert_eq!(
        delta("atelier_provider_call_duration_seconds_count", &submits),
        2.0
    );
    assert!(after.has("atelier_provider_in_flight", &[on]));
    assert_eq!(after.sum("atelier_provider_circuit_state", &[on]), 0.0);
    assert_eq!(after.sum("atelier_provider_paused", &[on]), 0.0);
}

/// Process-wide series other tests move too: at least by ours.
fn assert_process_wide_series_moved(before: &Exposition, after: &Exposition) {
    let delta = |name: &str, with: &[(&str, &str)]| after.sum(name, with) - before.sum(name, with);
    assert!(delta("atelier_ledger_credits_total", &[("movement", "held")]) >= 2.0);
    assert!(delta("atelier_ledger_credits_total", &[("movement", "consumed")]) >= 2.0);
    assert!(delta("atelier_ledger_credits_total", &[("movement", "granted")]) >= 0.0);
    assert!(
        delta(
            "atelier_step_duration_seconds_count",
            &[("state", "uploading")]
        ) >= 2.0
    );
    let workflow = [("writer", "workflow")];
    assert!(delta("atelier_batch_size_count", &workflow) >= 1.0);
    assert!(
        delta(
            "atelier_batch_duration_seconds_count",
            &[("writer", "workflow"), ("outcome", "committed")]
        ) >= 1.0
    );
}

/// Every settle fails in its transaction: the batch is rolled back (and so is each retry of
/// it), so no settle is counted, while the moves that did commit are.
async fn a_rolled_back_transition_counts_nothing(url: String) {
    let provider = format!("{}_faulty", metered(&url));
    let fault: BatchFault = Arc::new(|command: &WriteCommand| {
        matches!(
            command,
            WriteCommand::Transition {
                event: Event::Stored { .. },
                ..
            }
        )
    });
    let app = TestApp::builder(&url)
        .engine(|settings| on_simulator(settings, &provider))
        .fault(fault)
        .spawn()
        .await;
    let (_, key) = app.funded_account(1).await;
    let (_, before) = scrape(&app).await;
    let id = app.create_generation(&key).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_state(&key, &id, &["uploading"], Duration::from_secs(20))
        .await;
    let on = ("provider", provider.as_str());
    let failed = [("writer", "workflow"), ("outcome", "failed")];
    let failed_before = before.sum("atelier_batch_duration_seconds_count", &failed);
    let after = common::wait_for("a settle rolled back", Duration::from_secs(10), || async {
        let (_, after) = scrape(&app).await;
        let failed = after.sum("atelier_batch_duration_seconds_count", &failed);
        if failed >= failed_before + 2.0 {
            Ok(after)
        } else {
            Err(failed)
        }
    })
    .await;
    let transitions = |with: &[(&str, &str)]| after.sum("atelier_transitions_total", with);
    assert_eq!(transitions(&[("to", "uploading"), on]), 1.0);
    assert_eq!(
        transitions(&[("to", "settled"), on]),
        0.0,
        "a rolled-back settle is not counted"
    );
    let generation = app.get_json(&format!("/v1/generations/{id}"), &key).await;
    assert_eq!(generation["state"], "uploading");
}

async fn live_gauges_count_this_databases_generations(url: String) {
    // No engine: the generation stays `reserved`.
    let app = TestApp::builder(&url).spawn().await;
    let (_, key) = app.funded_account(1).await;
    app.create_generation(&key).await;
    // Another test's scrape may set the process-wide gauges between ours and its rendering.
    common::wait_for("this database's gauges", Duration::from_secs(5), || async {
        let (_, metrics) = scrape(&app).await;
        let reserved = metrics.sum("atelier_generations_live", &[("state", "reserved")]);
        let uploading = metrics.sum("atelier_generations_live", &[("state", "uploading")]);
        let age = metrics.sum("atelier_oldest_live_generation_age_seconds", &[]);
        if reserved == 1.0 && uploading == 0.0 && (0.0..60.0).contains(&age) {
            Ok(())
        } else {
            Err((reserved, uploading, age))
        }
    })
    .await;
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    for bad in [
        "no_type 1\n",
        "# TYPE a counter\na{b=\"c} 1\n",
        "# TYPE a counter\na{1b=\"c\"} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "{bad:?} parsed"
        );
    }
    let good = parse("# HELP a An \"a\".\n# TYPE a counter\na{b=\"x\\\"y\",c=\"\"} 1.5e3\n");
    assert_eq!(good.sum("a", &[("b", "x\"y")]), 1500.0);
}
