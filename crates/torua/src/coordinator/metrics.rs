//! Cluster-level metrics of the coordinator (HTTP metrics come from `http`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Default)]
pub(crate) struct ClusterMetrics {
    pub nodes: Family<StatusLabel, Gauge>,
    pub shards_without_live_owner: Gauge,
    pub moves: Family<ResultLabel, Counter>,
    /// 1 while this coordinator acts on the cluster (alone, or leading the
    /// coordinators' group).
    pub acting: Gauge,
    pub leader_transfers: Family<ResultLabel, Counter>,
}

impl ClusterMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "cluster_nodes",
            "Registered nodes by health status",
            self.nodes.clone(),
        );
        reg.register(
            "shards_without_live_owner",
            "Shards whose owner is missing or not healthy",
            self.shards_without_live_owner.clone(),
        );
        reg.register("shard_moves", "Shard moves by result", self.moves.clone());
        reg.register(
            "coordinator_acting",
            "1 while this coordinator repairs and rebalances the cluster (it leads the coordinators)",
            self.acting.clone(),
        );
        reg.register(
            "leader_transfers",
            "Shard leaderships handed over to even out leaders, by result",
            self.leader_transfers.clone(),
        );
    }

    pub fn transferred(&self, result: &str) {
        count(&self.leader_transfers, result);
    }

    pub fn moved(&self, result: &str) {
        count(&self.moves, result);
    }
}

/// Counts one outcome `result` in `family`.
fn count(family: &Family<ResultLabel, Counter>, result: &str) {
    family
        .get_or_create(&ResultLabel {
            result: result.into(),
        })
        .inc();
}
