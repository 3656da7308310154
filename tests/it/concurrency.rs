//! Overspend: many concurrent holds against a small balance never take more than there is —
//! through one ledger actor, through two independent ledgers sharing the database (as two
//! processes would), and through two real OS processes.

use crate::common::{atelier_command, funded_account, open_ledger};

use std::process::Stdio;

use atelier_actors::ledger::verify::verify_ledger;
use atelier_actors::ledger::{HoldOutcome, read};
use atelier_actors::{Clock, Credits, SystemClock};
use futures::future::join_all;
use sea_orm::DatabaseConnection;
use serde_json::Value;
use uuid::Uuid;

const BALANCE: i64 = 10;
const HOLDS: usize = 50;
const ROUNDS: usize = 20;

database_tests!(
    concurrent_holds_in_one_process_never_overspend,
    concurrent_holds_through_two_ledgers_never_overspend,
    concurrent_holds_from_two_os_processes_never_overspend,
);

fn count_held(outcomes: Vec<HoldOutcome>) -> usize {
    outcomes
        .into_iter()
        .filter(|outcome| match outcome {
            HoldOutcome::Held(_) => true,
            HoldOutcome::InsufficientCredits { requested: 1, .. } => false,
            other => panic!("unexpected outcome {other:?}"),
        })
        .count()
}

async fn assert_fully_held(db: &DatabaseConnection, account: Uuid) {
    let balance = read::balance(db, account, SystemClock.now()).await.unwrap();
    assert_eq!((balance.available, balance.held), (0, BALANCE));
    assert_eq!(verify_ledger(db).await.unwrap(), vec![]);
}

async fn concurrent_holds_in_one_process_never_overspend(url: String) {
    let (db, ledger) = open_ledger(&url).await;
    let one = Credits::parse(1).unwrap();
    for _ in 0..ROUNDS {
        let account = funded_account(&db, &ledger, BALANCE).await;
        let holds = (0..HOLDS).map(|_| ledger.hold(account, one, None));
        let outcomes = join_all(holds).await.into_iter().map(Result::unwrap);
        assert_eq!(count_held(outcomes.collect()), BALANCE as usize);
        assert_fully_held(&db, account).await;
    }
}

/// Two ledgers with their own connection pools race on the same accounts: the actor cannot
/// serialise them, only the database transaction can.
async fn concurrent_holds_through_two_ledgers_never_overspend(url: String) {
    let (first_db, first) = open_ledger(&url).await;
    let (_, second) = open_ledger(&url).await;
    let one = Credits::parse(1).unwrap();
    for _ in 0..ROUNDS {
        let account = funded_account(&first_db, &first, BALANCE).await;
        let holds = (0..HOLDS).map(|index| {
            let ledger = if index % 2 == 0 { &first } else { &second };
            ledger.hold(account, one, None)
        });
        let outcomes = join_all(holds).await.into_iter().map(Result::unwrap);
        assert_eq!(count_held(outcomes.collect()), BALANCE as usize);
        assert_fully_held(&first_db, account).await;
    }
}

async fn concurrent_holds_from_two_os_processes_never_overspend(url: String) {
    let (db, ledger) = open_ledger(&url).await;
    for _ in 0..3 {
        let account = funded_account(&db, &ledger, BALANCE).await;
        // Both processes wait for the same instant, after their start-up, to collide.
        let start_at = SystemClock.now().timestamp_millis() + 1_500;
        let children: Vec<_> = (0..2)
            .map(|_| {
                atelier_command(&url)
                    .args(["stress", "holds", "--account", &account.to_string()])
                    .args(["--count", &(HOLDS / 2).to_string()])
                    .args(["--start-at-ms", &start_at.to_string()])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("start atelier stress")
            })
            .collect();
        let mut held = 0;
        let mut refused = 0;
        let mut spans = Vec::new();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "stress process failed");
            let report: Value = serde_json::from_slice(&output.stdout).unwrap();
            held += report["held"].as_i64().unwrap();
            refused += report["refused"].as_i64().unwrap();
            let at = |field: &str| report[field].as_i64().expect(field);
            spans.push([
                at("started_us"),
                at("first_commit_us"),
                at("last_commit_us"),
            ]);
        }
        assert_eq!((held, refused), (BALANCE, HOLDS as i64 - BALANCE));
        // Only processes whose holds were in the database at the same time raced: one that
        // finished before the other began (a slow start) would prove nothing about two
        // writers. (On SQLite the commits themselves never overlap: writers take turns.)
        eprintln!("(sent, first commit, last commit) in µs: {spans:?}");
        let [[sent_a, _, last_a], [sent_b, _, last_b]] = spans[..] else {
            unreachable!("two processes")
        };
        assert!(
            sent_a <= last_b && sent_b <= last_a,
            "the processes did not overlap: {spans:?}"
        );
        assert_fully_held(&db, account).await;
    }
}
