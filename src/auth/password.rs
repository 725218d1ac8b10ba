//! Checking a user's password against `[[users]]`: argon2 PHC strings
//! (RFC 9106) verified off the async runtime, with a small cache of recent
//! successes, or `plain:` secrets compared in constant time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::ttl_cache::TtlCache;
use crate::config::PassKind;

/// Recent successful argon2 verifications kept (user, salted SHA-256 of the
/// password), so a player sending Basic auth with every HLS request does
/// not cost an argon2 run each time.
pub const VERIFIED_CACHE_ENTRIES: usize = 256;
/// How long a successful verification is reused.
pub const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(60);
/// argon2 runs at once (each takes tens of ms of CPU and its memory cost).
const CONCURRENT_VERIFICATIONS: usize = 2;
/// Requests that may wait for an argon2 slot; more are refused as unavailable.
const MAX_WAITING: usize = 64;

/// A stored password, as the config wrote it.
#[derive(Clone)]
pub(crate) enum StoredPass {
    /// An argon2 PHC string.
    Argon2(String),
    /// The salted SHA-256 of a `plain:` secret.
    Plain([u8; 32]),
}

/// Verifies passwords; shared by every request of one `Authenticator`.
pub(crate) struct PasswordChecker {
    /// Random per checker: cache keys and plain digests mean nothing outside
    /// this process.
    salt: [u8; 16],
    cache: Mutex<TtlCache<(String, [u8; 32]), ()>>,
    slots: Semaphore,
    waiting: AtomicUsize,
    /// argon2 verifications run (tests watch the cache with it).
    argon2_runs: AtomicU64,
}

impl PasswordChecker {
    pub(crate) fn new() -> PasswordChecker {
        PasswordChecker {
            salt: rand::random(),
            cache: Mutex::new(TtlCache::new(VERIFIED_CACHE_ENTRIES, VERIFIED_CACHE_TTL)),
            slots: Semaphore::new(CONCURRENT_VERIFICATIONS),
            waiting: AtomicUsize::new(0),
            argon2_runs: AtomicU64::new(0),
        }
    }

    /// The stored form of a config `pass` (already validated at load).
    pub(crate) fn store(&self, pass: &str) -> Result<StoredPass, String> {
        Ok(match PassKind::parse(pass)? {
            PassKind::Argon2(phc) => StoredPass::Argon2(phc.to_string()),
            PassKind::Plain(secret) => StoredPass::Plain(self.digest("", secret)),
        })
    }

    fn digest(&self, user: &str, pass: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(pass.as_bytes());
        h.finalize().into()
    }

    /// Whether `pass` is `user`'s password. `Err` when the check could not
    /// run (too many waiting, the blocking pool failed).
    pub(crate) async fn verify(
        &self,
        user: &str,
        stored: &StoredPass,
        pass: &str,
    ) -> Result<bool, String> {
        match stored {
            StoredPass::Plain(expected) => Ok(bool::from(self.digest("", pass).ct_eq(expected))),
            StoredPass::Argon2(phc) => {
                let key = (user.to_string(), self.digest(user, pass));
                if self.cached(&key) {
                    return Ok(true);
                }
                let ok = self.run_argon2(phc, pass).await?;
                if ok && let Ok(mut cache) = self.cache.lock() {
                    cache.insert(key, (), Instant::now());
                }
                Ok(ok)
            }
        }
    }

    /// Spends the time of a verification against `stored` without accepting
    /// anything: an unknown user takes as long as a wrong password.
    pub(crate) async fn waste(&self, stored: Option<&StoredPass>) {
        if let Some(StoredPass::Argon2(phc)) = stored {
            let _ = self.run_argon2(phc, "\u{0}not a password").await;
        }
    }

    fn cached(&self, key: &(String, [u8; 32])) -> bool {
        self.cache
            .lock()
            .map(|mut c| c.get(key, Instant::now()).is_some())
            .unwrap_or(false)
    }

    async fn run_argon2(&self, phc: &str, pass: &str) -> Result<bool, String> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err("too many password checks in progress".into());
        }
        let waiting = Waiting(&self.waiting);
        let _permit = self
            .slots
            .acquire()
            .await
            .map_err(|_| "password checks are shut down".to_string())?;
        drop(waiting);
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        let (phc, pass) = (phc.to_string(), pass.to_string());
        tokio::task::spawn_blocking(move || match PasswordHash::new(&phc) {
            Ok(hash) => Argon2::default()
                .verify_password(pass.as_bytes(), &hash)
                .is_ok(),
            Err(_) => false,
        })
        .await
        .map_err(|e| format!("password check failed: {e}"))
    }

    #[cfg(test)]
    pub(crate) fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    /// An argon2id PHC string of `pass` with cheap parameters (debug builds
    /// run argon2 slowly; verification uses the parameters in the string).
    pub(crate) fn cheap_argon2(pass: &str) -> String {
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        a.hash_password(pass.as_bytes(), &salt).unwrap().to_string()
    }

    #[tokio::test]
    async fn argon2_verifies_and_caches_successes() {
        let phc = cheap_argon2("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        let c = PasswordChecker::new();
        let stored = c.store(&phc).unwrap();
        assert!(!c.verify("obs", &stored, "wrong").await.unwrap());
        assert!(!c.verify("obs", &stored, "wrong").await.unwrap());
        assert_eq!(c.argon2_runs(), 2, "failures are not cached");
        assert!(c.verify("obs", &stored, "correct horse").await.unwrap());
        assert_eq!(c.argon2_runs(), 3);
        for _ in 0..5 {
            assert!(c.verify("obs", &stored, "correct horse").await.unwrap());
        }
        assert_eq!(c.argon2_runs(), 3, "served from the cache");
        assert!(!c.verify("obs", &stored, "correct horse!").await.unwrap());
        assert!(c.verify("other", &stored, "correct horse").await.unwrap());
        assert_eq!(c.argon2_runs(), 5, "the cache is per user and password");
    }

    #[tokio::test]
    async fn plain_compares_exactly() {
        let c = PasswordChecker::new();
        let stored = c.store("plain:s3cret").unwrap();
        assert!(c.verify("u", &stored, "s3cret").await.unwrap());
        for wrong in ["s3cre", "s3cret ", "S3cret", ""] {
            assert!(!c.verify("u", &stored, wrong).await.unwrap(), "{wrong:?}");
        }
        assert_eq!(c.argon2_runs(), 0);
        assert!(c.store("s3cret").is_err(), "bare plaintext is refused");
    }
}
