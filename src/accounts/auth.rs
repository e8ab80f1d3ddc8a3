//! Who is asking: accounts, passwords, sessions, API tokens, and the throttle on
//! failed sign-ins.
//!
//! Passwords are hashed with argon2id on the blocking pool, never on the async
//! runtime. Sessions and API tokens are 256-bit random secrets; only their SHA-256
//! is stored. A request is identified by its session cookie, an API token
//! (`Authorization: Bearer` or `?token=`), or, in guest mode, as a guest.
//!
//! A guest is a browser, not a name: the first visit gets a cookie with a random id, signed
//! with the installation's key ([`GUEST_COOKIE`]), and every tab of that browser is the same
//! guest. A client that brings no cookie (the tutorial's, a script) is a guest of its own for
//! as long as its connection lasts. The name a guest picks is only a label; the label shown
//! carries a short tag of the id, so that two guests called `alice` are told apart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::store::User;
use crate::realtime::protocol::clean_display_name;
use crate::store::{Store, StoreError};

pub const SESSION_COOKIE: &str = "switchboard_session";
/// A guest's identity in guest mode: `<id>.<signature>`.
pub const GUEST_COOKIE: &str = "switchboard_guest";
/// A guest's cookie lasts a year.
pub const GUEST_DAYS: i64 = 365;
/// Sessions last thirty days.
pub const SESSION_DAYS: i64 = 30;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("usernames are 3 to 32 characters: letters, digits, '.', '_' and '-'")]
    BadUsername,
    #[error("passwords are at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("passwords are at most {MAX_PASSWORD_CHARS} characters")]
    PasswordTooLong,
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    #[error("wrong username or password")]
    WrongPassword,
    #[error("too many failed sign-ins; try again in {0} seconds")]
    Throttled(u64),
    #[error(transparent)]
    Store(StoreError),
    #[error("password hashing failed")]
    Hashing,
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NameTaken(name) => AuthError::NameTaken(name),
            other => AuthError::Store(other),
        }
    }
}

/// Who is on the other end of a request or a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    User(User),
    /// A visitor without an account, in guest mode only: one browser (by its cookie), or
    /// one connection of a client that brings none.
    Guest {
        /// Random, 32 hex digits; never shown to anyone (it is what the cookie proves).
        id: String,
        /// The label the guest picked.
        name: String,
    },
}

impl Identity {
    /// A guest with a random id of its own: a client without a guest cookie.
    pub fn new_guest(name: String) -> Identity {
        Identity::Guest { id: new_guest_id(), name }
    }

    /// The name shown to others. A guest's carries a tag of their id: `alice (guest 3f2a)`.
    pub fn display_name(&self) -> String {
        match self {
            Identity::User(user) => user.username.clone(),
            Identity::Guest { id, name } => format!("{name} (guest {})", guest_tag(id)),
        }
    }

    /// A key that is the same for every connection of one person, and differs between people.
    pub fn key(&self) -> String {
        match self {
            Identity::User(user) => format!("u:{}", user.id),
            Identity::Guest { id, .. } => format!("g:{id}"),
        }
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Identity::User(user) => Some(user),
            Identity::Guest { .. } => None,
        }
    }
}

pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new random secret, as 64 hex digits.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

/// Lower-case hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new guest id: 128 random bits, as 32 hex digits.
pub fn new_guest_id() -> String {
    hex(&rand::random::<[u8; 16]>())
}

/// Four hex digits that tell a guest apart from others of the same name. Derived by a hash,
/// so that the label shown to everyone does not give the id (and with it the cookie) away.
pub fn guest_tag(id: &str) -> String {
    hex(&Sha256::digest(format!("guest-tag:{id}").as_bytes())[..2])
}

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

async fn hash_password(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|_| AuthError::Hashing)?
    .map_err(|_| AuthError::Hashing)
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Failed sign-ins per account and per address. After a few failures each further
/// attempt must wait, twice as long each time, up to a quarter of an hour.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
}

const FREE_FAILURES: u32 = 5;
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

impl Throttle {
    fn wait_for(failures: &Failures) -> Duration {
        if failures.count < FREE_FAILURES {
            return Duration::ZERO;
        }
        let doublings = (failures.count - FREE_FAILURES).min(10);
        let wait = (Duration::from_secs(2) * 2u32.pow(doublings)).min(MAX_WAIT);
        wait.saturating_sub(failures.last.elapsed())
    }

    /// How long the caller must still wait before trying any of `keys`.
    pub fn check(&self, keys: &[String]) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, f| f.last.elapsed() < FORGET_AFTER);
        keys.iter().filter_map(|k| map.get(k)).map(Self::wait_for).max().unwrap_or(Duration::ZERO)
    }

    pub fn fail(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            let entry = map.entry(key.clone()).or_insert(Failures { count: 0, last: Instant::now() });
            entry.count += 1;
            entry.last = Instant::now();
        }
    }

    pub fn succeed(&self, account_key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(account_key);
    }
}

/// Signs and checks guests' cookies with the installation's key.
#[derive(Clone)]
pub struct GuestKey(Hmac<Sha256>);

/// Hex digits of the signature a guest cookie carries (128 bits).
const GUEST_MAC_HEX: usize = 32;

impl GuestKey {
    pub fn new(secret: &[u8]) -> GuestKey {
        GuestKey(<Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key")))
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac
    }

    /// The cookie's value for `id`.
    pub fn sign(&self, id: &str) -> String {
        let tag = self.mac(id).finalize().into_bytes();
        format!("{id}.{}", hex(&tag[..GUEST_MAC_HEX / 2]))
    }

    /// The guest id in a cookie's value, if its signature is ours.
    pub fn verify(&self, value: &str) -> Option<String> {
        let (id, signature) = value.split_once('.')?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) || signature.len() != GUEST_MAC_HEX {
            return None;
        }
        let bytes = (0..signature.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(signature.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        self.mac(id).verify_truncated_left(&bytes).ok().map(|()| id.to_owned())
    }
}

/// Accounts and sessions.
pub struct Auth {
    store: Store,
    throttle: Throttle,
    guest_key: GuestKey,
    /// A real hash of a random password, checked when a name is unknown so that the
    /// answer takes as long as for a known name.
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Auth {
    /// Accounts in `store`, guests signed with the installation's key (made on first start).
    pub async fn open(store: Store) -> Result<Auth, StoreError> {
        let secret = store.server_key("guest_cookie", &new_secret()).await?;
        let guest_key = GuestKey::new(secret.as_bytes());
        Ok(Auth { store, throttle: Throttle::default(), guest_key, dummy_hash: tokio::sync::OnceCell::new() })
    }

    pub fn guest_key(&self) -> &GuestKey {
        &self.guest_key
    }

    /// The guest id of the first guest cookie of ours the request carries.
    pub fn guest_id(&self, headers: &HeaderMap) -> Option<String> {
        cookies(headers, GUEST_COOKIE).find_map(|value| self.guest_key.verify(value))
    }

    async fn dummy_hash(&self) -> String {
        self.dummy_hash.get_or_init(|| async { hash_password(new_secret()).await.unwrap_or_default() }).await.clone()
    }

    pub async fn sign_up(&self, username: &str, password: &str) -> Result<User, AuthError> {
        let username = username.trim();
        if !valid_username(username) {
            return Err(AuthError::BadUsername);
        }
        check_password(password)?;
        let hash = hash_password(password.to_owned()).await?;
        Ok(self.store.create_user(username, &hash).await?)
    }

    /// Check a password, slowing down repeated failures for the account and the address.
    pub async fn sign_in(&self, username: &str, password: &str, from: Option<IpAddr>) -> Result<User, AuthError> {
        let username = username.trim();
        let account_key = format!("user:{}", username.to_lowercase());
        let mut keys = vec![account_key.clone()];
        if let Some(ip) = from {
            keys.push(format!("ip:{ip}"));
        }
        let wait = self.throttle.check(&keys);
        if !wait.is_zero() {
            return Err(AuthError::Throttled(wait.as_secs().max(1)));
        }
        let found = self.store.user_with_hash(username).await?;
        // Verify against a real hash even for unknown names, so timing does not tell which names exist.
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, self.dummy_hash().await),
        };
        if verify_password(password.to_owned(), hash).await {
            if let Some(user) = user {
                self.throttle.succeed(&account_key);
                return Ok(user);
            }
        }
        self.throttle.fail(&keys);
        Err(AuthError::WrongPassword)
    }

    /// Start a session; returns the secret for the cookie.
    pub async fn start_session(&self, user: &User) -> Result<String, AuthError> {
        let secret = new_secret();
        let expires = crate::store::now_ms() + SESSION_DAYS * 86_400_000;
        self.store.create_session(&hash_secret(&secret), user.id, expires).await?;
        Ok(secret)
    }

    pub async fn end_session(&self, secret: &str) -> Result<(), AuthError> {
        Ok(self.store.delete_session(&hash_secret(secret)).await?)
    }

    pub async fn session_user(&self, secret: &str) -> Option<User> {
        self.store.session_user(&hash_secret(secret)).await.ok().flatten()
    }

    pub async fn token_user(&self, token: &str) -> Option<User> {
        self.store.token_user(&hash_secret(token)).await.ok().flatten()
    }

    /// Identify a request: session cookie, then bearer token, then `?token=`, then (in
    /// guest mode) a guest with the given name: the browser's, by its guest cookie, or
    /// one of its own.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        guest_name: Option<&str>,
        guest_access: bool,
    ) -> Option<Identity> {
        if let Some(secret) = session_cookie(headers) {
            if let Some(user) = self.session_user(&secret).await {
                return Some(Identity::User(user));
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer.or(query_token) {
            // A token that does not work is refused outright, even in guest mode.
            return self.token_user(token).await.map(Identity::User);
        }
        if guest_access {
            let name = guest_name.and_then(clean_display_name).unwrap_or_else(|| "anonymous".to_owned());
            return Some(match self.guest_id(headers) {
                Some(id) => Identity::Guest { id, name },
                None => Identity::new_guest(name),
            });
        }
        None
    }
}

fn check_password(password: &str) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(AuthError::PasswordTooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(AuthError::PasswordTooLong);
    }
    Ok(())
}

/// The session secret from the request's cookies.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie called `wanted`, if the request has one.
pub fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    cookies(headers, wanted).next().map(str::to_owned)
}

/// Every value of the cookies called `wanted`, in the order the request gives them.
pub fn cookies<'a>(headers: &'a HeaderMap, wanted: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(name, _)| *name == wanted)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that makes a browser a guest of its own.
pub fn guest_set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{GUEST_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", GUEST_DAYS * 86_400)
}

/// Whether the request came over https (directly or through a proxy that says so).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value for a session (or, with `None`, for ending it).
pub fn session_set_cookie(secret: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match secret {
        Some(secret) => format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_DAYS * 86_400
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_short_plain_words() {
        assert!(valid_username("ada_l.ovelace-1"));
        assert!(!valid_username("ab"));
        assert!(!valid_username("has space"));
        assert!(!valid_username(&"a".repeat(33)));
        assert!(!valid_username("émile"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; switchboard_session=abc; b=2".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        let cookie = session_set_cookie(Some("abc"), true);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.ends_with("Secure"));
        assert!(!session_set_cookie(Some("abc"), false).contains("Secure"));
    }

    #[test]
    fn guest_cookies_are_signed_and_guests_told_apart() {
        let key = GuestKey::new(b"secret one");
        let id = new_guest_id();
        let value = key.sign(&id);
        assert_eq!(key.verify(&value), Some(id.clone()));
        assert_eq!(GuestKey::new(b"secret two").verify(&value), None, "another installation's cookie");
        let other = new_guest_id();
        let forged = format!("{other}{}", &value[id.len()..]);
        assert_eq!(key.verify(&forged), None, "a signature covers its own id only");
        assert_eq!(key.verify("nonsense"), None);
        assert_eq!(key.verify(&format!("{id}.zz")), None);
        let one = Identity::Guest { id: id.clone(), name: "alice".into() };
        let two = Identity::Guest { id: other, name: "alice".into() };
        assert_ne!(one.key(), two.key());
        assert_ne!(one.display_name(), two.display_name());
        assert!(one.display_name().starts_with("alice (guest "));
        assert_eq!(one.display_name(), format!("alice (guest {})", guest_tag(&id)), "the same guest, the same label");
        assert_eq!(guest_tag(&id).len(), 4);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, format!("a=1; {GUEST_COOKIE}={value}").parse().unwrap());
        assert_eq!(cookie(&headers, GUEST_COOKIE), Some(value));
        assert!(guest_set_cookie("v", true).ends_with("; Secure"));
    }

    #[test]
    fn the_throttle_waits_longer_after_each_failure() {
        let throttle = Throttle::default();
        let keys = vec!["user:a".to_owned()];
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.check(&keys), Duration::ZERO);
            throttle.fail(&keys);
        }
        let first = throttle.check(&keys);
        assert!(first > Duration::ZERO);
        throttle.fail(&keys);
        assert!(throttle.check(&keys) > first);
        throttle.succeed("user:a");
        assert_eq!(throttle.check(&keys), Duration::ZERO);
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(verify_password("correct horse".into(), hash.clone()).await);
        assert!(!verify_password("wrong horse".into(), hash).await);
        assert!(!verify_password("anything".into(), "not a hash".into()).await);
    }
}
