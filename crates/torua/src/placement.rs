//! Where keys and shards go: a stable hash from key to shard, and the plan
//! that spreads shards evenly over nodes while moving as few as possible.
//!
//! Pure functions only; the coordinator executes the plans.

use std::collections::{BTreeMap, BTreeSet};

/// The shard of `key`. XXH3 is specified and seeded explicitly, so the
/// mapping never changes between builds or platforms: it is part of the
/// on-disk contract of a cluster.
pub fn shard_for_key(key: &str, num_shards: u32) -> u32 {
    let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    // num_shards ≥ 1 is guaranteed by config validation.
    (h % u64::from(num_shards.max(1))) as u32
}

/// What the planner knows of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    /// Shard id.
    pub id: u32,
    /// Current owner, if any.
    pub owner: Option<String>,
}

/// A step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The shard has no owner (new cluster, or forcibly removed node):
    /// give it to `to` with no data to copy.
    Assign {
        /// Shard id.
        shard: u32,
        /// New owner.
        to: String,
    },
    /// Copy the shard from `from` to `to`, then switch.
    Move {
        /// Shard id.
        shard: u32,
        /// Current owner.
        from: String,
        /// New owner.
        to: String,
    },
}

/// Plans the fewest moves that leave every eligible node with ⌊S/N⌋ or
/// ⌈S/N⌉ shards.
///
/// * `eligible`: healthy, non-draining nodes (the only destinations).
/// * `draining`: nodes whose shards must all leave.
/// * `pinned`: shards that should not be chosen to shed a surplus (recent
///   manual assignments), unless nothing else is available.
///
/// Shards owned by nodes in neither set (unhealthy nodes) stay put: their
/// data cannot be copied, and they do not count towards the balance.
pub fn plan(
    shards: &[ShardView],
    eligible: &BTreeSet<String>,
    draining: &BTreeSet<String>,
    pinned: &BTreeSet<u32>,
) -> Vec<Step> {
    if eligible.is_empty() {
        return Vec::new();
    }
    let mut held: BTreeMap<&str, Vec<u32>> =
        eligible.iter().map(|n| (n.as_str(), Vec::new())).collect();
    let mut homeless = Vec::new(); // (shard, Some(from)) to move, (shard, None) to assign
    for s in shards {
        match s.owner.as_deref() {
            None => homeless.push((s.id, None)),
            Some(o) if draining.contains(o) => homeless.push((s.id, Some(o.to_owned()))),
            Some(o) => {
                if let Some(v) = held.get_mut(o) {
                    v.push(s.id);
                }
            }
        }
    }
    let total: usize = held.values().map(Vec::len).sum::<usize>() + homeless.len();
    let n = eligible.len();
    let (base, extra) = (total / n, total % n);
    // The nodes already holding the most keep the ⌈S/N⌉ slots: fewest moves.
    let mut order: Vec<&str> = held.keys().copied().collect();
    order.sort_by(|a, b| held[b].len().cmp(&held[a].len()).then(a.cmp(b)));
    let target: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, node)| (*node, base + usize::from(i < extra)))
        .collect();
    for (node, ids) in held.iter_mut() {
        let keep = target[node];
        if ids.len() > keep {
            // Shed unpinned shards first, highest ids first (deterministic).
            ids.sort_by_key(|id| (!pinned.contains(id), *id));
            for id in ids.drain(keep..) {
                homeless.push((id, Some((*node).to_owned())));
            }
        }
    }
    homeless.sort_by_key(|(id, _)| *id);
    let mut steps = Vec::new();
    let mut homeless = homeless.into_iter();
    for node in &order {
        let need = target[node].saturating_sub(held[node].len());
        for (shard, from) in homeless.by_ref().take(need) {
            let to = (*node).to_owned();
            steps.push(match from {
                None => Step::Assign { shard, to },
                Some(from) => Step::Move { shard, from, to },
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn apply(shards: &mut [ShardView], steps: &[Step]) {
        for s in steps {
            let (id, to) = match s {
                Step::Assign { shard, to } | Step::Move { shard, to, .. } => (*shard, to),
            };
            shards[id as usize].owner = Some(to.clone());
        }
    }

    fn counts(shards: &[ShardView], nodes: &BTreeSet<String>) -> Vec<usize> {
        nodes
            .iter()
            .map(|n| {
                shards
                    .iter()
                    .filter(|s| s.owner.as_deref() == Some(n))
                    .count()
            })
            .collect()
    }

    #[test]
    fn hash_is_stable() {
        // Part of the on-disk contract: these must never change.
        assert_eq!(shard_for_key("user:123", 64), shard_for_key("user:123", 64));
        let spread: BTreeSet<u32> = (0..1000)
            .map(|i| shard_for_key(&format!("k{i}"), 64))
            .collect();
        assert_eq!(spread.len(), 64);
    }

    #[test]
    fn new_cluster_assigns_everything() {
        let mut shards: Vec<ShardView> = (0..64).map(|id| ShardView { id, owner: None }).collect();
        let nodes = set(&["a", "b", "c"]);
        let steps = plan(&shards, &nodes, &set(&[]), &BTreeSet::new());
        assert_eq!(steps.len(), 64);
        apply(&mut shards, &steps);
        assert_eq!(counts(&shards, &nodes), vec![22, 21, 21]);
    }

    #[test]
    fn join_moves_the_minimum() {
        let mut shards: Vec<ShardView> = (0..64)
            .map(|id| ShardView {
                id,
                owner: Some(if id % 2 == 0 { "a" } else { "b" }.into()),
            })
            .collect();
        let nodes = set(&["a", "b", "c"]);
        let steps = plan(&shards, &nodes, &set(&[]), &BTreeSet::new());
        // c needs 21: exactly 21 moves, none between a and b.
        assert_eq!(steps.len(), 21);
        assert!(steps
            .iter()
            .all(|s| matches!(s, Step::Move { to, .. } if to == "c")));
        apply(&mut shards, &steps);
        assert!(plan(&shards, &nodes, &set(&[]), &BTreeSet::new()).is_empty());
    }

    proptest! {
        #[test]
        fn plans_balance_and_are_minimal(
            num in 1u32..200,
            owners in proptest::collection::vec(0usize..6, 200),
            nodes in 1usize..6,
            drain in proptest::option::of(0usize..6),
        ) {
            let all: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
            let mut shards: Vec<ShardView> = (0..num).map(|id| {
                let o = owners[id as usize];
                ShardView { id, owner: (o < nodes).then(|| all[o].clone()) }
            }).collect();
            let draining: BTreeSet<String> = drain.filter(|d| *d < nodes && nodes > 1).map(|d| all[d].clone()).into_iter().collect();
            let eligible: BTreeSet<String> = all[..nodes].iter().filter(|n| !draining.contains(*n)).cloned().collect();
            let steps = plan(&shards, &eligible, &draining, &BTreeSet::new());
            // Each shard moves at most once.
            let moved: BTreeSet<u32> = steps.iter().map(|s| match s { Step::Assign{shard,..} | Step::Move{shard,..} => *shard }).collect();
            prop_assert_eq!(moved.len(), steps.len());
            apply(&mut shards, &steps);
            let c = counts(&shards, &eligible);
            prop_assert!(c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0) <= 1);
            prop_assert!(shards.iter().all(|s| s.owner.as_ref().is_some_and(|o| eligible.contains(o))));
            // A balanced result needs no further steps.
            prop_assert!(plan(&shards, &eligible, &BTreeSet::new(), &BTreeSet::new()).is_empty());
        }
    }
}
