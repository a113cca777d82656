//! Histories of concurrent operations on a key-value store, and a checker
//! that decides whether a history is linearizable.
//!
//! # Brief overview
//!
//! Clients record every operation as an [`Entry`]: which process ran it,
//! what it was ([`Op`]: read, write, compare-and-set, delete on one key),
//! when it was invoked and when it completed (monotonic nanoseconds), and
//! how it ended ([`Outcome`]): `Ok` with what it returned, `Fail` when it
//! certainly did not take effect (a refusal), or `Unknown` (a timeout, a
//! dropped connection: it may have taken effect at any time after its
//! invocation, or never).
//!
//! [`check`] splits the history by key — linearizability is compositional
//! (Herlihy & Wing), so each key's register is checked alone — and searches
//! each key's sub-history for a linearization with the algorithm of Wing &
//! Gong, memoized as Lowe proposed (the approach of Porcupine and Knossos):
//! an operation may be linearized when its call is the earliest pending
//! event; a (set of linearized operations, register state) pair seen once
//! is never explored again. `Fail` operations and reads without an answer
//! are dropped; `Unknown` writes may be linearized anywhere after their
//! call or not at all.
//!
//! It also reports acknowledged writes that were *lost*: a write that
//! returned `Ok`, after whose completion nothing else touched the key,
//! yet whose value a later read did not see.
//!
//! Values written must be unique per key (the workload's job, e.g.
//! `"<process>-<counter>"`): a compare-and-set names the value it expects,
//! which then stands for that value's version.
//!
//! # Example
//! ```
//! use lincheck::{check, Entry, Op, Outcome};
//! let w = Entry::new(0, "k", Op::Write("a".into()), 0, 10, Outcome::Ok(None));
//! let r = Entry::new(1, "k", Op::Read, 20, 30, Outcome::Ok(Some("a".into())));
//! assert!(check(&[w.clone(), r]).linearizable());
//! let stale = Entry::new(1, "k", Op::Read, 20, 30, Outcome::Ok(None));
//! assert!(!check(&[w, stale]).linearizable());
//! ```
#![deny(missing_docs)]

mod wgl;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an operation did to its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Read the value (answer: the value, or `None` when absent).
    Read,
    /// Store a value.
    Write(String),
    /// Store `to` if the value is `from` (answer: whether it did).
    Cas {
        /// Expected value.
        from: String,
        /// New value.
        to: String,
    },
    /// Remove the key.
    Delete,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect; reads carry the value seen, CAS `Some("true")` or
    /// `Some("false")` (a precondition refusal is an answer), others `None`.
    Ok(Option<String>),
    /// It certainly did not take effect.
    Fail,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The client process (one operation at a time per process).
    pub process: u32,
    /// The key.
    pub key: String,
    /// The operation.
    pub op: Op,
    /// Invocation time, nanoseconds on one monotonic clock.
    pub invoke: u64,
    /// Completion time (for `Unknown`, when the client gave up).
    pub complete: u64,
    /// The outcome.
    pub outcome: Outcome,
}

impl Entry {
    /// An entry.
    pub fn new(
        process: u32,
        key: &str,
        op: Op,
        invoke: u64,
        complete: u64,
        outcome: Outcome,
    ) -> Entry {
        Entry {
            process,
            key: key.to_owned(),
            op,
            invoke,
            complete,
            outcome,
        }
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Operations considered (after dropping failed ones and unanswered reads).
    pub operations: usize,
    /// Whether a linearization exists.
    pub linearizable: bool,
    /// Whether the search gave up (too large); then `linearizable` is false.
    pub exhausted: bool,
    /// Acknowledged writes whose value vanished (see the crate docs).
    pub lost_writes: Vec<String>,
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One report per key, by key.
    pub keys: Vec<KeyReport>,
}

impl Report {
    /// Whether every key's history is linearizable and no write was lost.
    pub fn linearizable(&self) -> bool {
        self.keys
            .iter()
            .all(|k| k.linearizable && k.lost_writes.is_empty())
    }

    /// The keys that failed, for messages.
    pub fn failures(&self) -> Vec<&KeyReport> {
        self.keys
            .iter()
            .filter(|k| !k.linearizable || !k.lost_writes.is_empty())
            .collect()
    }
}

/// Largest number of search steps per key before giving up.
pub const MAX_STEPS: u64 = 20_000_000;

/// Checks a history: per key, linearizability of a register with the
/// operations of [`Op`], and lost acknowledged writes.
pub fn check(history: &[Entry]) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in history {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    let keys = by_key
        .into_iter()
        .map(|(key, entries)| {
            let ops: Vec<wgl::Operation> = entries
                .iter()
                .filter_map(|e| wgl::Operation::from_entry(e))
                .collect();
            let verdict = wgl::linearizable(&ops, MAX_STEPS);
            KeyReport {
                key: key.to_owned(),
                operations: ops.len(),
                linearizable: verdict == Some(true),
                exhausted: verdict.is_none(),
                lost_writes: lost_writes(&entries),
            }
        })
        .collect();
    Report { keys }
}

/// Acknowledged writes after whose completion no other change to the key
/// was invoked, whose value a read invoked after that completion missed.
/// Linear in the history: only a write invoked after every other change
/// completed (and with no change of unknown outcome about) can qualify.
fn lost_writes(entries: &[&Entry]) -> Vec<String> {
    // Could this entry have changed the key?
    let changes = |o: &Entry| match (&o.op, &o.outcome) {
        (Op::Read, _) | (_, Outcome::Fail) => false,
        (Op::Cas { .. }, Outcome::Ok(done)) => done.as_deref() == Some("true"),
        _ => true,
    };
    let changers: Vec<&Entry> = entries.iter().copied().filter(|o| changes(o)).collect();
    // An unknown change may follow any write.
    if changers.iter().any(|o| o.outcome == Outcome::Unknown) {
        return Vec::new();
    }
    // The two latest completions, so each write can be compared with the
    // latest change other than itself.
    let mut latest: [Option<&Entry>; 2] = [None, None];
    for o in &changers {
        if latest[0].is_none_or(|l| o.complete > l.complete) {
            latest = [Some(*o), latest[0]];
        } else if latest[1].is_none_or(|l| o.complete > l.complete) {
            latest[1] = Some(*o);
        }
    }
    let mut lost = Vec::new();
    for w in &changers {
        let Op::Write(v) = &w.op else { continue };
        if w.outcome != Outcome::Ok(None) {
            continue;
        }
        let other = if latest[0].is_some_and(|l| std::ptr::eq(l, *w)) {
            latest[1]
        } else {
            latest[0]
        };
        if other.is_some_and(|o| o.complete > w.invoke) {
            continue;
        }
        let missed = entries.iter().any(|r| {
            r.op == Op::Read
                && r.invoke > w.complete
                && matches!(&r.outcome, Outcome::Ok(seen) if seen.as_deref() != Some(v.as_str()))
        });
        if missed {
            lost.push(v.clone());
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(p: u32, op: Op, t: (u64, u64), out: Outcome) -> Entry {
        Entry::new(p, "k", op, t.0, t.1, out)
    }
    fn w(v: &str) -> Op {
        Op::Write(v.into())
    }
    fn cas(a: &str, b: &str) -> Op {
        Op::Cas {
            from: a.into(),
            to: b.into(),
        }
    }
    fn read(v: Option<&str>) -> Outcome {
        Outcome::Ok(v.map(str::to_owned))
    }
    const OK: Outcome = Outcome::Ok(None);
    fn yes() -> Outcome {
        Outcome::Ok(Some("true".into()))
    }
    fn no() -> Outcome {
        Outcome::Ok(Some("false".into()))
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        let h = [
            e(0, w("a"), (0, 10), OK),
            e(0, w("b"), (20, 40), OK),
            e(1, Op::Read, (25, 30), read(Some("a"))),
            e(2, Op::Read, (26, 35), read(Some("b"))),
        ];
        assert!(check(&h).linearizable());
        // Once a read saw b, a later read cannot see a again.
        let mut bad = h.to_vec();
        bad.push(e(3, Op::Read, (36, 38), read(Some("a"))));
        assert!(!check(&bad).linearizable());
    }

    #[test]
    fn unknown_writes_may_or_may_not_have_happened() {
        let base = [
            e(0, w("a"), (0, 10), OK),
            e(1, w("b"), (20, 30), Outcome::Unknown),
        ];
        for seen in [Some("a"), Some("b")] {
            let mut h = base.to_vec();
            h.push(e(2, Op::Read, (100, 110), read(seen)));
            assert!(check(&h).linearizable(), "{seen:?}");
        }
        // …but not before they were invoked.
        let mut early = base.to_vec();
        early.push(e(2, Op::Read, (11, 12), read(Some("b"))));
        assert!(!check(&early).linearizable());
        // Failed writes never happened.
        let h = [
            e(0, w("a"), (0, 10), OK),
            e(1, w("b"), (20, 30), Outcome::Fail),
            e(2, Op::Read, (40, 50), read(Some("b"))),
        ];
        assert!(!check(&h).linearizable());
    }

    #[test]
    fn compare_and_set_wins_once() {
        let h = [
            e(0, w("a"), (0, 10), OK),
            e(1, cas("a", "b"), (20, 30), yes()),
            e(2, cas("a", "c"), (21, 31), no()),
            e(3, Op::Read, (40, 50), read(Some("b"))),
        ];
        assert!(check(&h).linearizable());
        let both = [
            e(0, w("a"), (0, 10), OK),
            e(1, cas("a", "b"), (20, 30), yes()),
            e(2, cas("a", "c"), (21, 31), yes()),
        ];
        assert!(!check(&both).linearizable());
        let refused_wrongly = [
            e(0, w("a"), (0, 10), OK),
            e(1, cas("a", "b"), (20, 30), no()),
        ];
        assert!(!check(&refused_wrongly).linearizable());
        let deleted = [
            e(0, w("a"), (0, 10), OK),
            e(1, Op::Delete, (11, 12), OK),
            e(2, Op::Read, (13, 14), read(None)),
            e(3, cas("a", "b"), (15, 16), no()),
        ];
        assert!(check(&deleted).linearizable());
    }

    #[test]
    fn lost_acknowledged_writes_are_named() {
        let h = [
            e(0, w("a"), (0, 10), OK),
            e(0, w("b"), (20, 30), OK),
            e(1, Op::Read, (40, 50), read(Some("a"))),
        ];
        let r = check(&h);
        assert!(!r.linearizable());
        assert_eq!(r.keys[0].lost_writes, ["b"]);
        // A write that something may have overwritten is not "lost".
        let h = [
            e(0, w("a"), (0, 10), OK),
            e(1, w("b"), (5, 30), Outcome::Unknown),
            e(2, Op::Read, (40, 50), read(Some("b"))),
        ];
        assert!(check(&h).keys[0].lost_writes.is_empty());
    }

    #[test]
    fn keys_are_checked_apart_and_histories_round_trip_as_json() {
        let h = vec![
            Entry::new(0, "x", w("1"), 0, 10, OK),
            Entry::new(1, "y", Op::Read, 5, 6, read(None)),
            Entry::new(1, "x", Op::Read, 11, 12, read(Some("1"))),
        ];
        let r = check(&h);
        assert_eq!(r.keys.len(), 2);
        assert!(r.linearizable());
        let text = serde_json::to_string(&h).unwrap_or_default();
        let back: Vec<Entry> = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, h);
    }

    /// Histories of a real atomic register: each operation takes effect at
    /// a random instant inside its interval. Every one is linearizable, and
    /// turning one read's answer into a value never written breaks it.
    fn simulated(seed_ops: Vec<(u8, u8, u16, u16)>) -> Vec<Entry> {
        // (process, kind, start offset, duration) → ops placed on a timeline
        let mut busy_until = [0u64; 4];
        let mut planned = Vec::new();
        for (i, (p, kind, start, dur)) in seed_ops.into_iter().enumerate() {
            let p = usize::from(p % 4);
            let invoke = busy_until[p] + u64::from(start % 50) + 1;
            let complete = invoke + u64::from(dur % 100) + 1;
            busy_until[p] = complete;
            // The instant it takes effect, strictly inside its interval.
            let at = invoke + (complete - invoke) / 2;
            planned.push((at, i, p as u32, kind % 4, invoke, complete));
        }
        planned.sort();
        let mut value: Option<String> = None;
        let mut out = Vec::new();
        for (_, i, p, kind, invoke, complete) in planned {
            let (op, outcome) = match kind {
                0 => (Op::Read, Outcome::Ok(value.clone())),
                1 => {
                    value = Some(format!("v{i}"));
                    (Op::Write(format!("v{i}")), OK)
                }
                2 => {
                    let from = value.clone().unwrap_or_else(|| "none".into());
                    let ok = value.as_deref() == Some(from.as_str());
                    if ok {
                        value = Some(format!("v{i}"));
                    }
                    (cas(&from, &format!("v{i}")), if ok { yes() } else { no() })
                }
                _ => {
                    value = None;
                    (Op::Delete, OK)
                }
            };
            out.push(Entry::new(p, "k", op, invoke, complete, outcome));
        }
        out
    }

    proptest! {
        #[test]
        fn simulated_register_histories_are_linearizable(
            ops in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>()), 1..60)
        ) {
            let h = simulated(ops);
            let r = check(&h);
            prop_assert!(r.linearizable(), "{:?}", r);
            if let Some(i) = h.iter().position(|e| e.op == Op::Read) {
                let mut bad = h.clone();
                bad[i].outcome = read(Some("never written"));
                prop_assert!(!check(&bad).linearizable());
            }
        }
    }
}
