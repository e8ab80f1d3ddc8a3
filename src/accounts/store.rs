//! Users, sessions, API tokens, room membership and read markers.
//!
//! Secrets (session cookies, API tokens) are stored as SHA-256 hashes; passwords as
//! argon2id hashes made by the caller, off the async runtime.

use crate::store::{now_ms, on_pool, BeginWrite, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
}

/// A row of `users`: id, username, is_admin.
type UserRow = (i64, String, i64);

fn user((id, username, is_admin): UserRow) -> User {
    User { id, username, is_admin: is_admin != 0 }
}

impl Store {
    /// The installation's secret called `name`: made from `fresh` the first time it is asked
    /// for, the same one ever after (also when two callers ask at once, on any node).
    pub async fn server_key(&self, name: &str, fresh: &str) -> Result<String, StoreError> {
        let insert =
            "INSERT INTO server_keys (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
        let select = "SELECT secret FROM server_keys WHERE name = $1";
        Ok(on_pool!(self, pool => {
            sqlx::query(insert).bind(name).bind(fresh).bind(now_ms()).execute(pool).await?;
            sqlx::query_scalar(select).bind(name).fetch_one(pool).await?
        }))
    }

    /// Create a user. The first user of an installation is its admin.
    pub async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, StoreError> {
        // On PostgreSQL, two first users at once must not both count no one before them.
        let lock = self.pick("SELECT 1", "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE");
        let created: Result<(i64, bool), sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(lock).execute(&mut *tx).await?;
            let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await?;
            let is_admin = existing == 0;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(username)
            .bind(password_hash)
            .bind(i64::from(is_admin))
            .bind(now_ms())
            .fetch_one(&mut *tx)
            .await?;
            // A newcomer has read everything said before they came: only what follows is unread.
            sqlx::query(
                "INSERT INTO room_reads (user_id, room_id, last_read)
                 SELECT $1, r.id, COALESCE((SELECT MAX(seq) FROM events e WHERE e.topic = 'chat:' || r.name), 0)
                 FROM rooms r",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok((id, is_admin))
        }
        .await);
        match created {
            Ok((id, is_admin)) => Ok(User { id, username: username.to_owned(), is_admin }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::NameTaken(username.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// A user and their password hash, by name (case-insensitive).
    pub async fn user_with_hash(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let sql = self.pick(
            // The column's collation is NOCASE.
            "SELECT id, username, is_admin, password_hash FROM users WHERE username = $1",
            "SELECT id, username, is_admin, password_hash FROM users WHERE lower(username) = lower($1)",
        );
        let row: Option<(i64, String, i64, String)> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(username).fetch_optional(pool).await?);
        Ok(row.map(|(id, name, admin, hash)| (user((id, name, admin)), hash)))
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.user_with_hash(username).await?.map(|(user, _)| user))
    }

    pub async fn create_session(&self, token_hash: &str, user_id: i64, expires_at: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(token_hash)
            .bind(user_id)
            .bind(now_ms())
            .bind(expires_at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The user a live session belongs to.
    pub async fn session_user(&self, token_hash: &str) -> Result<Option<User>, StoreError> {
        let sql = "SELECT u.id, u.username, u.is_admin FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.token_hash = $1 AND s.expires_at > $2";
        let row: Option<UserRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(token_hash).bind(now_ms()).fetch_optional(pool).await?);
        Ok(row.map(user))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM sessions WHERE token_hash = $1";
        on_pool!(self, pool => sqlx::query(sql).bind(token_hash).execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn create_token(&self, user_id: i64, name: &str, token_hash: &str) -> Result<TokenInfo, StoreError> {
        let created_at = now_ms();
        let sql = "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id";
        let id: i64 = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(user_id)
            .bind(name)
            .bind(token_hash)
            .bind(created_at)
            .fetch_one(pool)
            .await?);
        Ok(TokenInfo { id, name: name.to_owned(), created_at, revoked: false })
    }

    pub async fn tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = "SELECT id, name, created_at, revoked_at FROM api_tokens WHERE user_id = $1
                   ORDER BY created_at DESC, id DESC";
        let rows: Vec<(i64, String, i64, Option<i64>)> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(user_id).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at, revoked_at)| TokenInfo { id, name, created_at, revoked: revoked_at.is_some() })
            .collect())
    }

    /// Revoke one of the user's tokens. False when the user has no such token.
    pub async fn revoke_token(&self, user_id: i64, token_id: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL";
        let done = on_pool!(self, pool => sqlx::query(sql).bind(now_ms()).bind(token_id).bind(user_id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// The owner of a live (not revoked) token.
    pub async fn token_user(&self, token_hash: &str) -> Result<Option<User>, StoreError> {
        let sql = "SELECT u.id, u.username, u.is_admin FROM api_tokens t JOIN users u ON u.id = t.user_id
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL";
        let row: Option<UserRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(token_hash).fetch_optional(pool).await?);
        Ok(row.map(user))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::each_engine;
    use crate::store::StoreError;

    #[tokio::test]
    async fn users_sessions_and_tokens_on_each_engine() {
        for store in each_engine().await {
            let engine = store.engine();
            let ada = store.create_user("Ada", "hash-a").await.unwrap();
            assert!(ada.is_admin, "{engine:?}: the first user is the admin");
            let bo = store.create_user("bo", "hash-b").await.unwrap();
            assert!(!bo.is_admin);
            assert!(matches!(store.create_user("ADA", "x").await, Err(StoreError::NameTaken(_))), "{engine:?}");
            let (found, hash) = store.user_with_hash("aDa").await.unwrap().unwrap();
            assert_eq!((found, hash.as_str()), (ada.clone(), "hash-a"), "{engine:?}: names are found in any case");

            store.create_session("s1", bo.id, crate::store::now_ms() + 60_000).await.unwrap();
            store.create_session("s2", bo.id, crate::store::now_ms() - 1).await.unwrap();
            assert_eq!(store.session_user("s1").await.unwrap(), Some(bo.clone()));
            assert_eq!(store.session_user("s2").await.unwrap(), None, "{engine:?}: an expired session");
            store.delete_session("s1").await.unwrap();
            assert_eq!(store.session_user("s1").await.unwrap(), None);

            let token = store.create_token(bo.id, "sensor box", "t1").await.unwrap();
            assert_eq!(store.token_user("t1").await.unwrap(), Some(bo.clone()));
            assert!(!store.revoke_token(ada.id, token.id).await.unwrap(), "{engine:?}: not Ada's token");
            assert!(store.revoke_token(bo.id, token.id).await.unwrap());
            assert_eq!(store.token_user("t1").await.unwrap(), None);
            assert!(store.tokens(bo.id).await.unwrap()[0].revoked);

            let key = store.server_key("cookies", "fresh-1").await.unwrap();
            assert_eq!(
                (key.as_str(), store.server_key("cookies", "fresh-2").await.unwrap().as_str()),
                ("fresh-1", "fresh-1")
            );
        }
    }
}
