//! Databases for tests: a fresh database on the test PostgreSQL, dropped when the test ends
//! (also when it fails). The test PostgreSQL is the one `tools/services.sh start` found or
//! started (`make test` runs it first): `SWITCHBOARD_TEST_POSTGRES`, else the URL it wrote to
//! `target/services.env`. Used by the unit tests and by the integration tests in `tests/`; a
//! test that cannot have its database fails at once (hence `expect`).

#![allow(clippy::expect_used)]

use sqlx::{Connection, Executor, PgConnection};

/// A setting of `target/services.env` (`SWITCHBOARD_TEST_POSTGRES`, `SWITCHBOARD_TEST_REDIS`),
/// or of the environment, which comes first.
pub fn service_url(name: &str) -> Option<String> {
    if let Ok(url) = std::env::var(name) {
        return Some(url);
    }
    let env = concat!(env!("CARGO_MANIFEST_DIR"), "/target/services.env");
    let text = std::fs::read_to_string(env).ok()?;
    let prefix = format!("{name}=");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).map(str::to_owned)
}

/// The admin URL of the test PostgreSQL.
///
/// # Panics
/// When there is none: a test that needs PostgreSQL fails rather than passing unchecked.
pub fn postgres_admin_url() -> String {
    service_url("SWITCHBOARD_TEST_POSTGRES")
        .expect("no PostgreSQL for the tests: run `tools/services.sh start` (make test does)")
}

/// A database of its own on the test PostgreSQL, dropped (with its connections) on drop.
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Create a database with a fresh name.
    ///
    /// # Panics
    /// When PostgreSQL does not answer or refuses.
    pub async fn create() -> TestDatabase {
        let admin = postgres_admin_url();
        let name = format!("switchboard_test_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(&admin).await.expect("the test PostgreSQL answers");
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str()).await.expect("CREATE DATABASE");
        let _ = conn.close().await;
        let url = database_url(&admin, &name);
        TestDatabase { admin, name, url }
    }

    /// Its URL, for `Store::open` or `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `admin` with its database replaced by `name`.
fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot be blocked on: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str()).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A store for a unit test, with what it lives in (a temporary folder, or a database of its
/// own), removed when it is dropped.
#[cfg(test)]
pub(crate) struct TestStore {
    pub store: super::Store,
    _dir: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

#[cfg(test)]
impl std::ops::Deref for TestStore {
    type Target = super::Store;
    fn deref(&self) -> &super::Store {
        &self.store
    }
}

/// A fresh SQLite store in a temporary folder.
#[cfg(test)]
pub(crate) async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}/db/test.db", dir.path().display());
    let store = super::Store::open(&url).await.expect("SQLite opens");
    TestStore { store, _dir: Some(dir), _database: None }
}

/// A fresh store in a database of its own on the test PostgreSQL.
#[cfg(test)]
pub(crate) async fn postgres() -> TestStore {
    let database = TestDatabase::create().await;
    let store = super::Store::open(database.url()).await.expect("PostgreSQL opens and migrates");
    TestStore { store, _dir: None, _database: Some(database) }
}

/// A fresh store on each engine: SQLite, then PostgreSQL. Store tests run on both.
#[cfg(test)]
pub(crate) async fn each_engine() -> [TestStore; 2] {
    [sqlite().await, postgres().await]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_names_the_new_database() {
        let at = |admin: &str| database_url(admin, "t1");
        assert_eq!(at("postgres://root@127.0.0.1:5432/test"), "postgres://root@127.0.0.1:5432/t1");
        assert_eq!(at("postgres://127.0.0.1:55432"), "postgres://127.0.0.1:55432/t1");
        assert_eq!(at("postgres://u@h/db?sslmode=disable"), "postgres://u@h/t1?sslmode=disable");
    }
}
