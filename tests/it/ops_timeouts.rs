//! Reads that cannot finish in time answer with their timeout instead of hanging, or failing
//! as if something were broken.
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::common::{self, ADMIN_TOKEN, Backend, TestApp};

/// Another session holds `workflows` locked (as a long migration or a stuck transaction
/// would): the list answers 503 `query_timeout` after 5 s and the summary 504
/// `summary_timeout` (PostgreSQL's `lock_timeout` cuts it at 5 s), and a client's read 503
/// `database_busy` with `Retry-After` (it was a 500); once the lock goes, all answer again.
/// PostgreSQL only: SQLite's readers are never blocked by a writer.
#[actix_web::test]
async fn reads_blocked_past_their_limit_answer_their_timeout() {
    common::on_database(Backend::Postgres, "ops_read_timeouts", |url| async move {
        let app = TestApp::builder(&url).spawn().await;
        let (_, key) = app.funded_account(1).await;
        let locker = sea_orm::Database::connect(&url).await.unwrap();
        let held = locker.begin().await.unwrap();
        held.execute_unprepared("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let list = app.get("/v1/ops/generations", ADMIN_TOKEN).await;
        assert_eq!(common::error_code(list, 503).await, "query_timeout");
        let summary = app.get("/v1/ops/summary", ADMIN_TOKEN).await;
        assert_eq!(common::error_code(summary, 504).await, "summary_timeout");
        let client = app.get("/v1/generations", &key).await;
        assert_eq!(client.headers()["retry-after"], "1");
        assert_eq!(common::error_code(client, 503).await, "database_busy");
        held.rollback().await.unwrap();
        for (path, token) in [
            ("/v1/ops/generations", ADMIN_TOKEN),
            ("/v1/ops/summary", ADMIN_TOKEN),
            ("/v1/generations", key.as_str()),
        ] {
            assert_eq!(app.get(path, token).await.status(), 200, "{path}");
        }
        locker.close().await.unwrap();
    })
    .await;
}
