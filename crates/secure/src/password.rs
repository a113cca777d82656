//! Password hashing with Argon2id on threads of its own.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so the
//! parameters travel with each hash and can be raised later: [`Verified`]
//! says when a hash was made with weaker parameters than the current ones.
//! Unknown users are verified against a dummy hash so that "no such user"
//! and "wrong password" take the same time.
//!
//! Each running hash works in a buffer taken from a pool of at most as
//! many buffers as hashes may run at once, instead of a fresh zeroed
//! allocation: zeroing 19 MiB was a tenth of every hash's time, and Argon2
//! overwrites every block before reading it, so the old contents do not
//! matter (they are what freed memory held before, too).
//!
//! Hashes run on a fixed set of threads fed by one queue: a thread done
//! with a hash takes the next one at once. With a permit per hash and
//! tokio's blocking pool, each hash was handed on through the waiting
//! task, the semaphore and a sleeping thread, leaving its core idle
//! meanwhile (about 4 % of two cores at a login's pace).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;

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

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Crypto(e.to_string())
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

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords. Cheap to clone; its threads end when
/// the last clone is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    queue: mpsc::Sender<Job>,
    /// Argon2 memory of finished hashes, for the next ones.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
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
    /// (each holds `memory_kib` of memory while it runs), each on a thread
    /// of its own.
    pub fn new(cost: PasswordCost, max_parallel: usize) -> Result<Self, Error> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| Error::Config(format!("invalid Argon2id parameters: {e}")))?;
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..max_parallel.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name("argon2".into())
                .spawn(move || hash_jobs(&jobs))
                .map_err(|e| Error::Config(format!("no thread for password hashing: {e}")))?;
        }
        let mut hasher = PasswordHasher {
            params,
            queue,
            memory: Arc::default(),
            dummy: Arc::default(),
        };
        let salt = SaltString::generate(&mut OsRng);
        hasher.dummy = Arc::new(hasher.hash_with_salt(b"dummy password for unknown users", &salt)?);
        Ok(hasher)
    }

    /// Argon2 of `password` and raw `salt` into `out` with `argon`, in a
    /// buffer from the pool (one of the configured size goes back to it).
    fn compute(
        &self,
        argon: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), Error> {
        let wanted = params.block_count();
        let pooled = self.memory.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut blocks = pooled.unwrap_or_default();
        if blocks.len() < wanted {
            blocks.resize(wanted, Block::default());
        }
        let done = argon
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..wanted])
            .map_err(crypto);
        // A bigger buffer (an imported hash of a higher cost) is not kept.
        if blocks.len() == self.params.block_count() {
            self.memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(blocks);
        }
        done
    }

    /// The PHC string of `password` with `salt` at the current cost.
    fn hash_with_salt(&self, password: &[u8], salt: &SaltString) -> Result<String, Error> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut raw_salt = [0u8; 64];
        let raw_salt = salt.as_salt().decode_b64(&mut raw_salt).map_err(crypto)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.compute(&argon, &self.params, password, raw_salt, &mut out)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(crypto)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(crypto)?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches `phc`, with the algorithm, version and
    /// parameters the hash names (imported hashes may differ from ours).
    fn matches(&self, password: &[u8], phc: &PasswordHash<'_>) -> Result<bool, Error> {
        let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
            return Ok(false);
        };
        let algorithm = Algorithm::try_from(phc.algorithm).map_err(crypto)?;
        let version = phc
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(crypto)?
            .unwrap_or_default();
        let params = Params::try_from(phc).map_err(crypto)?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut raw_salt = [0u8; 64];
        let raw_salt = salt.decode_b64(&mut raw_salt).map_err(crypto)?;
        let mut out = vec![0u8; expected.len()];
        self.compute(&argon, &params, password, raw_salt, &mut out)?;
        Ok(crate::ct_eq(&out, expected.as_bytes()))
    }

    /// Runs `f` on a hashing thread, after the hashes queued before it.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller gone while its hash waited (a dropped request) costs
            // no hash.
            if !done.is_closed() {
                let _ = done.send(f());
            }
        });
        self.queue
            .send(job)
            .map_err(|_| Error::Crypto("hashing threads ended".into()))?;
        result
            .await
            .map_err(|_| Error::Crypto("hash abandoned".into()))
    }

    /// Hashes a password into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: Secret<String>) -> Result<String, Error> {
        let me = self.clone();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            me.hash_with_salt(password.expose().as_bytes(), &salt)
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
        let me = self.clone();
        let current = self.params.clone();
        self.run(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| Error::Crypto(format!("stored hash unreadable: {e}")))?;
            let ok = me.matches(password.expose().as_bytes(), &parsed)? && known;
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

/// A hashing thread: runs jobs until every sender is gone. A job that
/// panics drops its reply (its caller gets an error), not the thread.
fn hash_jobs(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
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

    /// The pooled path gives the library's own PHC string, and verifies
    /// hashes the library made with other algorithms, versions and costs.
    #[test]
    fn same_hashes_as_the_library() -> Result<(), Error> {
        use argon2::password_hash::PasswordHasher as _;
        let h = PasswordHasher::new(cheap(), 1)?;
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(256, 1, 1, None).unwrap();
        let library = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(h.hash_with_salt(b"pw", &salt)?, library);
        for (alg, version, m, t, out) in [
            (Algorithm::Argon2i, Version::V0x13, 512, 2, 32),
            (Algorithm::Argon2d, Version::V0x10, 128, 3, 16),
            (Algorithm::Argon2id, Version::V0x13, 1024, 1, 64),
        ] {
            let params = Params::new(m, t, 1, Some(out)).unwrap();
            let phc = Argon2::new(alg, version, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            let parsed = PasswordHash::new(&phc).unwrap();
            assert!(h.matches(b"pw", &parsed)?, "{phc}");
            assert!(!h.matches(b"pW", &parsed)?, "{phc}");
        }
        // Only buffers of the configured size stay in the pool.
        assert!(h
            .memory
            .lock()
            .unwrap()
            .iter()
            .all(|b| b.len() == h.params.block_count()));
        Ok(())
    }

    /// Polls `cond` until it holds, for at most ten seconds.
    async fn until(cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "condition not reached"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A hash whose caller left while it waited in the queue is never
    /// computed; the next one is.
    #[tokio::test]
    async fn a_caller_gone_from_the_queue_costs_no_hash() -> Result<(), Error> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let h = PasswordHasher::new(cheap(), 1)?;
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = Arc::new(AtomicUsize::new(0));
        let first = {
            let (h, busy) = (h.clone(), busy.clone());
            tokio::spawn(async move {
                h.run(move || {
                    busy.fetch_add(1, Ordering::SeqCst);
                    wait.recv().is_ok()
                })
                .await
            })
        };
        until(|| busy.load(Ordering::SeqCst) == 1).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let gone = {
            let ran = ran.clone();
            h.run(move || ran.fetch_add(1, Ordering::SeqCst))
        };
        // Queued behind the first, then dropped.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), gone)
                .await
                .is_err()
        );
        release.send(()).unwrap();
        assert!(first.await.unwrap()?);
        let after = h.run(|| 7).await?;
        assert_eq!((after, ran.load(Ordering::SeqCst)), (7, 0));
        Ok(())
    }

    /// A job that panics fails its own caller only: the thread goes on
    /// with the next hash.
    #[tokio::test]
    async fn a_panicking_job_leaves_its_thread_working() -> Result<(), Error> {
        let h = PasswordHasher::new(cheap(), 1)?;
        let failed = h.run(|| -> u8 { panic!("job failed") }).await;
        assert!(failed.is_err());
        let phc = h.hash(Secret::new("still here".into())).await?;
        assert!(
            h.verify(Secret::new("still here".into()), Some(phc))
                .await?
                .ok
        );
        Ok(())
    }

    #[test]
    fn owasp_minimum() {
        assert!(PasswordCost::default().meets_owasp_minimum());
        assert!(!cheap().meets_owasp_minimum());
    }
}
