//! Webhooks end to end: real receivers on loopback that check every
//! signature with an independent HMAC (Python's `hmac` module), durable
//! retries across a restart, dead letters and manual retries, secret
//! rotation, the SSRF guard, limits, and tenant isolation.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::Truxe;

#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver: records every request and answers `status`.
#[derive(Clone)]
pub(crate) struct Receiver {
    ip: &'static str,
    pub(crate) port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// Requests still to answer `500` before `status` (counted, so a test
    /// does not race the sender's retries to switch it).
    failures: Arc<AtomicUsize>,
    /// Bytes of `/big`'s endless answer the client took (as far as the
    /// socket let them go).
    big_sent: Arc<AtomicUsize>,
}

/// `/big` answers this much, in chunks sent only as the client reads.
const BIG: usize = 256 << 20;
const BIG_CHUNK: usize = 64 << 10;
/// `/slow` answers after this; the client's timeout is far shorter.
const SLOW: Duration = Duration::from_secs(30);

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1").await
    }

    /// A receiver on address `ip`, port chosen by the system.
    async fn start_on(ip: &'static str) -> Receiver {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let r = Receiver {
            ip,
            port,
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            failures: Arc::default(),
            big_sent: Arc::default(),
        };
        let me = r.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    let path = uri.path().to_owned();
                    me.got.lock().unwrap().push(Received {
                        path: path.clone(),
                        headers,
                        body,
                    });
                    match path.as_str() {
                        "/redirect" => (
                            AxStatus::FOUND,
                            [("location", format!("http://{}:{}/target", me.ip, me.port))],
                        )
                            .into_response(),
                        "/slow" => {
                            tokio::time::sleep(SLOW).await;
                            AxStatus::OK.into_response()
                        }
                        "/big" => {
                            let sent = me.big_sent.clone();
                            let chunks = futures::stream::iter(0..BIG / BIG_CHUNK).map(move |_| {
                                sent.fetch_add(BIG_CHUNK, Ordering::SeqCst);
                                Ok::<_, std::convert::Infallible>(Bytes::from(vec![
                                    b'x';
                                    BIG_CHUNK
                                ]))
                            });
                            axum::body::Body::from_stream(chunks).into_response()
                        }
                        _ if me
                            .failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok() =>
                        {
                            AxStatus::INTERNAL_SERVER_ERROR.into_response()
                        }
                        _ => AxStatus::from_u16(me.status.load(Ordering::SeqCst))
                            .unwrap()
                            .into_response(),
                    }
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Received> {
        testkit::eventually(
            &format!("{n} webhook requests"),
            Duration::from_secs(60),
            || async {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// HMAC-SHA256 by Python's standard library: independent of the Rust code.
fn python_hmac(key: &str, message: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            key,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for the independent HMAC check");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Checks a request's signature header against `secret` the receiver's
/// way: `sha256=HMAC(secret, "<X-Truxe-Timestamp>.<body>")`, any entry.
pub(crate) fn signed_by(r: &Received, secret: &str) -> bool {
    let ts = r.headers["x-truxe-timestamp"].to_str().unwrap();
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(&r.body);
    let expected = format!("sha256={}", python_hmac(secret, &msg));
    let header = r.headers["x-truxe-signature"].to_str().unwrap();
    let independent = header.split(',').any(|s| s.trim() == expected);
    // The kernel's verifier agrees with the independent computation.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let kernel = secure::webhook::verify(secret.as_bytes(), header, ts, &r.body, now, 600).is_ok();
    assert_eq!(independent, kernel, "verifiers disagree on {header}");
    independent
}

struct Setup {
    owner: String,
    org: String,
}

async fn setup(t: &Truxe, email: &str) -> Setup {
    let (owner, _) = t.register(email).await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/organizations",
            &owner,
            Some(json!({"name": email})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    Setup {
        owner,
        org: b["data"]["organization"]["id"].as_str().unwrap().to_owned(),
    }
}

/// Creates an endpoint; returns (id, secret).
async fn endpoint(t: &Truxe, s: &Setup, url: &str, events: Value) -> (String, String) {
    let (st, b) = t
        .authed(
            Method::POST,
            "/webhooks/endpoints",
            &s.owner,
            Some(json!({"orgId": s.org, "url": url, "events": events})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let secret = b["data"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (
        b["data"]["endpoint"]["id"].as_str().unwrap().to_owned(),
        secret,
    )
}

async fn rename(t: &Truxe, s: &Setup, name: &str) {
    let (st, b) = t
        .authed(
            Method::PUT,
            &format!("/organizations/{}", s.org),
            &s.owner,
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

async fn delivery(t: &Truxe, s: &Setup, id: &str) -> Value {
    let (st, b) = t
        .authed(
            Method::GET,
            &format!("/webhooks/deliveries/{id}"),
            &s.owner,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["data"].clone()
}

/// The organization's deliveries (`GET /webhooks/deliveries?orgId=`).
async fn deliveries(t: &Truxe, s: &Setup) -> (StatusCode, Value) {
    t.authed(
        Method::GET,
        &format!("/webhooks/deliveries?orgId={}", s.org),
        &s.owner,
        None,
    )
    .await
}

async fn wait_status(t: &Truxe, s: &Setup, id: &str, status: &str) -> Value {
    testkit::eventually(
        &format!("delivery {id} to be {status}"),
        Duration::from_secs(60),
        || async {
            let d = delivery(t, s, id).await;
            (d["delivery"]["status"] == status).then_some(d)
        },
    )
    .await
}

const FAST_RETRIES: [(&str, &str); 3] = [
    ("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true"),
    ("TRUXE_WEBHOOK_RETRY_BASE", "1s"),
    ("TRUXE_WEBHOOK_MAX_ATTEMPTS", "4"),
];

#[tokio::test]
async fn deliveries_are_signed_and_retried_with_the_same_bytes() {
    let rx = Receiver::start().await;
    // Two failures, then success.
    rx.failures.store(2, Ordering::SeqCst);
    let t = Truxe::start(&FAST_RETRIES).await;
    let s = setup(&t, "hooks@example.com").await;
    let (ep, secret) = endpoint(&t, &s, &rx.url("/hook"), json!(["organization.updated"])).await;
    rename(&t, &s, "Renamed Ünïcode").await;

    let got = rx.wait_for(3).await;
    let first = &got[0];
    for r in &got {
        assert_eq!(r.body, first.body, "every attempt sends the same bytes");
        assert_eq!(
            r.headers["x-truxe-delivery"],
            first.headers["x-truxe-delivery"]
        );
        assert_eq!(r.headers["x-truxe-event"], "organization.updated");
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(signed_by(r, &secret), "signature of {:?}", r.headers);
        assert!(!signed_by(r, "whsec_someone-else"));
    }
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["event"], "organization.updated");
    assert_eq!(body["organization_id"], s.org.as_str());
    assert!(body["event_id"].is_string() && body["timestamp"].is_i64());
    assert_eq!(body["data"]["target"], s.org.as_str());

    let id = first.headers["x-truxe-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    let d = wait_status(&t, &s, &id, "succeeded").await;
    let log = d["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 3, "{d}");
    let codes: Vec<i64> = log
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert!(log.iter().all(|a| a["durationMs"].is_i64()));
    assert_eq!(d["delivery"]["endpointId"], ep.as_str());
    assert_eq!(d["payload"], body);
    // Unsubscribed events are not sent: a role change goes to an endpoint
    // subscribed to it (the control), and not to this one.
    let (roles_ep, _) = endpoint(
        &t,
        &s,
        &rx.url("/roles"),
        json!(["organization.role_changed"]),
    )
    .await;
    let (status, role) = t
        .authed(
            Method::POST,
            &format!("/organizations/{}/roles", s.org),
            &s.owner,
            Some(json!({"name": "x", "permissions": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let events_of = |list: &Value, endpoint: &str| -> Vec<String> {
        list["data"]["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["endpointId"] == endpoint)
            .map(|d| d["event"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = testkit::eventually(
        "the role change's delivery",
        Duration::from_secs(30),
        || async {
            let (_, list) = deliveries(&t, &s).await;
            (!events_of(&list, &roles_ep).is_empty()).then_some(list)
        },
    )
    .await;
    assert_eq!(
        events_of(&list, &roles_ep),
        ["organization.role_changed"],
        "{list}"
    );
    assert_eq!(events_of(&list, &ep), ["organization.updated"], "{list}");
}

#[tokio::test]
async fn a_restart_in_the_middle_of_retries_loses_nothing() {
    let rx = Receiver::start().await;
    rx.status.store(503, Ordering::SeqCst);
    let mut t = Truxe::start(&[
        ("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true"),
        ("TRUXE_WEBHOOK_RETRY_BASE", "3s"),
    ])
    .await;
    let s = setup(&t, "durable@example.com").await;
    let (_, secret) = endpoint(&t, &s, &rx.url("/hook"), json!(["*"])).await;
    rename(&t, &s, "Before restart").await;
    let first = rx.wait_for(1).await[0].clone();
    let id = first.headers["x-truxe-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    // The first attempt failed and a retry is scheduled; the process goes away.
    t.restart().await;
    rx.status.store(200, Ordering::SeqCst);
    let d = wait_status(&t, &s, &id, "succeeded").await;
    assert!(d["attemptLog"].as_array().unwrap().len() >= 2, "{d}");
    let last = rx.received().last().cloned().unwrap();
    assert_eq!(last.headers["x-truxe-delivery"], id.as_str());
    assert_eq!(last.body, first.body);
    assert!(signed_by(&last, &secret));
}

#[tokio::test]
async fn dead_letters_can_be_retried_by_hand() {
    let rx = Receiver::start().await;
    rx.status.store(500, Ordering::SeqCst);
    let t = Truxe::start(&[
        ("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true"),
        ("TRUXE_WEBHOOK_RETRY_BASE", "1s"),
        ("TRUXE_WEBHOOK_MAX_ATTEMPTS", "2"),
    ])
    .await;
    let s = setup(&t, "dead@example.com").await;
    endpoint(&t, &s, &rx.url("/hook"), json!(["organization.updated"])).await;
    rename(&t, &s, "Doomed").await;
    let id = rx.wait_for(1).await[0].headers["x-truxe-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    let d = wait_status(&t, &s, &id, "dead").await;
    assert_eq!(d["attemptLog"].as_array().unwrap().len(), 2);
    assert_eq!(d["delivery"]["lastStatusCode"], 500);
    let (_, dead) = t
        .authed(
            Method::GET,
            &format!("/webhooks/deliveries?orgId={}&status=dead", s.org),
            &s.owner,
            None,
        )
        .await;
    assert_eq!(dead["data"]["deliveries"][0]["id"], id.as_str());

    rx.status.store(200, Ordering::SeqCst);
    let (st, b) = t
        .authed(
            Method::POST,
            &format!("/webhooks/deliveries/{id}/retry"),
            &s.owner,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let d = wait_status(&t, &s, &id, "succeeded").await;
    assert_eq!(d["attemptLog"].as_array().unwrap().len(), 3);
    let got = rx.received();
    assert!(got.iter().all(|r| r.body == got[0].body));
}

#[tokio::test]
async fn test_deliveries_and_secret_rotation() {
    let rx = Receiver::start().await;
    let t = Truxe::start(&FAST_RETRIES).await;
    let s = setup(&t, "rotate@example.com").await;
    let (ep, old) = endpoint(&t, &s, &rx.url("/hook"), json!(["organization.updated"])).await;
    let (st, b) = t
        .authed(
            Method::POST,
            &format!("/webhooks/endpoints/{ep}/test"),
            &s.owner,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].headers["x-truxe-event"], "webhook.test");
    assert!(signed_by(&got[0], &old));

    let (st, b) = t
        .authed(
            Method::POST,
            &format!("/webhooks/endpoints/{ep}/rotate-secret"),
            &s.owner,
            Some(json!({"overlap": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let new = b["data"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(b["data"]["endpoint"]["secretRotatingUntil"].is_string());
    assert!(
        !b["data"]["endpoint"].to_string().contains("whsec_"),
        "no secret in views"
    );
    rename(&t, &s, "During rotation").await;
    let got = rx.wait_for(2).await;
    let header = got[1].headers["x-truxe-signature"].to_str().unwrap();
    assert_eq!(header.split(',').count(), 2, "{header}");
    assert!(
        signed_by(&got[1], &new) && signed_by(&got[1], &old),
        "both secrets sign during the overlap"
    );

    // After an overlap of zero only the new secret signs.
    let (_, b) = t
        .authed(
            Method::POST,
            &format!("/webhooks/endpoints/{ep}/rotate-secret"),
            &s.owner,
            Some(json!({"overlap": 0})),
        )
        .await;
    let newest = b["data"]["secret"].as_str().unwrap().to_owned();
    rename(&t, &s, "After rotation").await;
    let got = rx.wait_for(3).await;
    assert!(signed_by(&got[2], &newest));
    assert!(!signed_by(&got[2], &new));
}

#[tokio::test]
async fn member_events_reach_their_organizations() {
    let rx = Receiver::start().await;
    let t = Truxe::start(&FAST_RETRIES).await;
    let s = setup(&t, "events@example.com").await;
    endpoint(
        &t,
        &s,
        &rx.url("/hook"),
        json!(["user.login", "membership.invited"]),
    )
    .await;
    // The owner signs in again: a member's login reaches the organization.
    let (st, _) = t.login("events@example.com", crate::server::PASSWORD).await;
    assert_eq!(st, StatusCode::OK);
    t.authed(
        Method::POST,
        &format!("/organizations/{}/invite", s.org),
        &s.owner,
        Some(json!({"email": "new@example.com"})),
    )
    .await;
    let got = rx.wait_for(2).await;
    let mut events: Vec<&str> = got
        .iter()
        .map(|r| r.headers["x-truxe-event"].to_str().unwrap())
        .collect();
    events.sort();
    assert_eq!(events, ["membership.invited", "user.login"]);
    // Someone outside the organization signing in sends nothing.
    t.register("stranger@example.com").await;
    t.login("stranger@example.com", crate::server::PASSWORD)
        .await;
    let (_, list) = deliveries(&t, &s).await;
    assert_eq!(
        list["data"]["deliveries"].as_array().unwrap().len(),
        2,
        "{list}"
    );
    let (st, b) = t
        .authed(Method::GET, "/webhooks/supported-events", &s.owner, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["data"]["events"].as_array().unwrap().len(), 33);
}

#[tokio::test]
async fn ssrf_destinations_are_refused() {
    let rx = Receiver::start().await;
    let t = Truxe::start(&[]).await;
    let s = setup(&t, "ssrf@example.com").await;
    let port = rx.port;
    let bad = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        "http://127.1.2.3/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://172.16.5.4/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        "http://2130706433/".to_owned(),
        "http://0x7f.1/".to_owned(),
        "file:///etc/passwd".to_owned(),
        "gopher://93.184.216.34/".to_owned(),
        "http://user:pw@93.184.216.34/".to_owned(),
        "not a url".to_owned(),
    ];
    for url in &bad {
        let (st, b) = t
            .authed(
                Method::POST,
                "/webhooks/endpoints",
                &s.owner,
                Some(json!({"orgId": s.org, "url": url, "events": ["*"]})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{url}: {b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains("refused"), "{url}: {b}");
        // Issue 18: what a name resolves to stays inside this network.
        if url.contains("localhost") {
            assert!(
                message.contains("loopback")
                    && !message.contains("127.0.0.1")
                    && !message.contains("::1"),
                "no DNS answer is echoed to the tenant: {message}"
            );
        }
    }
    // Changing an endpoint's URL is checked the same way (allowed here via the
    // explicit network list, then moved to a refused one).
    let t2 = Truxe::start(&[("TRUXE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")]).await;
    let s2 = setup(&t2, "ssrf2@example.com").await;
    let (ep, _) = endpoint(&t2, &s2, &rx.url("/hook"), json!(["*"])).await;
    let (st, b) = t2
        .authed(
            Method::PUT,
            &format!("/webhooks/endpoints/{ep}"),
            &s2.owner,
            Some(json!({"url": "http://127.0.0.2/"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(rx.received().is_empty(), "nothing was sent anywhere");
}

#[tokio::test]
async fn redirects_are_not_followed_and_responses_are_bounded() {
    let rx = Receiver::start().await;
    let t = Truxe::start(&[
        ("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true"),
        ("TRUXE_WEBHOOK_TIMEOUT", "1s"),
        ("TRUXE_WEBHOOK_MAX_ATTEMPTS", "1"),
    ])
    .await;
    let s = setup(&t, "limits@example.com").await;
    let mut ids = Vec::new();
    for path in ["/redirect", "/slow", "/big"] {
        let (ep, _) = endpoint(&t, &s, &rx.url(path), json!(["organization.updated"])).await;
        ids.push(ep);
    }
    rename(&t, &s, "Limits").await;
    let (_, list) = testkit::eventually(
        "three finished deliveries",
        Duration::from_secs(60),
        || async {
            let (st, b) = deliveries(&t, &s).await;
            let done = b["data"]["deliveries"].as_array().is_some_and(|a| {
                a.len() == 3
                    && a.iter()
                        .all(|d| d["status"] == "succeeded" || d["status"] == "dead")
            });
            done.then_some((st, b))
        },
    )
    .await;
    let by_endpoint = |ep: &str| {
        list["data"]["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpointId"] == ep)
            .unwrap()
            .clone()
    };
    let redirect = by_endpoint(&ids[0]);
    assert_eq!(redirect["status"], "dead");
    assert_eq!(redirect["lastStatusCode"], 302);
    assert!(redirect["lastError"].as_str().unwrap().contains("redirect"));
    assert!(
        rx.received().iter().all(|r| r.path != "/target"),
        "the redirect was not followed"
    );
    let slow = by_endpoint(&ids[1]);
    assert_eq!(slow["status"], "dead");
    assert!(
        slow["lastError"].as_str().unwrap().contains("timed out"),
        "{slow}"
    );
    // Cut off at its timeout, long before the answer would have come.
    let waited = slow["lastDurationMs"].as_i64().unwrap();
    assert!(waited < SLOW.as_millis() as i64, "{slow}");
    let big = by_endpoint(&ids[2]);
    assert_eq!(big["status"], "succeeded", "{big}");
    // Truxe read 64 KiB of the 256 MiB answer and hung up: the receiver
    // got rid of no more than that plus what the sockets buffer (a few
    // MiB on loopback), and could not send the rest.
    let sent = rx.big_sent.load(Ordering::SeqCst);
    assert!(
        sent < 32 << 20,
        "Truxe took {sent} bytes of a 256 MiB answer"
    );
}

#[tokio::test]
async fn a_name_rebound_to_a_refused_address_after_the_check_is_not_reached() {
    // The target listens on loopback, which webhooks may not reach here;
    // the control on 127.0.0.2, which this Truxe allows.
    let target = Receiver::start_on("127.0.0.1").await;
    let control = Receiver::start_on("127.0.0.2").await;
    let dir = testkit::tempdir();
    let hosts = dir.path().join("hosts");
    // When the endpoint is made, the name resolves to a public address.
    std::fs::write(
        &hosts,
        "93.184.216.34 rebind.test\n127.0.0.2 control.test\n",
    )
    .unwrap();
    let t = Truxe::start_resolving(
        &hosts,
        &[
            ("TRUXE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.2/32"),
            ("TRUXE_WEBHOOK_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let s = setup(&t, "rebind@example.com").await;
    let events = json!(["organization.updated"]);
    let url = |name: &str, rx: &Receiver| format!("http://{name}:{}/hook", rx.port);
    let (rebound, _) = endpoint(&t, &s, &url("rebind.test", &target), events.clone()).await;
    endpoint(&t, &s, &url("control.test", &control), events).await;
    // Then it answers loopback: the same file, rewritten in place (the
    // server sees it through a bind mount), a second, different answer.
    std::fs::write(&hosts, "127.0.0.1 rebind.test\n127.0.0.2 control.test\n").unwrap();
    rename(&t, &s, "Rebound").await;

    // Control: a name resolved at delivery to an allowed address is reached.
    control.wait_for(1).await;
    let id = rebound_delivery(&t, &s, &rebound).await;
    let done = testkit::eventually("the delivery to end", Duration::from_secs(60), || async {
        let d = delivery(&t, &s, &id).await;
        let status = d["delivery"]["status"].clone();
        (status == "dead" || status == "succeeded").then_some(d)
    })
    .await;
    assert!(
        target.received().is_empty(),
        "the rebound name was connected to: {done}"
    );
    assert_eq!(done["delivery"]["status"], "dead");
    let why = done["delivery"]["lastError"].as_str().unwrap_or_default();
    assert!(why.contains("loopback"), "{done}");
}

/// The id of the one delivery to endpoint `ep`, once it exists.
async fn rebound_delivery(t: &Truxe, s: &Setup, ep: &str) -> String {
    testkit::eventually("the delivery", Duration::from_secs(60), || async {
        let (_, b) = deliveries(t, s).await;
        b["data"]["deliveries"]
            .as_array()?
            .iter()
            .find(|d| d["endpointId"] == ep)
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await
}

#[tokio::test]
async fn webhooks_are_tenant_isolated() {
    let rx = Receiver::start().await;
    let t = Truxe::start(&FAST_RETRIES).await;
    let a = setup(&t, "wa@example.com").await;
    let b = setup(&t, "wb@example.com").await;
    let (ep, _) = endpoint(&t, &b, &rx.url("/hook"), json!(["organization.updated"])).await;
    rename(&t, &b, "B renamed").await;
    let d = rx.wait_for(1).await[0].headers["x-truxe-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    let cases = [
        (Method::GET, format!("/webhooks/endpoints/{ep}"), None),
        (
            Method::PUT,
            format!("/webhooks/endpoints/{ep}"),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, format!("/webhooks/endpoints/{ep}"), None),
        (Method::POST, format!("/webhooks/endpoints/{ep}/test"), None),
        (
            Method::POST,
            format!("/webhooks/endpoints/{ep}/rotate-secret"),
            None,
        ),
        (
            Method::GET,
            format!("/webhooks/endpoints?orgId={}", b.org),
            None,
        ),
        (
            Method::POST,
            "/webhooks/endpoints".to_owned(),
            Some(json!({"orgId": b.org, "url": rx.url("/x"), "events": ["*"]})),
        ),
        (
            Method::GET,
            format!("/webhooks/deliveries?orgId={}", b.org),
            None,
        ),
        (Method::GET, format!("/webhooks/deliveries/{d}"), None),
        (
            Method::POST,
            format!("/webhooks/deliveries/{d}/retry"),
            None,
        ),
    ];
    for (m, path, body) in cases {
        let (st, res) = t.authed(m.clone(), &path, &a.owner, body).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{m} {path}: {res}");
    }
    // B's endpoint is untouched and A's listing is empty.
    let (_, res) = t
        .authed(
            Method::GET,
            &format!("/webhooks/endpoints/{ep}"),
            &b.owner,
            None,
        )
        .await;
    assert_eq!(res["data"]["endpoint"]["enabled"], true);
    let (_, res) = t
        .authed(
            Method::GET,
            &format!("/webhooks/endpoints?orgId={}", a.org),
            &a.owner,
            None,
        )
        .await;
    assert_eq!(res["data"]["endpoints"], json!([]));
    assert_eq!(rx.received().len(), 1);
}

/// Issue 21: an endpoint set up with the original Truxe's event names gets
/// those events under those names; one with ours gets ours (control). A
/// sign-in from a user agent the account never used is a new device.
#[tokio::test]
async fn original_truxe_event_names_are_delivered() {
    let rx = Receiver::start().await;
    let t = Truxe::start(&FAST_RETRIES).await;
    let s = setup(&t, "compat@example.com").await;
    let original = json!([
        "session.created",
        "security.new_device_login",
        "membership.created",
        "user.password_reset",
        "session.expired"
    ]);
    endpoint(&t, &s, &rx.url("/original"), original).await;
    endpoint(
        &t,
        &s,
        &rx.url("/ours"),
        json!(["user.login", "membership.joined"]),
    )
    .await;
    // A sign-in from the same (absent) user agent as at sign-up: not a new device.
    assert_eq!(
        t.login("compat@example.com", crate::server::PASSWORD)
            .await
            .0,
        StatusCode::OK
    );
    // From another one: a new device.
    let r = t
        .http
        .post(format!("{}/api/auth/login", t.url()))
        .header("user-agent", "Other-Browser/1.0")
        .json(&json!({"email": "compat@example.com", "password": crate::server::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Someone joins: membership.joined is the original's membership.created.
    let (bob, _) = t.register("bob-compat@example.com").await;
    let (st, b) = t
        .authed(
            Method::POST,
            &format!("/organizations/{}/invite", s.org),
            &s.owner,
            Some(json!({"email": "bob-compat@example.com"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let invite = crate::server::mailed_token(&t, "bob-compat@example.com", 1).await;
    let (st, b) = t
        .authed(
            Method::POST,
            "/organizations/invitations/accept",
            &bob,
            Some(json!({"token": invite})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // Original: 2 session.created + 1 new device + 1 membership.created (and
    // Bob's own sign-up happened before he was a member: not sent).
    // Ours: 2 user.login + 1 membership.joined.
    let got = rx.wait_for(7).await;
    let named = |path: &str| {
        let mut v: Vec<(String, Value)> = got
            .iter()
            .filter(|r| r.path == path)
            .map(|r| {
                (
                    r.headers["x-truxe-event"].to_str().unwrap().to_owned(),
                    serde_json::from_slice(&r.body).unwrap(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let original = named("/original");
    let names: Vec<&str> = original.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "membership.created",
            "security.new_device_login",
            "session.created",
            "session.created"
        ]
    );
    assert_eq!(original[0].1["event"], "membership.created");
    assert_eq!(
        original[1].1["data"]["details"]["user_agent"],
        "Other-Browser/1.0"
    );
    let ours = named("/ours");
    let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["membership.joined", "user.login", "user.login"]);
    // One sign-in is two events (user.login, session.created), each with an
    // id of its own; the join is one event under two names, with one id.
    let mut ids: Vec<&str> = original
        .iter()
        .chain(ours.iter())
        .map(|(_, b)| b["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    // Nothing more was queued (e.g. a second name for the same event):
    // deliveries are queued before the action answers.
    let (_, list) = deliveries(&t, &s).await;
    assert_eq!(
        list["data"]["deliveries"].as_array().unwrap().len(),
        7,
        "{list}"
    );
    // Aliases validate; names nobody defined do not.
    let (st, b) = t
        .authed(
            Method::POST,
            "/webhooks/endpoints",
            &s.owner,
            Some(json!({"orgId": s.org, "url": rx.url("/x"), "events": ["membership.deleted", "user.signup"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.to_string().contains("user.signup"), "{b}");
}

/// Issue 20: the admin console shows an organization's members, webhooks
/// and deliveries, and sends a dead delivery again (audited).
#[tokio::test]
async fn issue_20_the_console_shows_deliveries_and_retries_a_dead_one() {
    use crate::console::{sign_in, ADMIN_PASSWORD};
    use crate::mfa::{enable_mfa, now};
    use crate::oidc::get;
    let rx = Receiver::start().await;
    rx.failures.store(usize::MAX / 2, Ordering::SeqCst);
    let t = Truxe::start(&[
        ("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true"),
        ("TRUXE_WEBHOOK_RETRY_BASE", "1s"),
        ("TRUXE_WEBHOOK_MAX_ATTEMPTS", "1"),
    ])
    .await;
    let s = setup(&t, "hooks-c@example.com").await;
    endpoint(&t, &s, &rx.url("/hook"), json!(["organization.updated"])).await;
    rename(&t, &s, "Dead Letters").await;
    let got = rx.wait_for(1).await;
    let id = got[0].headers["x-truxe-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    wait_status(&t, &s, &id, "dead").await;

    let (admin_id, admin) = t.admin("root-w@example.com").await;
    let (secret, _, step) = enable_mfa(&t, &admin).await;
    let b = crate::oidc::browser();
    let signed = sign_in(
        &b,
        &t,
        "root-w@example.com",
        ADMIN_PASSWORD,
        Some((&secret, step.max(now()) + 30)),
    )
    .await;
    assert_eq!(signed, StatusCode::SEE_OTHER);
    let (st, page) = get(&b, &t, "/admin/console/organizations?q=dead").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("Dead Letters")
            && page.contains(&format!("/admin/console/organizations/{}", s.org)),
        "{page}"
    );
    let here = format!("/admin/console/organizations/{}", s.org);
    let (_, page) = get(&b, &t, &here).await;
    assert!(
        page.contains("hooks-c@example.com") && page.contains("owner"),
        "{page}"
    );
    assert!(
        page.contains(&rx.url("/hook")) && page.contains("dead") && page.contains("Retry"),
        "{page}"
    );
    // Retried once the receiver is back: it arrives.
    rx.failures.store(0, Ordering::SeqCst);
    let mut fields: Vec<(String, String)> = crate::oidc::csrf_field(&page);
    fields.push(("back".into(), here.clone()));
    let r = crate::oidc::post_form(
        &b,
        &t,
        &format!("/admin/console/deliveries/{id}/retry"),
        &fields,
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_status(&t, &s, &id, "succeeded").await;
    let (st, body) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=webhook_delivery_retried",
            &admin,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["actor"], admin_id.as_str(), "{body}");
    // Without the form's token: refused.
    let r = crate::oidc::post_form(
        &b,
        &t,
        &format!("/admin/console/deliveries/{id}/retry"),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
