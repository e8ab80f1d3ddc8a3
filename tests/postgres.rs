//! The PostgreSQL schema (`migrations/postgres`): it applies to a fresh database and holds every
//! table the store uses, and its per-topic counter hands out offsets as the log of events will
//! on several nodes (docs/architecture.md, "Engines"). Runs on the PostgreSQL that `tools/services.sh start`
//! found or started (`make test` runs it first), in a database of its own, dropped at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};

#[tokio::test]
async fn the_postgres_schema_applies_and_its_counter_hands_out_gap_free_offsets() {
    let admin = switchboard::store::testing::postgres_admin_url();
    let name = format!("switchboard_test_{:016x}", rand::random::<u64>());
    let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL answers");
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str()).await.unwrap();
    let options: PgConnectOptions = admin.parse::<PgConnectOptions>().unwrap().database(&name);
    let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.unwrap();

    let test_pool = pool.clone();
    let result = async move {
        let pool = test_pool;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.expect("migrations apply");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        // Every table SQLite's migrations make, and the per-topic counter only PostgreSQL needs.
        let dir = tempfile::tempdir().unwrap();
        let sqlite = switchboard::store::Store::open(&format!("sqlite://{}/s.db", dir.path().display())).await.unwrap();
        let sqlite_pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/s.db", dir.path().display())).await.unwrap();
        let mut expected: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
        )
        .fetch_all(&sqlite_pool)
        .await
        .unwrap();
        sqlite.close().await;
        expected.push("topics".into());
        expected.sort();
        assert!(expected.contains(&"events".to_owned()) && expected.contains(&"polls".to_owned()), "{expected:?}");
        assert_eq!(tables, expected, "PostgreSQL's schema has SQLite's tables");
        let lobby: (String, String) = sqlx::query_as("SELECT name, epoch FROM rooms").fetch_one(&pool).await.unwrap();
        assert_eq!((lobby.0.as_str(), lobby.1.len()), ("lobby", 16));
        // Names are unique without regard to case, as on SQLite.
        let user = "INSERT INTO users (username, password_hash, created_at) VALUES ($1, 'h', 0)";
        sqlx::query(user).bind("Ada").execute(&pool).await.unwrap();
        assert!(sqlx::query(user).bind("ada").execute(&pool).await.is_err());

        // Offsets: a batch of n takes the next n; a rolled-back batch gives them back.
        let take = "INSERT INTO topics (topic, head) VALUES ($1, $2)
                    ON CONFLICT (topic) DO UPDATE SET head = topics.head + EXCLUDED.head RETURNING head";
        let head: i64 = sqlx::query_scalar(take).bind("chat:lobby").bind(2i64).fetch_one(&pool).await.unwrap();
        assert_eq!(head, 2);
        let mut tx = pool.begin().await.unwrap();
        let lost: i64 = sqlx::query_scalar(take).bind("chat:lobby").bind(3i64).fetch_one(&mut *tx).await.unwrap();
        assert_eq!(lost, 5);
        tx.rollback().await.unwrap();
        let head: i64 = sqlx::query_scalar(take).bind("chat:lobby").bind(1i64).fetch_one(&pool).await.unwrap();
        assert_eq!(head, 3, "the rolled-back offsets were handed out again, with no gap");

        // Concurrent writers on one topic wait for each other's counter row: every offset is
        // handed out once, none is skipped.
        let mut writers = Vec::new();
        for _ in 0..8 {
            let pool = pool.clone();
            writers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..25 {
                    let mut tx = pool.begin().await.unwrap();
                    let head: i64 = sqlx::query_scalar(take).bind("t").bind(1i64).fetch_one(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                    got.push(head);
                }
                got
            }));
        }
        let mut all: Vec<i64> = Vec::new();
        for writer in writers {
            all.extend(writer.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=200).collect::<Vec<i64>>());
    };
    // Clean up whatever happened, then report it.
    let outcome = tokio::spawn(result).await;
    pool.close().await;
    conn.execute(format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#).as_str()).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
