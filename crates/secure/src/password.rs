//! Password hashing with Argon2id on a bounded blocking pool.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so the
//! parameters travel with each hash and can be raised later: [`Verified`]
//! says when a hash was made with weaker parameters than the current ones.
//! Unknown users are verified against a dummy hash so that "no such user"
//! and "wrong password" take the same time.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

use crate::{Error, Secret};

/// Argon2id cost. The default is OWASP's recommended minimum
/// (19 MiB, 2 iterations, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl PasswordCost {
    /// OWASP's minimum for Argon2id: m = 19 MiB, t = 2, p = 1.
    pub const OWASP_MINIMUM: PasswordCost = PasswordCost {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Whether this cost is at least OWASP's minimum.
    pub fn meets_owasp_minimum(&self) -> bool {
        self.memory_kib >= Self::OWASP_MINIMUM.memory_kib
            && self.iterations >= Self::OWASP_MINIMUM.iterations
    }
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self::OWASP_MINIMUM
    }
}

/// Outcome of [`PasswordHasher::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matched.
    pub ok: bool,
    /// It matched, but the hash uses other parameters than the current ones:
    /// store a fresh hash.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    pool: Arc<Semaphore>,
    dummy: Arc<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish()
    }
}

impl PasswordHasher {
    /// A hasher with `cost`, running at most `max_parallel` hashes at once
    /// (each holds `memory_kib` of memory while it runs).
    pub fn new(cost: PasswordCost, max_parallel: usize) -> Result<Self, Error> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| Error::Config(format!("invalid Argon2id parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon
            .hash_password(b"dummy password for unknown users", &salt)
            .map_err(|e| Error::Crypto(e.to_string()))?
            .to_string();
        Ok(PasswordHasher {
            params,
            pool: Arc::new(Semaphore::new(max_parallel.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self
            .pool
            .acquire()
            .await
            .map_err(|_| Error::Crypto("hasher closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Crypto(e.to_string()))
    }

    /// Hashes a password into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: Secret<String>) -> Result<String, Error> {
        let argon = self.argon();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Crypto(e.to_string()))
        })
        .await?
    }

    /// Verifies `password` against `phc`; with `None` (unknown user) it
    /// verifies against a dummy hash and reports no match, taking as long.
    pub async fn verify(
        &self,
        password: Secret<String>,
        phc: Option<String>,
    ) -> Result<Verified, Error> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.as_ref().clone());
        let argon = self.argon();
        let current = self.params.clone();
        self.run(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| Error::Crypto(format!("stored hash unreadable: {e}")))?;
            let ok = argon
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
                && known;
            let needs_rehash = ok
                && (parsed.algorithm != argon2::ARGON2ID_IDENT
                    || Params::try_from(&parsed)
                        .map(|p| {
                            (p.m_cost(), p.t_cost(), p.p_cost())
                                != (current.m_cost(), current.t_cost(), current.p_cost())
                        })
                        .unwrap_or(true));
            Ok(Verified { ok, needs_rehash })
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordCost {
        PasswordCost {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hash_and_verify() -> Result<(), Error> {
        let h = PasswordHasher::new(cheap(), 2)?;
        let phc = h.hash(Secret::new("correct horse".into())).await?;
        assert!(phc.starts_with("$argon2id$"));
        let ok = h
            .verify(Secret::new("correct horse".into()), Some(phc.clone()))
            .await?;
        assert_eq!(
            ok,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let bad = h
            .verify(Secret::new("wrong".into()), Some(phc.clone()))
            .await?;
        assert!(!bad.ok);
        // Unknown user: never ok, even with the dummy's own password.
        let unknown = h
            .verify(Secret::new("dummy password for unknown users".into()), None)
            .await?;
        assert!(!unknown.ok);
        // Stronger parameters later: old hashes still verify and ask for a rehash.
        let stronger = PasswordHasher::new(
            PasswordCost {
                memory_kib: 512,
                ..cheap()
            },
            1,
        )?;
        let v = stronger
            .verify(Secret::new("correct horse".into()), Some(phc))
            .await?;
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        Ok(())
    }

    #[test]
    fn owasp_minimum() {
        assert!(PasswordCost::default().meets_owasp_minimum());
        assert!(!cheap().meets_owasp_minimum());
    }
}
