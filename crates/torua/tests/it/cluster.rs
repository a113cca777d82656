//! A test cluster of real `torua-coordinator` and `torua-node` processes.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use testkit::netlab::NetLab;
use testkit::{eventually, free_port, get_json, wait_ok_with, ChildGuard};
use torua::cli::certs::CertDir;
use torua::wire::{NodeInfoResponse, NodesResponse, ShardsResponse};

pub const COORD: &str = env!("CARGO_BIN_EXE_torua-coordinator");
pub const NODE: &str = env!("CARGO_BIN_EXE_torua-node");
pub const WAIT: Duration = Duration::from_secs(60);
/// Values above this are refused in tests (so 413 is cheap to provoke).
pub const MAX_VALUE: usize = 2 * 1024 * 1024;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// Port of the coordinator `url()` names.
    pub coord_port: u16,
    pub shards: u32,
    /// Coordinators by name (`coordinator` alone, else `c1`…), with their
    /// ports; each keeps its data in the directory of its name.
    coordinators: BTreeMap<String, (u16, Option<ChildGuard>)>,
    nodes: BTreeMap<String, (u16, Option<ChildGuard>)>,
    pub http: reqwest::Client,
    /// The coordinator's bootstrap admin key.
    pub admin_key: String,
    coord_env: Vec<(String, String)>,
    /// Environment for every node start (and restart).
    node_env: Vec<(String, String)>,
    /// With a lab, every node is a host of its own in a network namespace
    /// and the coordinator listens on the lab's gateway, so links can be
    /// cut. Last: dropped after the processes.
    pub net: Option<NetLab>,
}

/// How a test cluster is set up, beyond its size.
#[derive(Default)]
pub struct Options<'a> {
    pub coordinator_env: &'a [(&'a str, &'a str)],
    pub node_env: &'a [(&'a str, &'a str)],
    /// Nodes in network namespaces (see [`TestCluster::net`]).
    pub lab: bool,
    /// How many coordinators (0 counts as 1); several share their
    /// metadata through their Raft group.
    pub coordinators: usize,
}

/// Coordinator environment for single-copy mode (no Raft; shards moved
/// whole). Without it a cluster is replicated, factor 3 (the default).
pub const SINGLE_COPY: (&str, &str) = ("TORUA_REPLICATION_FACTOR", "off");

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sends a request and parses its JSON answer (whatever the status).
pub trait SendJson {
    /// `send().await.unwrap().json().await.unwrap()`.
    fn send_json(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

/// Writes a credential file only its owner may read.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl TestCluster {
    /// A coordinator and `n` nodes (`n1`…), ready to serve, secured as by
    /// default: TLS everywhere with a test CA, mutual TLS between
    /// coordinator and nodes (nodes register by their certificates),
    /// credentials required (`http` sends the bootstrap admin key, over the
    /// coordinator's certificate so it may also call nodes), and
    /// encryption at rest.
    pub async fn start(n: usize, shards: u32) -> TestCluster {
        Self::start_with(n, shards, &[]).await
    }

    /// Like `start`, in single-copy mode.
    pub async fn start_single(n: usize, shards: u32) -> TestCluster {
        Self::start_with(n, shards, &[SINGLE_COPY]).await
    }

    /// Whether the cluster runs in single-copy mode.
    pub fn single_copy(&self) -> bool {
        self.coord_env
            .iter()
            .any(|(k, v)| (k.as_str(), v.as_str()) == SINGLE_COPY)
    }

    /// Like `start`, with extra environment for the coordinator.
    pub async fn start_with(n: usize, shards: u32, env: &[(&str, &str)]) -> TestCluster {
        let opts = Options {
            coordinator_env: env,
            ..Options::default()
        };
        Self::launch(n, shards, opts).await
    }

    /// Like `start`, set up by `opts`.
    pub async fn launch(n: usize, shards: u32, opts: Options<'_>) -> TestCluster {
        let names: Vec<String> = match opts.coordinators {
            0 | 1 => vec!["coordinator".into()],
            n => (1..=n).map(|i| format!("c{i}")).collect(),
        };
        let coordinators: BTreeMap<String, (u16, Option<ChildGuard>)> = names
            .iter()
            .map(|n| (n.clone(), (free_port(), None)))
            .collect();
        let mut c = TestCluster {
            dir: testkit::tempdir(),
            coord_port: coordinators[&names[0]].0,
            shards,
            coordinators,
            nodes: BTreeMap::new(),
            http: reqwest::Client::new(),
            admin_key: String::new(),
            coord_env: owned(opts.coordinator_env),
            node_env: owned(opts.node_env),
            net: opts.lab.then(NetLab::create),
        };
        let host = c.host();
        c.issue_for("coordinator", "coordinator", &host);
        c.issue("client-test", "client:test");
        for name in &names {
            c.start_coordinator_named(name);
        }
        for name in &names {
            let url = c.coordinator_url(name);
            wait_ok_with(&c.anon(), &format!("{url}/health"), WAIT).await;
        }
        // The coordinator that created the cluster wrote the first key.
        let dir = c.dir.path().to_owned();
        c.admin_key = eventually("the bootstrap admin key", WAIT, || async {
            names
                .iter()
                .map(|n| dir.join(n).join("bootstrap-admin.key"))
                .find_map(|p| std::fs::read_to_string(p).ok())
                .filter(|k| !k.trim().is_empty())
                .map(|k| k.trim().to_owned())
        })
        .await;
        c.http = c.client(Some("coordinator"), Some(&c.admin_key));
        // Several coordinators answer 503 until they have the metadata.
        for name in &names {
            let url = format!("{}/shards", c.coordinator_url(name));
            wait_ok_with(&c.http, &url, WAIT).await;
        }
        write_private(&c.master_key_file(), &"ab".repeat(32));
        for i in 1..=n {
            c.add_node(&format!("n{i}"));
        }
        if n > 0 {
            c.wait_placed(n).await;
        }
        c
    }

    /// Waits until the cluster of `n` nodes is ready with its shards
    /// placed: spread over the nodes in single-copy mode, else every
    /// shard led with its replicas.
    pub async fn wait_placed(&mut self, n: usize) {
        if self.single_copy() {
            self.wait_ready().await;
            self.wait_balanced(n).await;
        } else {
            self.wait_settled(n.min(3), None).await;
            self.wait_ready().await;
        }
    }

    /// Waits until every shard has `replicas` voters (none on `without`),
    /// a leader, and only leaders and followers.
    pub async fn wait_settled(&self, replicas: usize, without: Option<&str>) {
        eventually(
            &format!("every shard led, with {replicas} replicas"),
            WAIT,
            || async {
                let map = self.shard_map().await;
                map.shards
                    .iter()
                    .all(|s| {
                        let roles: Vec<&str> = s.replicas.iter().map(|r| r.role.as_str()).collect();
                        s.replicas.len() == replicas
                            && !s.node_id.is_empty()
                            && Some(s.node_id.as_str()) != without
                            && s.replicas
                                .iter()
                                .all(|r| Some(r.node_id.as_str()) != without)
                            && roles.iter().filter(|r| **r == "leader").count() == 1
                            && roles.iter().all(|r| *r == "leader" || *r == "follower")
                    })
                    .then_some(())
            },
        )
        .await
    }

    /// The test CA's directory.
    pub fn certs(&self) -> std::path::PathBuf {
        self.dir.path().join("certs")
    }

    /// Issues `file.pem`/`file.key` for `identity` from the test CA, unless present.
    pub fn issue(&self, file: &str, identity: &str) -> CertDir {
        self.issue_for(file, identity, "127.0.0.1")
    }

    /// Like `issue`, valid for `host` too.
    fn issue_for(&self, file: &str, identity: &str, host: &str) -> CertDir {
        let leaf = [(file.to_owned(), identity.to_owned())];
        CertDir::ensure(&self.certs(), &leaf, &[host.to_owned()], 30).unwrap()
    }

    /// The coordinator's address: loopback, or the lab's gateway.
    fn host(&self) -> String {
        match &self.net {
            Some(lab) => lab.gateway().to_string(),
            None => "127.0.0.1".into(),
        }
    }

    /// Node `id`'s address: loopback, or its host in the lab.
    fn node_host(&self, id: &str) -> String {
        match &self.net {
            Some(lab) => lab.addr(id).to_string(),
            None => "127.0.0.1".into(),
        }
    }

    /// A client trusting the test CA, presenting certificate `cert` (a file
    /// name in the CA directory) and sending `credential`, when given.
    pub fn client(&self, cert: Option<&str>, credential: Option<&str>) -> reqwest::Client {
        self.client_builder(cert, credential).build().unwrap()
    }

    /// Like `client`, left open for more settings.
    pub fn client_builder(
        &self,
        cert: Option<&str>,
        credential: Option<&str>,
    ) -> reqwest::ClientBuilder {
        let ca = self.certs().join("ca.pem");
        let tls = match cert {
            Some(file) => {
                let files = secure::tls::TlsFiles {
                    cert: self.certs().join(format!("{file}.pem")),
                    key: self.certs().join(format!("{file}.key")),
                    ca,
                };
                (*secure::tls::load(&files, secure::tls::ClientAuth::Optional)
                    .unwrap()
                    .client)
                    .clone()
            }
            None => secure::tls::client_trusting(&ca).unwrap(),
        };
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(c) = credential {
            h.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {c}").parse().unwrap(),
            );
        }
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .default_headers(h)
    }

    /// A client sending `Authorization: Bearer <credential>`, no certificate.
    pub fn client_with(&self, credential: &str) -> reqwest::Client {
        self.client(None, Some(credential))
    }

    /// A client with neither certificate nor credential.
    pub fn anon(&self) -> reqwest::Client {
        self.client(None, None)
    }

    /// `TORUA_TLS_*` for the certificate `file`.
    pub fn tls_env(&self, file: &str) -> Vec<(String, std::path::PathBuf)> {
        let d = self.certs();
        vec![
            ("TORUA_TLS_CERT".into(), d.join(format!("{file}.pem"))),
            ("TORUA_TLS_KEY".into(), d.join(format!("{file}.key"))),
            ("TORUA_TLS_CA".into(), d.join("ca.pem")),
        ]
    }

    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host(), self.coord_port)
    }

    /// Names of the coordinators.
    pub fn coordinator_names(&self) -> Vec<String> {
        self.coordinators.keys().cloned().collect()
    }

    /// The URL of coordinator `name`.
    pub fn coordinator_url(&self, name: &str) -> String {
        format!("https://{}:{}", self.host(), self.coordinators[name].0)
    }

    /// Makes `url()` (and so every helper) name coordinator `name`.
    pub fn use_coordinator(&mut self, name: &str) {
        self.coord_port = self.coordinators[name].0;
    }

    /// Every coordinator's URL, comma-separated, as nodes take them.
    fn coordinator_urls(&self) -> String {
        self.coordinators
            .keys()
            .map(|n| self.coordinator_url(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_url(&self, key: &str) -> String {
        format!(
            "{}/data/{}",
            self.url(),
            torua::http::extract::encode_key(key)
        )
    }

    pub fn node_url(&self, id: &str) -> String {
        format!("https://{}:{}", self.node_host(id), self.nodes[id].0)
    }

    /// (Re)starts the coordinator `url()` names.
    pub fn start_coordinator(&mut self) {
        let name = self.current_coordinator();
        self.start_coordinator_named(&name);
    }

    fn current_coordinator(&self) -> String {
        let port = self.coord_port;
        self.coordinators
            .iter()
            .find(|(_, (p, _))| *p == port)
            .map(|(n, _)| n.clone())
            .expect("url() names a coordinator")
    }

    /// (Re)starts coordinator `name` on its port and data directory.
    pub fn start_coordinator_named(&mut self, name: &str) {
        let port = self.coordinators[name].0;
        let mut cmd = Command::new(COORD);
        cmd.env("COORDINATOR_ADDR", format!("{}:{port}", self.host()))
            .env("HEALTH_CHECK_INTERVAL", "200ms")
            .env("TORUA_SHARDS", self.shards.to_string())
            .env("TORUA_DATA_DIR", self.dir.path().join(name))
            .env("TORUA_MAX_VALUE_BYTES", MAX_VALUE.to_string())
            .env("TORUA_HEALTH_FAILURES", "3")
            .envs(self.tls_env("coordinator"))
            .envs(self.coord_env.iter().map(|(k, v)| (k, v)));
        if self.coordinators.len() > 1 {
            let peers: Vec<String> = self
                .coordinators
                .keys()
                .map(|n| format!("{n}={}", self.coordinator_url(n)))
                .collect();
            cmd.env("TORUA_COORDINATOR_ID", name)
                .env("TORUA_COORDINATOR_PEERS", peers.join(","));
        }
        let child = ChildGuard::spawn(name, cmd, self.dir.path());
        self.coordinators
            .get_mut(name)
            .expect("known coordinator")
            .1 = Some(child);
    }

    /// SIGKILL the coordinator `url()` names.
    pub fn kill_coordinator(&mut self) {
        let name = self.current_coordinator();
        self.kill_coordinator_named(&name);
    }

    /// SIGKILL coordinator `name`; `start_coordinator_named` restarts it.
    pub fn kill_coordinator_named(&mut self, name: &str) {
        if let Some(mut c) = self.coordinators.get_mut(name).and_then(|(_, c)| c.take()) {
            c.kill();
        }
    }

    /// The nodes' master key (encryption at rest is on, as by default).
    pub fn master_key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("master.key")
    }

    /// Starts (or restarts) node `id` on its port and data directory.
    pub fn add_node(&mut self, id: &str) {
        self.add_node_with(id, &[]);
    }

    /// Like `add_node`, with extra environment (overriding the defaults).
    pub fn add_node_with(&mut self, id: &str, env: &[(&str, &str)]) {
        let mut cmd = self.node_command(id);
        cmd.envs(env.iter().copied());
        let child = ChildGuard::spawn(id, cmd, self.dir.path());
        let port = self.nodes[id].0;
        self.nodes.insert(id.to_owned(), (port, Some(child)));
    }

    /// The command that starts node `id` (its port is kept across restarts).
    pub fn node_command(&mut self, id: &str) -> Command {
        let port = self
            .nodes
            .get(id)
            .map(|(p, _)| *p)
            .unwrap_or_else(free_port);
        self.nodes.entry(id.to_owned()).or_insert((port, None));
        let mut cmd = match self.net.as_mut() {
            Some(lab) => {
                lab.add_host(id);
                lab.command(id, NODE)
            }
            None => Command::new(NODE),
        };
        let host = self.node_host(id);
        let file = format!("node-{id}");
        self.issue_for(&file, &format!("node:{id}"), &host);
        cmd.env("NODE_ID", id)
            .env("NODE_LISTEN", format!("{host}:{port}"))
            .env("NODE_ADDR", format!("https://{host}:{port}"))
            .env("COORDINATOR_ADDR", self.coordinator_urls())
            .env("DATA_DIR", self.dir.path().join(id))
            .env("HEALTH_CHECK_INTERVAL", "200ms")
            .env("TORUA_MAX_VALUE_BYTES", MAX_VALUE.to_string())
            .env("TORUA_MASTER_KEY_FILE", self.master_key_file())
            .envs(self.tls_env(&file))
            .envs(self.node_env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The lab the nodes run in (clusters launched with `lab`).
    pub fn lab(&mut self) -> &mut NetLab {
        self.net
            .as_mut()
            .expect("this cluster runs without a network lab")
    }

    /// SIGTERM, and wait for the node to exit.
    pub fn stop_node(&mut self, id: &str) {
        if let Some(mut c) = self.nodes.get_mut(id).and_then(|(_, c)| c.take()) {
            c.terminate(Duration::from_secs(10));
        }
    }

    /// Waits until node `id` has registered (its own `/ready`) and the
    /// coordinator is ready.
    pub async fn wait_node_ready(&mut self, id: &str) {
        wait_ok_with(&self.http, &format!("{}/ready", self.node_url(id)), WAIT).await;
        self.wait_ready().await;
    }

    /// Waits until the coordinator answers and lists node `id` (after a
    /// coordinator restart, when the node registers again).
    pub async fn wait_registered(&self, id: &str) {
        wait_ok_with(&self.anon(), &format!("{}/health", self.url()), WAIT).await;
        eventually(&format!("{id} registered"), WAIT, || async {
            let nodes = self.nodes().await;
            nodes.nodes.iter().any(|n| n.id == id).then_some(())
        })
        .await
    }

    /// The process id of node `id`, while it runs.
    pub fn node_pid(&self, id: &str) -> Option<u32> {
        self.nodes
            .get(id)
            .and_then(|(_, c)| c.as_ref())
            .map(|c| c.pid())
    }

    /// SIGKILL: no graceful shutdown, no flush. `add_node` restarts it.
    pub fn kill_node(&mut self, id: &str) {
        if let Some(mut c) = self.nodes.get_mut(id).and_then(|(_, c)| c.take()) {
            c.kill();
        }
    }

    pub async fn wait_ready(&mut self) {
        wait_ok_with(&self.http, &format!("{}/ready", self.url()), WAIT).await;
        let dir = self.dir.path().to_owned();
        for (_, child) in self.coordinators.values_mut() {
            if let Some(c) = child.as_mut() {
                c.assert_running(&dir);
            }
        }
        for (_, child) in self.nodes.values_mut() {
            if let Some(c) = child.as_mut() {
                c.assert_running(&dir);
            }
        }
    }

    /// Creates an API key with `roles` through the admin API; returns the secret.
    pub async fn create_key(&self, name: &str, roles: &[&str]) -> String {
        let res = self
            .http
            .post(format!("{}/admin/apikeys", self.url()))
            .json(&serde_json::json!({"name": name, "roles": roles}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: serde_json::Value = res.json().await.unwrap();
        body["key"].as_str().unwrap().to_owned()
    }

    /// The coordinator's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series (name with its labels, as printed) of node
    /// `id`'s `/metrics`; 0 when the series is not there yet.
    pub async fn node_metric(&self, id: &str, series: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.node_url(id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub async fn nodes(&self) -> NodesResponse {
        get_json(&self.http, &format!("{}/nodes", self.url())).await
    }

    pub async fn shard_map(&self) -> ShardsResponse {
        get_json(&self.http, &format!("{}/shards", self.url())).await
    }

    pub async fn node_info(&self, id: &str) -> NodeInfoResponse {
        get_json(&self.http, &format!("{}/info", self.node_url(id))).await
    }

    /// Waits until `n` healthy nodes each own ⌊S/n⌋ or ⌈S/n⌉ shards and no move is under way.
    pub async fn wait_balanced(&self, n: usize) {
        let shards = self.shards as usize;
        eventually(&format!("shards balanced over {n} nodes"), WAIT, || async {
            let map = self.shard_map().await;
            if map
                .shards
                .iter()
                .any(|s| s.node_id.is_empty() || s.moving_to.is_some())
            {
                return None;
            }
            let nodes = self.nodes().await;
            let live: Vec<_> = nodes
                .nodes
                .iter()
                .filter(|x| x.status == "healthy" && x.state == "active")
                .collect();
            if live.len() != n {
                return None;
            }
            let counts: Vec<usize> = live.iter().map(|x| x.shard_count).collect();
            let (lo, hi) = (shards / n, shards.div_ceil(n));
            counts.iter().all(|c| *c == lo || *c == hi).then_some(())
        })
        .await
    }

    pub async fn put(&self, key: &str, value: impl Into<reqwest::Body>) -> StatusCode {
        self.http
            .put(self.data_url(key))
            .body(value)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Writes `key`, again while the cluster answers 503 (a group without
    /// a leader or cut off from its quorum for a moment, as on a loaded
    /// machine with short Raft timeouts: nothing was written), until
    /// `limit`; returns the last status.
    pub async fn put_retrying(&self, key: &str, value: &[u8], limit: Duration) -> StatusCode {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let status = self.put(key, value.to_vec()).await;
            if status != StatusCode::SERVICE_UNAVAILABLE || std::time::Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, key: &str) -> (StatusCode, bytes::Bytes) {
        let r = self.http.get(self.data_url(key)).send().await.unwrap();
        (r.status(), r.bytes().await.unwrap())
    }

    pub async fn delete(&self, key: &str) -> StatusCode {
        self.http
            .delete(self.data_url(key))
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// Sends `req` and asserts its JSON error's status and code; returns the message.
pub async fn expect_error(req: reqwest::RequestBuilder, status: StatusCode, code: &str) -> String {
    let (got_status, got_code, message) = error_code(req.send().await.unwrap()).await;
    assert_eq!((got_status, got_code.as_str()), (status, code), "{message}");
    message
}

/// Reads the `{"error":{"code"}}` of a response.
pub async fn error_code(res: reqwest::Response) -> (StatusCode, String, String) {
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Concurrent writers of `{prefix}/{writer}/{i}` (the key as value), so
/// acknowledged writes share group commits; they write until stopped.
pub struct Writers {
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<String>, usize)>>,
}

impl Writers {
    pub fn start(c: &TestCluster, prefix: &str, n: usize) -> Writers {
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..n)
            .map(|w| {
                let (http, url) = (c.http.clone(), c.url());
                let (acked_so_far, stop) = (acked.clone(), stop.clone());
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let (mut acked, mut refused) = (Vec::new(), 0);
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{prefix}/{w}/{i}");
                        i += 1;
                        let r = http
                            .put(format!(
                                "{url}/data/{}",
                                torua::http::extract::encode_key(&key)
                            ))
                            .body(key.clone())
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                                acked.push(key);
                                acked_so_far.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => refused += 1,
                        }
                    }
                    (acked, refused)
                })
            })
            .collect();
        Writers { acked, stop, tasks }
    }

    /// Waits until `n` writes were acknowledged in all.
    pub async fn wait_acked(&self, n: usize) {
        eventually(&format!("{n} writes acknowledged"), WAIT, || async {
            (self.acked.load(Ordering::Relaxed) >= n).then_some(())
        })
        .await;
    }

    pub fn acked_so_far(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Stops them: the keys acknowledged, and how many writes were not.
    pub async fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut acked, mut refused) = (Vec::new(), 0);
        for t in self.tasks {
            let (a, r) = t.await.unwrap();
            acked.extend(a);
            refused += r;
        }
        (acked, refused)
    }
}
