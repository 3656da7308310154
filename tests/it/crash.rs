//! A process doing holds and settles is SIGKILLed mid-way: afterwards `atelier verify` passes,
//! every settle the process reported is in the database, and the balances add up to exactly what
//! was committed. And `atelier verify` does notice when the books do not add up.

use crate::common::{atelier_command, funded_account, open_ledger, run_verify};

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use atelier_actors::ledger::{ReleaseOutcome, read};
use atelier_actors::{Clock, Credits, SystemClock};
use atelier_entities::hold::{self, HoldState};
use rand::Rng;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

const FUNDS: i64 = 1_000_000;
const KILLS: usize = 3;

database_tests!(
    killed_mid_work_loses_nothing,
    verify_reports_books_that_do_not_add_up
);

/// Runs `atelier verify`: (whether the books add up, what it printed).
fn verify(database_url: &str) -> (bool, String) {
    let mut command = atelier_command(database_url);
    command.arg("verify");
    run_verify(command)
}

async fn killed_mid_work_loses_nothing(url: String) {
    let (db, ledger) = open_ledger(&url).await;
    let account = funded_account(&db, &ledger, FUNDS).await;

    let mut rng = crate::common::seeded_rng("killed_mid_work_loses_nothing");
    let mut reported = Vec::new();
    for _ in 0..KILLS {
        let mut child = atelier_command(&url)
            .args(["stress", "pairs", "--account", &account.to_string()])
            .args(["--count", "1000000", "--concurrency", "16"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start atelier stress");
        // Kill at a random point after some work has certainly been committed.
        let kill_after = rng.random_range(50..400);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref().take(kill_after) {
            let line = line.unwrap();
            let id = line.strip_prefix("settled ").expect("settled line");
            reported.push(Uuid::parse_str(id).unwrap());
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines already in the pipe were printed after their settle committed, too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("settled ") {
                reported.push(Uuid::parse_str(id).unwrap());
            }
        }

        let (ok, report) = verify(&url);
        assert!(ok, "verify after SIGKILL: {report}");
    }

    let holds = hold::Entity::find()
        .filter(hold::Column::AccountId.eq(account))
        .all(&db)
        .await
        .unwrap();
    let settled: Vec<&hold::Model> = holds
        .iter()
        .filter(|h| h.state == HoldState::Settled)
        .collect();
    for id in &reported {
        let row = holds.iter().find(|h| h.id == *id);
        assert_eq!(
            row.map(|h| h.state),
            Some(HoldState::Settled),
            "a settle the process reported is missing"
        );
    }
    assert!(settled.len() >= reported.len());
    let open: Vec<&hold::Model> = holds
        .iter()
        .filter(|h| h.state == HoldState::Open)
        .collect();

    let balance = read::balance(&db, account, SystemClock.now())
        .await
        .unwrap();
    let consumed: i64 = settled.iter().map(|h| h.settled_amount).sum();
    let open_amount: i64 = open.iter().map(|h| h.amount).sum();
    assert_eq!(balance.held, open_amount, "held = the holds left open");
    assert_eq!(balance.available + balance.held + consumed, FUNDS);

    // Holds the killed processes left open can still be released, exactly once.
    for hold in open {
        let released = ledger.release(hold.id).await.unwrap();
        assert_eq!(
            released,
            ReleaseOutcome::Released {
                returned: hold.amount
            }
        );
    }
    let balance = read::balance(&db, account, SystemClock.now())
        .await
        .unwrap();
    assert_eq!((balance.available, balance.held), (FUNDS - consumed, 0));
    let (ok, report) = verify(&url);
    assert!(ok, "verify after releasing: {report}");
}

async fn verify_reports_books_that_do_not_add_up(url: String) {
    let (db, ledger) = open_ledger(&url).await;
    let account = funded_account(&db, &ledger, 5).await;
    let (ok, report) = verify(&url);
    assert!(ok, "{report}");

    // Credits appear from nowhere: the package no longer adds up, nor does the account.
    db.execute_unprepared("UPDATE credit_packages SET remaining = remaining + 1")
        .await
        .unwrap();
    let (ok, report) = verify(&url);
    assert!(!ok, "verify missed a package that does not add up");
    assert!(report.contains("invariant 1"), "{report}");
    assert!(report.contains("invariant 2"), "{report}");

    // Put right, then a hold says it settled more than it held.
    db.execute_unprepared("UPDATE credit_packages SET remaining = remaining - 1")
        .await
        .unwrap();
    let outcome = ledger.hold(account, Credits::parse(2).unwrap(), None).await;
    let atelier_actors::ledger::HoldOutcome::Held(hold) = outcome.unwrap() else {
        panic!("hold refused")
    };
    ledger.settle(hold.row.id, 1).await.unwrap();
    assert!(verify(&url).0);
    db.execute_unprepared("UPDATE holds SET settled_amount = 2")
        .await
        .unwrap();
    let (ok, report) = verify(&url);
    assert!(!ok, "verify missed a hold that does not add up");
    assert!(report.contains("invariant 3"), "{report}");
}
