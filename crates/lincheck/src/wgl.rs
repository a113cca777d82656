//! The search: Wing & Gong's algorithm over a doubly linked list of call
//! and return events, with Lowe's cache of (linearized set, state) pairs.

use std::collections::{HashMap, HashSet};

use crate::{Entry, Op, Outcome};

/// Register state: the interned value, or `None` when absent.
type State = Option<u32>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Read(Option<String>),
    Write(String),
    /// `ok`: the answer, `None` when unknown.
    Cas {
        from: String,
        to: String,
        ok: Option<bool>,
    },
    Delete,
}

/// One operation of one key's sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operation {
    call: u64,
    /// `u64::MAX` when the outcome is unknown.
    ret: u64,
    kind: Kind,
    /// May be left out of the linearization (unknown outcome).
    optional: bool,
}

impl Operation {
    /// The operation an entry contributes, if any: failed operations and
    /// unanswered reads constrain nothing.
    pub(crate) fn from_entry(e: &Entry) -> Option<Operation> {
        let (unknown, answer) = match &e.outcome {
            Outcome::Fail => return None,
            Outcome::Unknown => (true, None),
            Outcome::Ok(a) => (false, a.clone()),
        };
        let kind = match &e.op {
            Op::Read if unknown => return None,
            Op::Read => Kind::Read(answer),
            Op::Write(v) => Kind::Write(v.clone()),
            Op::Cas { from, to } => Kind::Cas {
                from: from.clone(),
                to: to.clone(),
                ok: if unknown {
                    None
                } else {
                    Some(answer.as_deref() == Some("true"))
                },
            },
            Op::Delete => Kind::Delete,
        };
        Some(Operation {
            call: e.invoke,
            ret: if unknown { u64::MAX } else { e.complete },
            kind,
            optional: unknown,
        })
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// The register's transition for `op` from `state`: the new state if the
/// operation's answer is possible there.
fn step(op: &Interned, state: State) -> Option<State> {
    match *op {
        Interned::Read(seen) => (seen == state).then_some(state),
        Interned::Write(v) => Some(Some(v)),
        Interned::Cas { from, to, ok } => match ok {
            Some(true) | None => (state == Some(from)).then_some(Some(to)),
            Some(false) => (state != Some(from)).then_some(state),
        },
        Interned::Delete => Some(None),
    }
}

#[derive(Debug, Clone, Copy)]
enum Interned {
    Read(State),
    Write(u32),
    Cas {
        from: u32,
        to: u32,
        ok: Option<bool>,
    },
    Delete,
}

/// `Some(verdict)`, or `None` when the search exceeded `max_steps`.
pub(crate) fn linearizable(ops: &[Operation], max_steps: u64) -> Option<bool> {
    if ops.is_empty() {
        return Some(true);
    }
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |v: &String| {
        let n = ids.len() as u32;
        *ids.entry(v.clone()).or_insert(n)
    };
    let interned: Vec<Interned> = ops
        .iter()
        .map(|o| match &o.kind {
            Kind::Read(v) => Interned::Read(v.as_ref().map(&mut intern)),
            Kind::Write(v) => Interned::Write(intern(v)),
            Kind::Cas { from, to, ok } => Interned::Cas {
                from: intern(from),
                to: intern(to),
                ok: *ok,
            },
            Kind::Delete => Interned::Delete,
        })
        .collect();

    // Events in time order; at equal times calls first (more concurrency,
    // never a false alarm). Node 0 is the list head sentinel.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call, true, i));
        order.push((o.ret, false, i));
    }
    order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let n = order.len();
    let mut ev = vec![
        Event {
            op: usize::MAX,
            is_call: false,
            prev: 0,
            next: 0,
        };
        n + 1
    ];
    let mut call_node = vec![0; ops.len()];
    let mut ret_node = vec![0; ops.len()];
    for (k, &(_, is_call, i)) in order.iter().enumerate() {
        let node = k + 1;
        ev[node] = Event {
            op: i,
            is_call,
            prev: k,
            next: if k + 1 < n { k + 2 } else { usize::MAX },
        };
        if is_call {
            call_node[i] = node;
        } else {
            ret_node[i] = node;
        }
    }
    ev[0].next = 1;

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut node = ev[0].next;
    let mut steps = 0u64;

    let unlink = |ev: &mut Vec<Event>, x: usize| {
        let (p, nx) = (ev[x].prev, ev[x].next);
        ev[p].next = nx;
        if nx != usize::MAX {
            ev[nx].prev = p;
        }
    };
    let relink = |ev: &mut Vec<Event>, x: usize| {
        let (p, nx) = (ev[x].prev, ev[x].next);
        ev[p].next = x;
        if nx != usize::MAX {
            ev[nx].prev = x;
        }
    };

    loop {
        steps += 1;
        if steps > max_steps {
            return None;
        }
        if node == usize::MAX {
            return Some(true);
        }
        let e = ev[node];
        if e.is_call {
            let i = e.op;
            if let Some(next_state) = step(&interned[i], state) {
                let mut lin = linearized.clone();
                lin[i / 64] |= 1 << (i % 64);
                if cache.insert((lin.clone(), next_state)) {
                    stack.push((i, state));
                    state = next_state;
                    linearized = lin;
                    // Lift the operation: unlink its return, then its call.
                    unlink(&mut ev, ret_node[i]);
                    unlink(&mut ev, call_node[i]);
                    node = ev[0].next;
                    continue;
                }
            }
            node = e.next;
        } else if ops[e.op].optional {
            // Every operation that had to be linearized was: the rest are
            // unknown outcomes that may never have happened.
            return Some(true);
        } else {
            // An operation returned without a linearization point: undo.
            let Some((i, prev)) = stack.pop() else {
                return Some(false);
            };
            state = prev;
            linearized[i / 64] &= !(1 << (i % 64));
            relink(&mut ev, call_node[i]);
            relink(&mut ev, ret_node[i]);
            node = ev[call_node[i]].next;
        }
    }
}
