//! Issue 18, Torua's side: who may act as whom between coordinator, nodes
//! and clients. Each test performs the attack against the real binaries and
//! keeps a control beside it that must still succeed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{error_code, SendJson, TestCluster, WAIT};
use testkit::eventually;

/// A TLS listener standing in for a compromised node: it holds a real
/// certificate of the cluster CA, answers `/health`, refuses everything
/// else with `421 not_leader`, and records the head of every request.
struct Impostor {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Impostor {
    /// Listens on `port` (0: any) with certificate `file` of the test CA.
    async fn start(c: &TestCluster, file: &str, port: u16) -> Impostor {
        let d = c.certs();
        let files = secure::tls::TlsFiles {
            cert: d.join(format!("{file}.pem")),
            key: d.join(format!("{file}.key")),
            ca: d.join("ca.pem"),
        };
        let server = secure::tls::load(&files, secure::tls::ClientAuth::Optional)
            .unwrap()
            .server;
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let listener = eventually("the impostor's port", WAIT, || async {
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        let port = listener.local_addr().unwrap().port();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await
                        {
                            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let answer = if head.starts_with("GET /health") {
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}".to_owned()
                    } else {
                        let body = r#"{"error":{"code":"not_leader","message":"no"}}"#;
                        format!("HTTP/1.1 421 Misdirected Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                    };
                    seen.lock().unwrap().push(head);
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Impostor { port, heads, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Heads of the requests that were not health checks.
    fn data_requests(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter(|h| !h.starts_with("GET /health"))
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn register_body(id: &str, addr: &str) -> Value {
    json!({"node": {"id": id, "addr": addr}})
}

#[tokio::test]
async fn issue_18_node_credentials_register_only_their_own_node_over_https() {
    let c = TestCluster::start(1, 1).await;
    let n1_addr = c.node_url("n1");
    let register = format!("{}/register", c.url());
    let n1 = c.client(Some("node-n1"), None);
    let send = |client: &reqwest::Client, id: &str, addr: &str| {
        client.post(&register).json(&register_body(id, addr)).send()
    };

    // n1's certificate may not register another node, nor move it.
    let r = send(&n1, "n2", "https://127.0.0.1:9").await.unwrap();
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(message.contains("belongs to node `n1`"), "{message}");
    // Control: n1 registers itself.
    let r = send(&n1, "n1", &n1_addr).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // With TLS on, a node's address must be https.
    let plain = n1_addr.replacen("https://", "http://", 1);
    let r = send(&n1, "n1", &plain).await.unwrap();
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_node_addr")
    );
    assert!(message.contains("https://"), "{message}");
    assert_eq!(c.nodes().await.nodes[0].addr, n1_addr, "nothing changed");

    // A `node` key names its node, and registers only that one.
    let r = c
        .http
        .post(format!("{}/admin/apikeys", c.url()))
        .json(&json!({"name": "unbound", "roles": ["node"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "node_id_required");
    let key: Value = c
        .http
        .post(format!("{}/admin/apikeys", c.url()))
        .json(&json!({"name": "n1", "roles": ["node"], "node_id": "n1"}))
        .send_json()
        .await;
    assert_eq!(key["node_id"], "n1");
    let by_key = c.client_with(key["key"].as_str().unwrap());
    let r = send(&by_key, "n2", "https://127.0.0.1:9").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(&by_key, "n1", &n1_addr).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "control: its own node");
    let nodes = c.nodes().await.nodes;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
}

#[tokio::test]
async fn a_decommissioned_node_cannot_register_again() {
    let mut c = TestCluster::start_single(2, 4).await;
    let n2_addr = c.node_url("n2");
    let res = c
        .http
        .delete(format!("{}/nodes/n2", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let register = |c: &TestCluster| {
        // n2's own certificate, as the node itself would send it.
        c.client(Some("node-n2"), None)
            .post(format!("{}/register", c.url()))
            .json(&register_body("n2", &n2_addr))
            .send()
    };
    let (status, code, message) = error_code(register(&c).await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "node_decommissioned")
    );
    assert!(message.contains("new NODE_ID"), "{message}");

    // The node process itself, restarted, keeps being refused and says why.
    c.stop_node("n2");
    c.add_node("n2");
    let log = c.dir.path().join("n2.log");
    eventually("n2 logs the refusal", WAIT, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("was decommissioned").then_some(())
    })
    .await;
    assert!(c.nodes().await.nodes.iter().all(|n| n.id != "n2"));

    // The refusal is kept in the metadata: a restarted coordinator holds it.
    c.kill_coordinator();
    c.start_coordinator();
    c.wait_ready().await;
    let r = register(&c).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Control: a node under a new id joins.
    c.add_node("n3");
    c.wait_registered("n3").await;
    assert!(c.nodes().await.nodes.iter().all(|n| n.id != "n2"));
}

#[tokio::test]
async fn issue_18_leader_claims_count_only_from_members_and_client_credentials_stay_at_the_coordinator(
) {
    // One shard on three nodes; n9 holds a real node certificate but is
    // no replica of it.
    let c = TestCluster::start(3, 1).await;
    c.issue("node-n9", "node:n9");
    let impostor = Impostor::start(&c, "node-n9", 0).await;
    let n9 = c.client(Some("node-n9"), None);
    for round in 0..5 {
        let claim = json!({
            "node": {"id": "n9", "addr": impostor.url()},
            "groups": [{"shard": 0, "role": "leader", "term": 1_000_000, "voters": ["n9"]}],
        });
        let r = n9
            .post(format!("{}/register", c.url()))
            .json(&claim)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        // Control: the shard's real replicas still serve it.
        assert_eq!(
            c.put(&format!("k{round}"), "v").await,
            StatusCode::NO_CONTENT
        );
    }
    let seen = impostor.data_requests();
    assert!(
        seen.is_empty(),
        "a non-member drew the shard's requests: {seen:?}"
    );
    // The coordinator did call n9 (its health), so the impostor was reachable.
    eventually("the coordinator checks n9's health", WAIT, || async {
        (!impostor.all().is_empty()).then_some(())
    })
    .await;
    for head in impostor.all() {
        assert!(
            !head.to_ascii_lowercase().contains("authorization:"),
            "a client credential reached a node: {head}"
        );
    }
}

#[tokio::test]
async fn issue_18_the_coordinator_accepts_only_the_called_nodes_certificate() {
    let mut c = TestCluster::start(1, 1).await;
    assert_eq!(c.put("k", "v").await, StatusCode::NO_CONTENT);
    let port: u16 = c
        .node_url("n1")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    c.kill_node("n1");
    // Another node's valid certificate, at n1's address.
    c.issue("node-n2", "node:n2");
    let other = Impostor::start(&c, "node-n2", port).await;
    let (status, _) = c.get("k").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let seen = other.all();
    assert!(
        seen.is_empty(),
        "the coordinator spoke HTTP to a node with another identity: {seen:?}"
    );
    drop(other);
    // Control: with n1's own certificate at that address the coordinator
    // does send it the request (opening its data stream, or over HTTP).
    let same = Impostor::start(&c, "node-n1", port).await;
    let _ = c.get("k").await;
    let seen = same.data_requests();
    assert!(
        seen.iter()
            .any(|h| h.contains("/store/k") || h.starts_with("GET /stream")),
        "the right identity is accepted: {seen:?}"
    );
    assert!(seen
        .iter()
        .all(|h| !h.to_ascii_lowercase().contains("authorization:")));
}

/// One RPC in a Raft batch (the wire shape of `POST /raft/batch`).
#[derive(Clone, Serialize)]
struct BatchItem {
    group: u32,
    op: u32,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

const VOTE: u32 = 1;
const TIMEOUT_NOW: u32 = 2;

/// A batch as a frame of the Raft stream (`GET /raft/stream`).
#[derive(Serialize)]
struct RaftCall {
    id: u64,
    items: Vec<BatchItem>,
}

/// Its answer.
#[derive(Deserialize)]
struct RaftReply {
    id: u64,
    answers: Vec<Result<serde_bytes::ByteBuf, String>>,
}

/// How a Raft batch travels: the stream peers use, or a POST.
#[derive(Clone, Copy, Debug)]
enum Via {
    Stream,
    Post,
}

/// Sends one Raft RPC to `node` over certificate `cert`; its answer.
async fn raft_call(
    c: &TestCluster,
    via: Via,
    node: &str,
    cert: &str,
    op: u32,
    body: Vec<u8>,
) -> Result<serde_bytes::ByteBuf, String> {
    let items = vec![BatchItem { group: 0, op, body }];
    if let Via::Stream = via {
        use tokio::io::AsyncWriteExt;
        let res = c
            .client(Some(cert), None)
            .get(format!("{}/raft/stream", c.node_url(node)))
            .header("connection", "upgrade")
            .header("upgrade", torua::stream::PROTOCOL)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut io = res.upgrade().await.unwrap();
        let frame = torua::stream::encode(&RaftCall { id: 5, items });
        io.write_all(&frame).await.unwrap();
        let mut frames = torua::stream::FrameReader::new(io, 1 << 20);
        let reply: RaftReply = tokio::time::timeout(WAIT, frames.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.id, 5);
        return reply.answers.into_iter().next().unwrap();
    }
    let bytes = c
        .client(Some(cert), None)
        .post(format!("{}/raft/batch", c.node_url(node)))
        .header("content-type", "application/x-torua-raft")
        .body(torua_raft::encode(&items).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    let answers: Vec<Result<serde_bytes::ByteBuf, String>> =
        torua_raft::decode(&bytes.bytes().await.unwrap()).unwrap();
    answers.into_iter().next().unwrap()
}

fn vote_from(name: &str) -> Vec<u8> {
    // An old term: a vote that reaches the group is answered, not granted.
    let vote = openraft::Vote::new(0, torua_raft::raft_id(name));
    let req: torua_raft::typ::VoteRequest = openraft::raft::VoteRequest::new(vote, None);
    torua_raft::encode(&req).unwrap()
}

async fn refused(c: &TestCluster, node: &str, reason: &str) -> u64 {
    let series = format!("torua_raft_rpc_refused_total{{reason=\"{reason}\"}}");
    c.node_metric(node, &series).await
}

#[derive(Deserialize)]
struct Replica {
    node_id: String,
    role: String,
}

#[tokio::test]
async fn issue_18_raft_messages_are_accepted_only_from_their_members() {
    let c = TestCluster::start(3, 1).await;
    let map: Value = c.http.get(format!("{}/shards", c.url())).send_json().await;
    let replicas: Vec<Replica> =
        serde_json::from_value(map["shards"][0]["replicas"].clone()).unwrap();
    let follower = |skip: &str| {
        replicas
            .iter()
            .find(|r| r.role == "follower" && r.node_id != skip)
            .map(|r| r.node_id.clone())
            .unwrap()
    };
    let target = follower("");
    let other = follower(&target);
    c.issue("node-n9", "node:n9");
    // Only nodes may open the Raft stream: not a client, not a coordinator.
    for cert in ["client-test", "coordinator"] {
        let res = c
            .client(Some(cert), None)
            .get(format!("{}/raft/stream", c.node_url(&target)))
            .header("connection", "upgrade")
            .header("upgrade", torua::stream::PROTOCOL)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{cert}");
    }
    for via in [Via::Stream, Via::Post] {
        refused_on(&c, via, &target, &other, &replicas).await;
    }
    // A snapshot body is a chunk, not a shard: far more is refused before
    // it is read (the answer may reach the client, or the server may stop
    // reading first and the upload breaks off).
    let r = c
        .client(Some(&format!("node-{other}")), None)
        .post(format!("{}/raft/0/snapshot", c.node_url(&target)))
        .header("content-type", "application/x-torua-raft")
        .body(vec![0u8; 64 << 20])
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    // The group kept its leader and still serves.
    assert_eq!(c.put("after", "v").await, StatusCode::NO_CONTENT);
}

/// Over `via`, `target` hands `other`'s vote to the group, and refuses a
/// vote that names another sender, one from a node that is no member and
/// a leadership hand-over from a member that does not lead.
async fn refused_on(c: &TestCluster, via: Via, target: &str, other: &str, replicas: &[Replica]) {
    let cert = |n: &str| format!("node-{n}");
    // Control: a member's vote, over its own certificate, reaches the group.
    let answer = raft_call(c, via, target, &cert(other), VOTE, vote_from(other)).await;
    assert!(answer.is_ok(), "{via:?}: {answer:?}");

    let before = |reason: &'static str| refused(c, target, reason);
    let (wrong, stranger, usurper) = (
        before("wrong_sender").await,
        before("not_member").await,
        before("not_leader").await,
    );
    let sender_refused = |answer: &Result<serde_bytes::ByteBuf, String>| {
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.starts_with("sender_refused")),
            "{via:?}: {answer:?}"
        );
    };
    // A member's certificate speaking for another member.
    let leader = replicas.iter().find(|r| r.role == "leader").unwrap();
    let vote = vote_from(&leader.node_id);
    sender_refused(&raft_call(c, via, target, &cert(other), VOTE, vote).await);
    assert_eq!(refused(c, target, "wrong_sender").await, wrong + 1);

    // A node of the cluster that is no member of the group.
    sender_refused(&raft_call(c, via, target, "node-n9", VOTE, vote_from("n9")).await);
    assert_eq!(refused(c, target, "not_member").await, stranger + 1);

    // A member that does not lead may not hand the leadership over.
    let body = torua_raft::encode(&torua_raft::raft_id(other)).unwrap();
    sender_refused(&raft_call(c, via, target, &cert(other), TIMEOUT_NOW, body).await);
    assert_eq!(refused(c, target, "not_leader").await, usurper + 1);
}

/// A certificate of the test CA whose subject is `subject`.
fn issue_subject(c: &TestCluster, file: &str, subject: &[(rcgen::DnType, &str)]) {
    let d = c.certs();
    let ca = secure::tls::dev::DevCa::load(
        torua::cli::certs::CA_NAME,
        &std::fs::read_to_string(d.join("ca.key")).unwrap(),
        &std::fs::read_to_string(d.join("ca.pem")).unwrap(),
    )
    .unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    for (t, v) in subject {
        dn.push(t.clone(), *v);
    }
    p.distinguished_name = dn;
    let now = std::time::SystemTime::now();
    p.not_before = (now - Duration::from_secs(60)).into();
    p.not_after = (now + Duration::from_secs(86_400)).into();
    let issued = ca.sign(p).unwrap();
    std::fs::write(d.join(format!("{file}.pem")), issued.cert_pem).unwrap();
    std::fs::write(d.join(format!("{file}.key")), issued.key_pem.expose()).unwrap();
}

/// A client presenting certificate `file` as it is (the product's own
/// loader would refuse some of these).
fn raw_client(c: &TestCluster, file: &str) -> reqwest::Client {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let d = c.certs();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(d.join("ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(d.join(format!("{file}.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(d.join(format!("{file}.key"))).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

#[tokio::test]
async fn issue_18_certificate_identities_are_one_common_name_read_by_oid() {
    let c = TestCluster::start(1, 1).await;
    let info = |cert: &str| {
        raw_client(&c, cert)
            .get(format!("{}/info", c.node_url("n1")))
            .send()
    };
    // Control: the coordinator's certificate may call the node API.
    assert_eq!(info("coordinator").await.unwrap().status(), StatusCode::OK);
    // No common name, but an organization that reads like one as text.
    issue_subject(
        &c,
        "comma",
        &[(rcgen::DnType::OrganizationName, "x,CN=coordinator")],
    );
    let r = info("comma").await.unwrap();
    assert_eq!(error_code(r).await.1, "missing_client_certificate");
    // Two common names: no identity at all.
    issue_subject(
        &c,
        "two",
        &[
            (rcgen::DnType::CommonName, "client:evil"),
            (rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]), "coordinator"),
        ],
    );
    let r = info("two").await.unwrap();
    assert_eq!(error_code(r).await.1, "missing_client_certificate");
}

async fn set_policy(c: &TestCluster, roles: Value) -> reqwest::Response {
    let current: Value = c
        .http
        .get(format!("{}/admin/policy", c.url()))
        .send_json()
        .await;
    let mut p = current.clone();
    p["roles"] = roles;
    c.http
        .put(format!("{}/admin/policy", c.url()))
        .json(&p)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn issue_18_grants_end_at_a_separator_and_layout_needs_monitor() {
    let c = TestCluster::start(1, 2).await;
    let grant = |prefix: &str, raw: bool| json!({"t": {"grants": [{"prefix": prefix, "actions": ["read", "write", "list"], "raw": raw}]}});
    // A prefix that does not end at a separator is refused, with the fix named.
    let r = set_policy(&c, grant("tenant1", false)).await;
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_policy")
    );
    assert!(message.contains("`tenant1/`"), "{message}");
    let r = set_policy(&c, grant("tenant1/", false)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tenant = c.client_with(&c.create_key("tenant", &["t"]).await);
    let put = |k: &str| tenant.put(c.data_url(k)).body("v").send();
    assert_eq!(
        put("tenant1/x").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put("tenant10/x").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Raw, when asked for: the bytes as written.
    let r = set_policy(&c, grant("tenant1", true)).await;
    assert_eq!(r.status(), StatusCode::OK);
    eventually("the raw grant applies", WAIT, || async {
        let s = put("tenant10/x").await.ok()?.status();
        (s == StatusCode::NO_CONTENT).then_some(())
    })
    .await;

    // The cluster's layout: `monitor` or `admin`, not a data role.
    let monitor = c.client_with(&c.create_key("mon", &["monitor"]).await);
    for path in ["/nodes", "/shards", "/metrics"] {
        let url = format!("{}{path}", c.url());
        let r = tenant.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} for a data role");
        let r = monitor.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} for monitor");
        let r = c.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} for admin");
    }
    // `monitor` reads no data.
    let r = monitor.get(c.data_url("tenant1/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn issue_18_slow_clients_are_cut_off_and_connections_are_capped() {
    let c = TestCluster::start_with(1, 1, &[("TORUA_MAX_CONNECTIONS", "200")]).await;
    let port: u16 = c.url().rsplit(':').next().unwrap().parse().unwrap();
    let tls = std::sync::Arc::new(secure::tls::client_trusting(&c.certs().join("ca.pem")).unwrap());
    let connect = || {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .unwrap()
        }
    };
    // 150 clients finish the handshake, send half a request line, stall.
    let mut slow = Vec::new();
    for _ in 0..150 {
        let mut s = connect().await;
        s.write_all(b"GET /data/x HT").await.unwrap();
        slow.push(s);
    }
    // Control: others are still served meanwhile.
    let r = c
        .anon()
        .get(format!("{}/health", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Each stalled connection is closed by the server (the header deadline
    // is 10 s; the test allows far more).
    let closed = futures::future::join_all(
        slow.iter_mut()
            .map(|s| testkit::read_until_closed(s, Duration::from_secs(60))),
    )
    .await;
    assert!(
        closed.iter().all(Option::is_some),
        "every stalled client was cut off"
    );

    // Over the cap, a connection is answered 503 with Retry-After.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(connect().await);
    }
    let mut over = connect().await;
    let said = testkit::read_until_closed(&mut over, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(
        said.contains("retry-after: 1") && said.contains("overloaded"),
        "{said}"
    );
    drop(held);
    // Control: with the held connections gone, requests are served again.
    eventually("served again", WAIT, || async {
        let r = c
            .anon()
            .get(format!("{}/health", c.url()))
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}
