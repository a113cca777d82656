//! Raft RPCs between nodes: postcard bodies over the cluster's mutual-TLS
//! HTTP client, to `POST {peer}/raft/{shard}/{append|vote|snapshot}`.

use openraft::error::{InstallSnapshotError, NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use torua_raft::{decode, encode, typ, Member, TypeConfig};

use crate::tls::HttpClient;

/// Content type of Raft RPC bodies.
pub(crate) const RAFT_CONTENT_TYPE: &str = "application/x-torua-raft";

/// Connects one group's replica to its peers.
pub(crate) struct Net {
    client: HttpClient,
    group: u32,
}

impl Net {
    pub(crate) fn new(client: HttpClient, group: u32) -> Net {
        Net { client, group }
    }
}

/// A connection to one peer of one group.
pub(crate) struct Peer {
    client: HttpClient,
    url: String,
    target: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RpcFailure(String);

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        Peer {
            client: self.client.clone(),
            url: format!("{}/raft/{}", node.addr.trim_end_matches('/'), self.group),
            target,
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        op: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, typ::RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let network = |e: &dyn std::fmt::Display| {
            openraft::error::RPCError::Network(NetworkError::new(&RpcFailure(e.to_string())))
        };
        let body = encode(req).map_err(|e| network(&e))?;
        let res = self
            .client
            .get()
            .post(format!("{}/{op}", self.url))
            .timeout(option.hard_ttl())
            .header(reqwest::header::CONTENT_TYPE, RAFT_CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    // Not retried at once: the peer is down.
                    openraft::error::RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    network(&e)
                }
            })?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| network(&e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(network(&format!("{op} answered {status}: {text}")));
        }
        let answer: Result<Resp, typ::RaftError<E>> = decode(&bytes).map_err(|e| network(&e))?;
        answer.map_err(|e| openraft::error::RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, typ::RPCError> {
        self.call("append", &req, &option).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, typ::RPCError<InstallSnapshotError>> {
        self.call("snapshot", &req, &option).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, typ::RPCError> {
        self.call("vote", &req, &option).await
    }
}
