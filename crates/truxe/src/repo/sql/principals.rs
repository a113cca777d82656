//! Sessions and their users as last read, for verified requests: each one
//! otherwise costs a database read (two thread hand-offs in sqlx's SQLite
//! driver), the bulk of a verified `GET /auth/me`.
//!
//! Kept only where this process is the database's only writer (SQLite; a
//! PostgreSQL may have other Truxe instances writing it, whose changes this
//! process would not hear of). Every write of a user or a session in
//! `SqlStore` calls [`Principals::forget_user`], [`Principals::forget_session`]
//! or [`Principals::forget_all`] once it has committed. A cached entry
//! carries the generations of its user and session as they were *before*
//! its read; it is served only while they are unchanged. So a read that
//! raced a write (and may have seen the row before that write committed) is
//! never served after the write's `forget`: revocation takes effect before
//! the revoking request answers.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::model::{Session, User};

/// Generation counters, by hash of a user id or session id. A collision
/// only forgets more than needed.
const STRIPES: usize = 4096;
/// Entries kept; beyond it the cache starts over.
const CAPACITY: usize = 100_000;

struct Entry {
    session: Session,
    user: User,
    seen: Seen,
}

/// The generations an entry was read under.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    all: u64,
    user: u64,
    session: u64,
}

pub(super) struct Principals {
    hasher: std::collections::hash_map::RandomState,
    all: AtomicU64,
    stripes: Box<[AtomicU64]>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Principals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("Principals").field("entries", &n).finish()
    }
}

impl Principals {
    pub(super) fn new() -> Self {
        Principals {
            hasher: Default::default(),
            all: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn stripe(&self, kind: u8, id: &str) -> &AtomicU64 {
        &self.stripes[(self.hasher.hash_one((kind, id)) as usize) % STRIPES]
    }

    /// The generations a read of session `session_id` of user `user_id`
    /// depends on: taken before the read.
    pub(super) fn seen(&self, user_id: &str, session_id: &str) -> Seen {
        // Acquire: pairs with the Release of a forget, so a read begun
        // after a forget sees its bump.
        Seen {
            all: self.all.load(Ordering::Acquire),
            user: self.stripe(b'u', user_id).load(Ordering::Acquire),
            session: self.stripe(b's', session_id).load(Ordering::Acquire),
        }
    }

    /// The cached session `session_id` of user `user_id`, if still current.
    pub(super) fn get(&self, user_id: &str, session_id: &str) -> Option<(Session, User)> {
        let entries = self.entries.lock().ok()?;
        let e = entries.get(session_id)?;
        let current = e.user.id == user_id && self.seen(user_id, session_id) == e.seen;
        current.then(|| (e.session.clone(), e.user.clone()))
    }

    /// Keeps what a read tagged `before` returned, unless something it
    /// depends on has changed since (then the next request reads again).
    pub(super) fn put(&self, before: Seen, session: &Session, user: &User) {
        if self.seen(&user.id, &session.id) != before {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(
                session.id.clone(),
                Entry {
                    session: session.clone(),
                    user: user.clone(),
                    seen: before,
                },
            );
        }
    }

    /// A user (or every session of theirs) changed.
    pub(super) fn forget_user(&self, user_id: &str) {
        self.stripe(b'u', user_id).fetch_add(1, Ordering::Release);
    }

    /// One session changed.
    pub(super) fn forget_session(&self, session_id: &str) {
        self.stripe(b's', session_id)
            .fetch_add(1, Ordering::Release);
    }

    /// Many users or sessions changed at once.
    pub(super) fn forget_all(&self) {
        self.all.fetch_add(1, Ordering::Release);
    }
}
