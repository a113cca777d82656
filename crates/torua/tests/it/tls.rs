//! TLS on real processes: handshakes, mutual TLS on the node API, refused
//! CAs and expired certificates, and certificate and CA rotation without a
//! restart.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use secure::tls::dev::DevCa;
use testkit::eventually;
use torua::cli::certs::CA_NAME;

use crate::cluster::{error_code, write_private, TestCluster, WAIT};

const DAY: Duration = Duration::from_secs(86_400);

/// The test CA, loaded to issue more certificates.
fn test_ca(c: &TestCluster) -> DevCa {
    let dir = c.certs();
    DevCa::load(
        CA_NAME,
        &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
    )
    .unwrap()
}

/// Writes `file.pem`/`file.key` into the test CA directory.
fn install(c: &TestCluster, file: &str, issued: &secure::tls::dev::Issued) {
    write_private(
        &c.certs().join(format!("{file}.key")),
        issued.key_pem.expose(),
    );
    std::fs::write(c.certs().join(format!("{file}.pem")), &issued.cert_pem).unwrap();
}

/// A client trusting `ca_pem` and presenting `issued`.
fn client(ca_pem: &str, issued: Option<&secure::tls::dev::Issued>) -> reqwest::Client {
    let dir = testkit::tempdir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let tls = match issued {
        Some(i) => {
            let files = secure::tls::TlsFiles {
                cert: dir.path().join("c.pem"),
                key: dir.path().join("c.key"),
                ca: ca.clone(),
            };
            std::fs::write(&files.cert, &i.cert_pem).unwrap();
            std::fs::write(&files.key, i.key_pem.expose()).unwrap();
            (*secure::tls::load(&files, secure::tls::ClientAuth::Optional)
                .unwrap()
                .client)
                .clone()
        }
        None => secure::tls::client_trusting(&ca).unwrap(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

async fn cert_expiry_seconds(c: &TestCluster) -> f64 {
    let text = c.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("torua_tls_expiry_seconds{file=\"cert\"} "))
        .unwrap_or_else(|| panic!("no expiry metric in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn tls_everywhere_and_the_node_api_answers_only_the_coordinator() {
    let c = TestCluster::start(1, 4).await;
    assert_eq!(c.put("k", "v").await, StatusCode::NO_CONTENT);

    // Plain HTTP gets no answer from a TLS listener.
    let plain = format!("http://127.0.0.1:{}/health", c.coord_port);
    assert!(reqwest::get(&plain).await.is_err());
    // A client that trusts another CA refuses the server.
    let stranger = DevCa::new("Another CA", SystemTime::now() + DAY).unwrap();
    let wrong_ca = client(&stranger.cert_pem, None);
    let err = wrong_ca
        .get(format!("{}/health", c.url()))
        .send()
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // The node API: open probes, then only the coordinator's certificate.
    let info = format!("{}/info", c.node_url("n1"));
    assert_eq!(
        c.anon()
            .get(format!("{}/health", c.node_url("n1")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (status, code, _) = error_code(c.anon().get(&info).send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "missing_client_certificate")
    );
    let as_client = c.client(Some("client-test"), None);
    let (status, _, message) = error_code(as_client.get(&info).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("client:test"), "{message}");
    let put = as_client
        .put(format!("{}/shard/0/store/k", c.node_url("n1")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        StatusCode::FORBIDDEN,
        "no write behind the coordinator's back"
    );
    assert_eq!(c.get("k").await.1, "v");
    assert_eq!(
        c.http.get(&info).send().await.unwrap().status(),
        StatusCode::OK
    );
    // A certificate from another CA does not even complete the handshake.
    let foreign = stranger
        .issue(
            "coordinator",
            &["127.0.0.1"],
            SystemTime::now(),
            SystemTime::now() + DAY,
        )
        .unwrap();
    let ca_pem = std::fs::read_to_string(c.certs().join("ca.pem")).unwrap();
    assert!(client(&ca_pem, Some(&foreign))
        .get(&info)
        .send()
        .await
        .is_err());

    // Nodes register by their certificate, each only as itself.
    let node_cert = c.client(Some("node-n1"), None);
    let register = |id: &str, addr: String| {
        node_cert
            .post(format!("{}/register", c.url()))
            .json(&serde_json::json!({"node": {"id": id, "addr": addr}}))
            .send()
    };
    assert_eq!(
        register("n1", c.node_url("n1")).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, _, message) = error_code(
        register("evil", "https://127.0.0.1:1".into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    assert_eq!(c.nodes().await.nodes.len(), 1);
}

#[tokio::test]
async fn certificates_and_cas_rotate_without_restart_and_expired_ones_are_refused() {
    let c = TestCluster::start(1, 4).await;
    let ca = test_ca(&c);
    let info = format!("{}/info", c.node_url("n1"));
    let before = cert_expiry_seconds(&c).await;
    assert!(before > 29.0 * 86_400.0, "{before}");

    // A new coordinator certificate (valid 10 days) is picked up by itself.
    let now = SystemTime::now();
    install(
        &c,
        "coordinator",
        &ca.issue("coordinator", &["127.0.0.1"], now, now + 10 * DAY)
            .unwrap(),
    );
    eventually("the coordinator reloads its certificate", WAIT, || async {
        (cert_expiry_seconds(&c).await < 11.0 * 86_400.0).then_some(())
    })
    .await;
    // It still calls its node (its new certificate is the coordinator's).
    assert_eq!(c.put("after-rotation", "v").await, StatusCode::NO_CONTENT);

    // An expired certificate: a client presenting one is refused by the node...
    let expired = ca
        .issue("coordinator", &["127.0.0.1"], now - 10 * DAY, now - DAY)
        .unwrap();
    let ca_pem = std::fs::read_to_string(c.certs().join("ca.pem")).unwrap();
    let refused = client(&ca_pem, Some(&expired))
        .get(&info)
        .send()
        .await
        .expect_err("the node accepted an expired client certificate");
    // Refused for its certificate (the node's alert), not for anything else.
    assert!(
        error_chain(&refused).contains("CertificateExpired"),
        "{}",
        error_chain(&refused)
    );
    // ...and a server presenting one is refused by clients.
    install(&c, "coordinator", &expired);
    eventually(
        "clients refuse the expired server certificate",
        WAIT,
        || async {
            let e = c
                .anon()
                .get(format!("{}/health", c.url()))
                .send()
                .await
                .err()?;
            // The certificate's expiry, not a refused connection.
            error_chain(&e)
                .contains("invalid peer certificate: certificate expired")
                .then_some(())
        },
    )
    .await;
    install(
        &c,
        "coordinator",
        &ca.issue("coordinator", &["127.0.0.1"], now, now + 30 * DAY)
            .unwrap(),
    );
    // A valid certificate serves again.
    testkit::wait_ok_with(&c.anon(), &format!("{}/health", c.url()), WAIT).await;

    // CA rotation: certificates of a new CA are trusted once the bundle
    // holds both CAs, while those of the old one keep working.
    let next_ca = DevCa::new(CA_NAME, now + 365 * DAY).unwrap();
    let next_cert = next_ca
        .issue("coordinator", &["127.0.0.1"], now, now + 30 * DAY)
        .unwrap();
    let both = format!("{ca_pem}{}", next_ca.cert_pem);
    let rotating = client(&both, Some(&next_cert));
    assert!(rotating.get(&info).send().await.is_err(), "not trusted yet");
    std::fs::write(c.certs().join("ca.pem"), &both).unwrap();
    eventually("the node trusts the new CA", WAIT, || async {
        let r = rotating.get(&info).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    let old = c.client(Some("coordinator"), None);
    assert_eq!(
        old.get(&info).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(c.get("after-rotation").await.1, "v");
}

/// When the certificate node `id` serves now ends: read from a fresh
/// handshake, not from anything the node says of itself.
async fn served_not_after(c: &TestCluster, id: &str) -> SystemTime {
    let fresh = c
        .client_builder(Some("coordinator"), None)
        .tls_info(true)
        .build()
        .unwrap();
    let res = fresh
        .get(format!("{}/health", c.node_url(id)))
        .send()
        .await
        .unwrap();
    let der = res
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .expect("the node's certificate")
        .to_vec();
    let (name, not_after) = secure::tls::inspect(&der.into()).unwrap();
    assert_eq!(name.as_deref(), Some(format!("node:{id}").as_str()));
    not_after
}

#[tokio::test]
async fn a_node_reloads_its_own_certificate_without_restart() {
    let c = TestCluster::start(1, 4).await;
    let pid = c.node_pid("n1");
    let now = SystemTime::now();
    assert!(served_not_after(&c, "n1").await > now + 29 * DAY);
    let ca = test_ca(&c);
    install(
        &c,
        "node-n1",
        &ca.issue("node:n1", &["127.0.0.1"], now, now + 10 * DAY)
            .unwrap(),
    );
    eventually("the node serves its new certificate", WAIT, || async {
        (served_not_after(&c, "n1").await < now + 11 * DAY).then_some(())
    })
    .await;
    assert_eq!(c.node_pid("n1"), pid, "the node was restarted");
    // Control: it serves on.
    assert_eq!(c.put("after-rotation", "v").await, StatusCode::NO_CONTENT);
    assert_eq!(c.get("after-rotation").await.1, "v");
}

/// An error and every error under it, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// Opens the node's data stream as `client`: the connection after `101`,
/// or the status the node answered instead.
async fn open_stream(
    client: &reqwest::Client,
    node_url: &str,
) -> Result<reqwest::Upgraded, StatusCode> {
    let res = client
        .get(format!("{node_url}{}", torua::stream::PATH))
        .header(reqwest::header::CONNECTION, "upgrade")
        .header(reqwest::header::UPGRADE, torua::stream::PROTOCOL)
        .send()
        .await
        .unwrap();
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(res.status());
    }
    Ok(res.upgrade().await.unwrap())
}

/// Sends one request frame and reads the answer to it.
async fn ask(io: &mut reqwest::Upgraded, id: u64, op: torua::stream::Op) -> torua::stream::Answer {
    use tokio::io::AsyncWriteExt;
    let frame = torua::stream::encode(&torua::stream::Request { id, shard: 0, op });
    io.write_all(&frame).await.unwrap();
    let mut frames = torua::stream::FrameReader::new(io, 64 << 20);
    let res: torua::stream::Response = tokio::time::timeout(WAIT, frames.next())
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer before the end");
    assert_eq!(res.id, id);
    res.answer
}

#[tokio::test]
async fn the_data_stream_answers_only_the_coordinator_and_checks_what_it_is_sent() {
    use torua::stream::{Answer, Op, Precondition};
    let c = TestCluster::start(1, 1).await;
    let node = c.node_url("n1");
    // Attacks: no certificate, a client's and another node's certificate.
    assert_eq!(
        open_stream(&c.anon(), &node).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let as_client = c.client(Some("client-test"), None);
    assert_eq!(
        open_stream(&as_client, &node).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    c.issue("node-n2", "node:n2");
    let as_node = c.client(Some("node-n2"), None);
    assert_eq!(
        open_stream(&as_node, &node).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    // Without the upgrade the path is refused too.
    let plain = c.http.get(format!("{node}/stream")).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::UPGRADE_REQUIRED);

    // Control: the coordinator's certificate opens it, and it writes and reads.
    let mut io = open_stream(&c.http, &node)
        .await
        .expect("the coordinator's stream");
    let put = Op::Put {
        key: "ключ".into(),
        content_type: "text/plain".into(),
        value: b"v1".to_vec(),
        when: Precondition::Absent,
    };
    let Answer::Written { version } = ask(&mut io, 1, put.clone()).await else {
        panic!("not written");
    };
    let get = Op::Get {
        key: "ключ".into(),
        stale: false,
    };
    match ask(&mut io, 2, get).await {
        Answer::Value {
            version: v,
            value,
            content_type,
        } => {
            assert_eq!(
                (v, value.as_slice(), content_type.as_str()),
                (version, &b"v1"[..], "text/plain")
            );
        }
        other => panic!("{other:?}"),
    }
    // The precondition holds at the node: the key exists now.
    assert!(matches!(
        ask(&mut io, 3, put).await,
        Answer::Refused { status: 412, .. }
    ));
    // What the HTTP routes refuse, the stream refuses alike.
    let bad = [
        (
            Op::Get {
                key: "..".into(),
                stale: false,
            },
            400,
            "invalid_key",
        ),
        (
            Op::Delete {
                key: String::new(),
                when: Precondition::Any,
            },
            400,
            "invalid_key",
        ),
        (
            Op::Delete {
                key: "k".into(),
                when: Precondition::Keep(3),
            },
            400,
            "invalid_precondition",
        ),
        (
            Op::Put {
                key: "k".into(),
                content_type: "text/plain\n".into(),
                value: vec![],
                when: Precondition::Any,
            },
            400,
            "invalid_content_type",
        ),
        (
            Op::Put {
                key: "k".into(),
                content_type: "text/plain".into(),
                value: vec![0; crate::cluster::MAX_VALUE + 1],
                when: Precondition::Any,
            },
            413,
            "payload_too_large",
        ),
    ];
    for (i, (op, status, code)) in bad.into_iter().enumerate() {
        match ask(&mut io, 10 + i as u64, op).await {
            Answer::Refused {
                status: s, code: c, ..
            } => assert_eq!((s, c.as_str()), (status, code)),
            other => panic!("{other:?}"),
        }
    }
    // A frame longer than any value may be is not read: the node closes
    // the stream, and the node goes on serving.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        io.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, io.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    let mut garbage = open_stream(&c.http, &node).await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        garbage
            .write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, garbage.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    assert_eq!(c.get("ключ").await.1, "v1");
}
