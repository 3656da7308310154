//! Migrations applied to a database that already holds data, on each database.

use std::sync::Arc;

use crate::common::start_of_test_time;
use atelier_actors::ledger::LedgerStore;
use atelier_actors::ledger::verify::verify_ledger;
use atelier_actors::ledger::{Command, GrantOutcome, HoldOutcome, Outcome, SettleOutcome};
use atelier_actors::{Credits, ManualClock};
use atelier_entities::credit_package;
use atelier_migrations::{Migrator, MigratorTrait};
use sea_orm::{EntityTrait, PaginatorTrait};
use uuid::Uuid;

database_tests!(grant_references_become_per_account_keeping_every_row);

fn grant(account_id: Uuid, credits: i64, reference: &str) -> Command {
    Command::Grant {
        account_id,
        credits: Credits::parse(credits).unwrap(),
        expires_at: None,
        reference: reference.to_owned(),
    }
}

/// An account as the schema of the first migrations holds it (`accounts::create` writes tables
/// that later migrations make).
async fn old_account(db: &sea_orm::DatabaseConnection, now: chrono::DateTime<chrono::Utc>) -> Uuid {
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let id = Uuid::now_v7();
    atelier_entities::account::Entity::insert(atelier_entities::account::ActiveModel {
        id: Set(id),
        name: Set(None),
        api_key_hash: Set(atelier::accounts::hash_secret(&id.to_string())),
        created_at: Set(now),
        // Columns of later migrations stay unset.
        ..Default::default()
    })
    .exec_without_returning(db)
    .await
    .unwrap();
    id
}

/// The migration that scopes grant references per account rebuilds the packages table on
/// SQLite: a package with a live hold and ledger entries pointing at it must come through,
/// the hold must still settle, and down-then-up must work too.
async fn grant_references_become_per_account_keeping_every_row(url: String) {
    let db = atelier_actors::db::connect(&url).await.unwrap();
    Migrator::up(&db, Some(3)).await.unwrap();
    let now = start_of_test_time();
    let store = LedgerStore::new(db.clone(), Arc::new(ManualClock::new(now)));
    let (first, second) = (old_account(&db, now).await, old_account(&db, now).await);
    let hold_id = Uuid::now_v7();
    let hold = Command::Hold {
        hold_id,
        account_id: first,
        credits: Credits::parse(2).unwrap(),
        generation_id: None,
    };
    let outcomes = store
        .apply(&[grant(first, 5, "welcome"), hold])
        .await
        .unwrap();
    assert!(matches!(outcomes[1], Outcome::Hold(HoldOutcome::Held(_))));

    Migrator::up(&db, None).await.unwrap();
    Migrator::down(&db, Some(1)).await.unwrap();
    Migrator::up(&db, None).await.unwrap();

    assert_eq!(credit_package::Entity::find().count(&db).await.unwrap(), 1);
    let outcomes = store
        .apply(&[
            grant(second, 3, "welcome"),
            grant(first, 5, "welcome"),
            grant(first, 6, "welcome"),
            Command::Settle { hold_id, amount: 2 },
        ])
        .await
        .unwrap();
    assert!(matches!(
        outcomes[0],
        Outcome::Grant(GrantOutcome::Created(_))
    ));
    assert!(matches!(
        outcomes[1],
        Outcome::Grant(GrantOutcome::Existing(_))
    ));
    assert_eq!(outcomes[2], Outcome::Grant(GrantOutcome::ReferenceConflict));
    assert!(matches!(
        outcomes[3],
        Outcome::Settle(SettleOutcome::Settled { .. })
    ));
    assert_eq!(verify_ledger(&db).await.unwrap(), []);
}
