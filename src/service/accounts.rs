//! Accounts, users, API tokens and the first administrator.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::crypto::random_token;
use crate::domain::account::{Account, Role, User};
use crate::store::{Session, Store};

/// Tokens carry a prefix so a leaked one is easy to recognise in logs and
/// by secret scanners.
pub const TOKEN_PREFIX: &str = "cdk_";

pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("argon2id hashing with default parameters cannot fail")
        .to_string()
}

/// The user whose email and password these are. Unknown addresses cost the
/// same time as wrong passwords, so timing does not reveal who has an account.
pub async fn verify_password(
    store: &dyn Store,
    email: &str,
    password: &str,
) -> ServiceResult<Option<User>> {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("not a password"));
    let found = store.find_user_by_email(email.trim()).await?;
    let (user, hash) = match &found {
        Some((u, Some(h))) => (Some(u.clone()), h.clone()),
        _ => (None, DUMMY.clone()),
    };
    let password = password.to_string();
    // Argon2 takes tens of milliseconds: keep it off the async threads.
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(user.filter(|_| ok))
}

pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_token(32))
}

/// How long a credential found valid (a bearer token, a console session) is
/// taken at its word without asking the database again.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(1);
const MAX_CACHED: usize = 4096;

/// How a credential is known to the database and to the caches: its SHA-256.
/// Tokens and session tokens are 256-bit random values, so a slow hash adds
/// nothing.
fn credential_hash(secret: &str) -> [u8; 32] {
    crate::crypto::sha256(secret.as_bytes())
}

/// Credentials recently found valid, by their SHA-256 (never the secret),
/// each with what it stands for, for a short time: bearer tokens with their
/// user ([`TokenCache`]), console sessions with their user and CSRF token
/// ([`SessionCache`]). Looking the credential up was one of the three
/// queries of every listed page (with the page and its email column): on
/// PostgreSQL, sharing two cores with the desk, the API's first page went
/// from 1,426–1,538 to 2,083–2,123 requests/s with it (p50 9.5–10.1 → 6.7–6.8
/// ms; docs/PERFORMANCE.md). Only successes are kept, so a new credential
/// works at once and a wrong one is checked every time. What ends a
/// credential on this desk drops its entry (signing out does); other desks
/// on the same database honour the change within [`CREDENTIAL_TTL`]. The desk
/// has no way yet to revoke a token or remove a user; the one that comes
/// must drop the entry too.
pub struct CredentialCache<V> {
    ttl: Duration,
    valid: Mutex<Entries<V>>,
}

/// By SHA-256: what the credential stands for and when it was found valid;
/// None when it ended here a moment ago, not to be put back before the TTL
/// has passed by a request that read it just before it ended.
type Entries<V> = HashMap<[u8; 32], (Option<V>, Instant)>;

pub type TokenCache = CredentialCache<Actor>;
pub type SessionCache = CredentialCache<Session>;

impl<V: Clone> CredentialCache<V> {
    pub fn new(ttl: Duration) -> CredentialCache<V> {
        CredentialCache {
            ttl,
            valid: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        // A panic while holding it leaves entries that are each still sound.
        self.valid.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, hash: &[u8; 32]) -> Option<V> {
        let valid = self.lock();
        let (value, at) = valid.get(hash)?;
        (at.elapsed() < self.ttl).then(|| value.clone())?
    }

    fn put(&self, hash: [u8; 32], value: V) {
        let mut valid = self.lock();
        if let Some((None, at)) = valid.get(&hash) {
            if at.elapsed() < self.ttl {
                return;
            }
        }
        if valid.len() >= MAX_CACHED {
            let ttl = self.ttl;
            valid.retain(|_, (_, at)| at.elapsed() < ttl);
            if valid.len() >= MAX_CACHED {
                valid.clear();
            }
        }
        valid.insert(hash, (Some(value), Instant::now()));
    }

    /// Drops the entry, and keeps it from being put back for the TTL.
    fn forget(&self, hash: &[u8; 32]) {
        self.lock().insert(*hash, (None, Instant::now()));
    }
}

impl Desk {
    /// The user behind a bearer token.
    pub async fn authenticate_token(&self, token: &str) -> ServiceResult<Actor> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = credential_hash(token);
        if let Some(actor) = self.tokens.get(&hash) {
            return Ok(actor);
        }
        let actor = self
            .store
            .find_user_by_token_hash(&hash)
            .await?
            .map(Actor::from)
            .ok_or(ServiceError::Unauthenticated)?;
        self.tokens.put(hash, actor.clone());
        Ok(actor)
    }

    /// The console session behind a session cookie's token, if it is valid
    /// and not expired.
    pub async fn find_session(&self, token: &str) -> ServiceResult<Option<Session>> {
        let hash = credential_hash(token);
        if let Some(session) = self.sessions.get(&hash) {
            if session.expires_at > time::OffsetDateTime::now_utc() {
                return Ok(Some(session));
            }
        }
        let Some(session) = self.store.find_session(&hash).await? else {
            return Ok(None);
        };
        self.sessions.put(hash, session.clone());
        Ok(Some(session))
    }

    /// Signs a console session out: from this desk's memory, then from the
    /// database. Forgotten again once the delete is done, so a request that
    /// read the session just before cannot put it back for long.
    pub async fn end_session(&self, token: &str) -> ServiceResult<()> {
        let hash = credential_hash(token);
        self.sessions.forget(&hash);
        let deleted = self.store.delete_session(&hash).await;
        self.sessions.forget(&hash);
        Ok(deleted?)
    }
}

pub struct FirstAdmin {
    pub email: EmailAddress,
    pub password: String,
    pub token: String,
}

/// Creates the first account and administrator when the desk has no user.
pub async fn bootstrap(
    store: &dyn Store,
    admin_email: &EmailAddress,
) -> ServiceResult<Option<FirstAdmin>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let account = match store.find_account("Default").await? {
        Some(a) => a,
        None => store.create_account("Default").await?,
    };
    let password = random_token(18);
    let user = store
        .create_user(
            &account.id,
            admin_email,
            Role::Admin,
            Some(&hash_password(&password)),
        )
        .await?;
    let token = new_api_token();
    store
        .create_token(&user.id, &credential_hash(&token))
        .await?;
    Ok(Some(FirstAdmin {
        email: admin_email.clone(),
        password,
        token,
    }))
}

pub async fn create_account(store: &dyn Store, name: &str) -> ServiceResult<Account> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) || name.chars().count() > 100 {
        return Err(ServiceError::invalid(
            "name",
            "invalid_name",
            "an account name is 1 to 100 characters without line breaks",
        ));
    }
    Ok(store.create_account(name).await?)
}

pub async fn create_user(
    store: &dyn Store,
    account: &str,
    email: &str,
    role: &str,
    password: Option<&str>,
) -> ServiceResult<User> {
    let account = store
        .find_account(account)
        .await?
        .ok_or(ServiceError::NotFound("account"))?;
    let email = EmailAddress::parse(email)
        .map_err(|e| ServiceError::invalid("email", "invalid_email", e.to_string()))?;
    let role = Role::parse(role).ok_or_else(|| {
        ServiceError::invalid(
            "role",
            "unknown_role",
            "the role is one of admin, member, viewer",
        )
    })?;
    let hash = password.map(hash_password);
    Ok(store
        .create_user(&account.id, &email, role, hash.as_deref())
        .await?)
}

/// A new API token for the user; only its hash is kept.
pub async fn create_token(store: &dyn Store, email: &str) -> ServiceResult<String> {
    let (user, _) = store
        .find_user_by_email(email.trim())
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    let token = new_api_token();
    store
        .create_token(&user.id, &credential_hash(&token))
        .await?;
    Ok(token)
}

pub async fn set_password(store: &dyn Store, email: &str, password: &str) -> ServiceResult<()> {
    if password.chars().count() < 12 {
        return Err(ServiceError::invalid(
            "password",
            "too_short",
            "a password has at least 12 characters",
        ));
    }
    let (user, _) = store
        .find_user_by_email(email.trim())
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    store
        .set_password_hash(&user.id, &hash_password(password))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(user: &str) -> Actor {
        Actor {
            user_id: user.into(),
            account_id: "a".into(),
            email: EmailAddress::parse("u@example.com").unwrap(),
            role: Role::Admin,
        }
    }

    #[test]
    fn a_token_found_valid_is_taken_at_its_word_only_until_its_time_is_up() {
        let cache = TokenCache::new(Duration::from_millis(50));
        let (known, other) = ([1u8; 32], [2u8; 32]);
        cache.put(known, actor("u1"));
        assert_eq!(cache.get(&known).unwrap().user_id, "u1");
        assert!(cache.get(&other).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&known).is_none(), "asked again after the TTL");
    }

    #[test]
    fn the_token_cache_stays_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60));
        for i in 0..(MAX_CACHED + 10) {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.put(hash, actor("u"));
        }
        assert!(cache.lock().len() <= MAX_CACHED);
    }

    #[test]
    fn a_credential_ended_here_is_not_put_back_until_its_time_is_up() {
        let cache = TokenCache::new(Duration::from_millis(50));
        let hash = [9u8; 32];
        cache.put(hash, actor("u"));
        cache.forget(&hash);
        assert!(cache.get(&hash).is_none(), "gone at once");
        // A request that read it just before it ended comes back with it.
        cache.put(hash, actor("u"));
        assert!(cache.get(&hash).is_none(), "not put back");
        std::thread::sleep(Duration::from_millis(60));
        cache.put(hash, actor("u"));
        assert!(cache.get(&hash).is_some(), "a fresh look-up counts again");
    }
}
