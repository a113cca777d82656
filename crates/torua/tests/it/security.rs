//! Authentication, authorization, rate limits and the audit log, on real
//! coordinator, node and Truxe processes.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{eventually, free_port, wait_http_ok, ChildGuard};

use crate::cluster::{error_code, SendJson, TestCluster, COORD, WAIT};

const TORUA: &str = env!("CARGO_BIN_EXE_torua");

/// The policy used by these tests.
fn policy(version: u64) -> Value {
    json!({
        "version": version,
        "roles": {
            "app": {"grants": [{"prefix": "app/", "actions": ["read", "write", "delete", "list"]}]},
            "reader": {"grants": [{"prefix": "pub/", "actions": ["read", "list"]}]},
            "slow": {"grants": [{"prefix": "slow/", "actions": ["read"]}], "quota": "5/1h"}
        },
        "token_roles": {"user": ["reader"], "admin": ["admin"]},
    })
}

async fn set_policy(c: &TestCluster, doc: &Value) -> Value {
    let r = c
        .http
        .put(format!("{}/admin/policy", c.url()))
        .json(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Status and error code of a request.
async fn outcome(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    error_code(req.send().await.unwrap()).await
}

#[tokio::test]
async fn missing_bad_revoked_and_expired_credentials_get_401() {
    let c = TestCluster::start(1, 4).await;
    let anon = c.anon();
    let url = c.data_url("app/x");

    let r = anon.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer realm=\"torua\""
    );
    assert_eq!(error_code(r).await.1, "missing_credentials");
    // Probes stay open, unknown routes stay 404.
    assert_eq!(
        anon.get(format!("{}/ready", c.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        anon.get(format!("{}/health", c.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    for path in ["/metrics", "/nodes", "/shards", "/data", "/whoami"] {
        assert_eq!(
            outcome(anon.get(format!("{}{path}", c.url()))).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }

    let forged = format!("torua_{}_{}", "0123456789ab", "x".repeat(43));
    for (header, code) in [
        ("Basic dXNlcjpwdw==".to_string(), "invalid_credentials"),
        ("Bearer ".to_string(), "invalid_credentials"),
        (format!("Bearer {forged}"), "invalid_api_key"),
        ("Bearer not-a-jwt".to_string(), "invalid_token"),
    ] {
        let r = anon
            .get(&url)
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
        let (_, got, message) = error_code(r).await;
        assert_eq!(got, code, "{header}: {message}");
        assert!(!message.contains(&forged), "no secret echoed");
    }
    // A header value that is not visible ASCII.
    let r = anon
        .get(&url)
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "invalid_credentials");

    // A key works until it is revoked.
    let key = c.create_key("short-lived", &["admin"]).await;
    let id = key[6..18].to_owned();
    let holder = c.client_with(&key);
    assert_eq!(
        holder.put(&url).body("v").send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let revoked = c
        .http
        .delete(format!("{}/admin/apikeys/{id}", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        outcome(holder.get(&url)).await,
        (
            StatusCode::UNAUTHORIZED,
            "api_key_revoked".into(),
            "API key was revoked".into()
        )
    );
    let listed: Value = testkit::get_json(&c.http, &format!("{}/admin/apikeys", c.url())).await;
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["state"], "revoked");
    assert!(
        !listed.to_string().contains(&key[18..]),
        "listing never shows secrets"
    );

    // A key with an expiry is refused once it passes.
    let r = c
        .http
        .post(format!("{}/admin/apikeys", c.url()))
        .json(&json!({"name": "one-second", "roles": ["admin"], "expires_in": "1s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let brief = c.client_with(r.json::<Value>().await.unwrap()["key"].as_str().unwrap());
    eventually("the key expires", WAIT, || async {
        let (status, code, _) = outcome(brief.get(&url)).await;
        (status == StatusCode::UNAUTHORIZED && code == "api_key_expired").then_some(())
    })
    .await;

    // Bad key requests are refused with the field named.
    for (body, code) in [
        (json!({"name": "x", "roles": []}), "invalid_roles"),
        (json!({"name": "x", "roles": ["ghost"]}), "unknown_role"),
        (json!({"name": "", "roles": ["admin"]}), "invalid_name"),
        (
            json!({"name": "x", "roles": ["admin"], "expires_in": "soon"}),
            "invalid_expiry",
        ),
        (
            json!({"name": "x", "roles": ["admin"], "extra": 1}),
            "invalid_json",
        ),
    ] {
        let r = c
            .http
            .post(format!("{}/admin/apikeys", c.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await.1, code, "{body}");
    }
    let r = c
        .http
        .delete(format!("{}/admin/apikeys/nope", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn roles_limit_keys_to_their_prefixes_and_policy_changes_apply_at_once() {
    let c = TestCluster::start(2, 8).await;
    let stored = set_policy(&c, &policy(1)).await;
    assert_eq!(stored["version"], 2);
    let app = c.client_with(&c.create_key("app", &["app"]).await);
    let reader = c.client_with(&c.create_key("reader", &["reader"]).await);
    for k in ["app/1", "app/2", "pub/1", "pub/2", "secret/1"] {
        assert_eq!(c.put(k, "v").await, StatusCode::NO_CONTENT);
    }

    assert_eq!(
        app.put(c.data_url("app/3"))
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let (status, code, message) = outcome(app.put(c.data_url("secret/1")).body("x")).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(
        message.contains("`write`") && message.contains("secret/1"),
        "names permission and key: {message}"
    );
    assert_eq!(c.get("secret/1").await.1, "v", "nothing written");
    let (status, _, message) = outcome(reader.delete(c.data_url("pub/1"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("`delete`"), "{message}");
    assert_eq!(
        reader
            .get(c.data_url("pub/1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Listing shows only what may be listed.
    let list = |client: &reqwest::Client, prefix: &str| {
        client
            .get(format!("{}/data", c.url()))
            .query(&[("prefix", prefix)])
    };
    let page: Value = list(&app, "").send_json().await;
    assert_eq!(page["keys"], json!(["app/1", "app/2", "app/3"]));
    let page: Value = list(&reader, "pub/").send_json().await;
    assert_eq!(page["keys"], json!(["pub/1", "pub/2"]));
    let (status, _, message) = outcome(list(&reader, "secret/")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains("`list`") && message.contains("secret/"),
        "{message}"
    );
    let page: Value = list(&c.http, "").send_json().await;
    assert_eq!(page["keys"].as_array().unwrap().len(), 6, "admin sees all");

    // Administration needs admin.
    let admin_calls = [
        app.post(format!("{}/shards/assign", c.url()))
            .json(&json!({"shard_id": 0, "node_id": "n1"})),
        app.post(format!("{}/broadcast", c.url()))
            .json(&json!({"path": "/control", "payload": {}})),
        app.delete(format!("{}/nodes/n1", c.url())),
        app.get(format!("{}/admin/policy", c.url())),
        app.put(format!("{}/admin/policy", c.url()))
            .json(&policy(2)),
        app.get(format!("{}/admin/apikeys", c.url())),
        app.post(format!("{}/admin/apikeys", c.url()))
            .json(&json!({"name": "x", "roles": ["admin"]})),
        app.post(format!("{}/register", c.url()))
            .json(&json!({"node": {"id": "evil", "addr": "http://127.0.0.1:1"}})),
    ];
    for req in admin_calls {
        let (status, code, message) = outcome(req).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        assert!(message.contains("`admin`"), "{message}");
    }
    assert_eq!(c.nodes().await.nodes.len(), 2, "no node slipped in");
    let me: Value = testkit::get_json(&app, &format!("{}/whoami", c.url())).await;
    assert_eq!(me["roles"], json!(["app"]));
    assert_eq!(me["kind"], "api_key");

    // A policy change applies from the next request: the reader may now write.
    let mut next = policy(2);
    next["roles"]["reader"]["grants"][0]["actions"] = json!(["read", "list", "write"]);
    assert_eq!(set_policy(&c, &next).await["version"], 3);
    assert_eq!(
        reader
            .put(c.data_url("pub/3"))
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    // A stale version and a bad policy are refused, and change nothing.
    let stale = c
        .http
        .put(format!("{}/admin/policy", c.url()))
        .json(&policy(2))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(stale).await.1, "version_conflict");
    let mut bad = policy(3);
    bad["roles"]["app"]["grants"][0]["actions"] = json!(["fly"]);
    let (status, code, _) =
        outcome(c.http.put(format!("{}/admin/policy", c.url())).json(&bad)).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let mut bad = policy(3);
    bad["token_roles"]["x"] = json!(["ghost"]);
    let (status, code, message) =
        outcome(c.http.put(format!("{}/admin/policy", c.url())).json(&bad)).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_policy")
    );
    assert!(message.contains("ghost"), "{message}");
    let now: Value = testkit::get_json(&c.http, &format!("{}/admin/policy", c.url())).await;
    assert_eq!(now["version"], 3);
}

#[tokio::test]
async fn a_flood_from_one_principal_does_not_slow_another() {
    let c = TestCluster::start(1, 4).await;
    set_policy(&c, &policy(1)).await;
    let slow = c.client_with(&c.create_key("slow", &["slow"]).await);
    let app = c.client_with(&c.create_key("app", &["app"]).await);
    assert_eq!(c.put("app/k", "v").await, StatusCode::NO_CONTENT);

    let flood = {
        let (slow, url) = (slow.clone(), c.data_url("slow/k"));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..40 {
                let r = slow.get(&url).send().await.unwrap();
                statuses.push((
                    r.status(),
                    r.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    r.headers()
                        .get("ratelimit-limit")
                        .map(|v| v.to_str().unwrap().to_owned()),
                ));
            }
            statuses
        })
    };
    for _ in 0..40 {
        let r = app.get(c.data_url("app/k")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the other principal proceeds");
        assert!(r.headers().contains_key("ratelimit-remaining"));
    }
    let statuses = flood.await.unwrap();
    let limited: Vec<_> = statuses
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(statuses.len() - limited.len(), 5, "the role quota is 5/1h");
    for (_, retry_after, limit) in limited {
        let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=3600).contains(&secs));
        assert_eq!(limit.as_deref(), Some("5"));
    }
}

#[tokio::test]
async fn each_address_is_limited_and_failed_authentications_count() {
    // Ten requests an hour per address: no token comes back during the
    // test. No nodes, so nothing else calls the coordinator; the test's
    // clients each send from an address of their own.
    let c = TestCluster::start_with(0, 4, &[("TORUA_RATE_LIMIT_IP", "10/1h")]).await;
    let from = |last: u8, key: &str| {
        c.client_builder(None, Some(key))
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap()
    };
    let url = format!("{}/shards", c.url());

    // A guesser at 127.0.0.3: ten wrong keys, each refused as such...
    let guesser = from(3, "trx_wrong");
    for i in 0..10 {
        let r = guesser.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // ...and then even the right key is refused from that address.
    let (status, code, message) = outcome(from(3, &c.admin_key).get(&url)).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(message.contains("127.0.0.3"), "{message}");

    // A client at 127.0.0.4 with the right key: ten answers, then 429
    // with the time to wait.
    let busy = from(4, &c.admin_key);
    for i in 0..10 {
        let r = busy.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
    }
    let r = busy.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "retry after {retry} s");

    // Control: the same key from another address is served; the limit is
    // the address's, not the principal's.
    let r = from(5, &c.admin_key).get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn audit_log_records_with_context_and_detects_tampering() {
    let c = TestCluster::start_with(1, 4, &[("TORUA_AUDIT_DATA", "on")]).await;
    set_policy(&c, &policy(1)).await;
    let reader = c.client_with(&c.create_key("reader", &["reader"]).await);
    let r = reader
        .put(c.data_url("pub/denied"))
        .header("x-request-id", "req-denied-1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["x-request-id"], "req-denied-1");
    let r = c
        .anon()
        .get(c.data_url("pub/x"))
        .bearer_auth("torua_000000000000_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.put("pub/seen", "v").await, StatusCode::NO_CONTENT);

    let log = c.dir.path().join("coordinator/audit.jsonl");
    let entries = eventually("audit entries are written", WAIT, || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let entries: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        entries
            .iter()
            .any(|e| e["action"] == "data.write" && e["target"] == "pub/seen")
            .then_some(entries)
    })
    .await;
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} entry"))
            .clone()
    };
    let denied = find("authorize");
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["target"], "pub/denied");
    assert_eq!(denied["request_id"], "req-denied-1");
    assert_eq!(denied["ip"], "127.0.0.1");
    assert_eq!(denied["details"]["permission"], "write");
    assert!(denied["actor"].as_str().unwrap().starts_with("key:"));
    let failed = find("authenticate");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["details"]["reason"], "invalid_api_key");
    for action in ["policy.set", "apikey.create", "node.register"] {
        assert_eq!(find(action)["outcome"], "success", "{action}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("torua_000000000000_nope"),
        "no credential in the log"
    );
    assert!(
        !text.contains(&c.admin_key[18..]),
        "no key secret in the log"
    );

    // The MAC key lives beside the log here, never in it.
    let key_file = c.dir.path().join("coordinator/audit.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(!text.contains(key.trim()), "no key in the log");
    let checkpoint = c.dir.path().join("coordinator/audit.checkpoint");
    let verify_with = |path: &std::path::Path, extra: &[&std::ffi::OsStr]| {
        Command::new(TORUA)
            .args(["audit", "verify"])
            .arg(path)
            .arg("--key-file")
            .arg(&key_file)
            .args(extra)
            .output()
            .unwrap()
    };
    let verify = |path: &std::path::Path| verify_with(path, &[]);
    // As the README runs it: key and checkpoint found beside the log.
    let ok = Command::new(TORUA)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("chain intact"));

    // An edited copy is caught at the edited line.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("req-denied-1"))
        .unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[at] = edited[at].replace("\"denied\"", "\"success\"");
    let copy = c.dir.path().join("edited.jsonl");
    std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
    let bad = verify(&copy);
    assert_eq!(bad.status.code(), Some(1));
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(
        report.contains(&format!("line {}", at + 1)) && report.contains("altered"),
        "{report}"
    );
    // So is a removed line.
    let mut removed: Vec<&str> = lines.clone();
    removed.remove(1);
    std::fs::write(&copy, removed.join("\n") + "\n").unwrap();
    let bad = verify(&copy);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("line 2"));
    // Issue 18: a tail cut off leaves a valid chain, which the checkpoint
    // (kept apart from the log) still catches.
    let cp = eventually(
        "the checkpoint reaches the end of the log",
        WAIT,
        || async {
            let c: Value = serde_json::from_slice(&std::fs::read(&checkpoint).ok()?).ok()?;
            (c["seq"].as_u64()? == lines.len() as u64).then_some(c)
        },
    )
    .await;
    assert!(cp["sig"].is_string());
    std::fs::write(&copy, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    assert!(
        verify(&copy).status.success(),
        "control: a shorter chain is still a chain"
    );
    let bad = verify_with(&copy, &["--checkpoint".as_ref(), checkpoint.as_os_str()]);
    assert_eq!(bad.status.code(), Some(1));
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(report.contains("cut off"), "{report}");
    // And whoever rewrites an entry cannot make its MAC without the key.
    let mut rehashed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    rehashed[at] = rehashed[at].replace("\"denied\"", "\"success\"");
    std::fs::write(&copy, rehashed.join("\n") + "\n").unwrap();
    assert_eq!(verify(&copy).status.code(), Some(1));
}

/// A real `truxe serve` for the token tests.
struct Truxe {
    url: String,
    dir: std::path::PathBuf,
    _child: ChildGuard,
}

fn truxe_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(TORUA).with_file_name("truxe");
    assert!(
        bin.is_file(),
        "{} is missing: run the suite with `cargo test --workspace` (as scripts/test does)",
        bin.display()
    );
    bin
}

impl Truxe {
    async fn start(log_dir: &std::path::Path, env: &[(&str, &str)]) -> Truxe {
        let port = free_port();
        let dir = log_dir.join("truxe");
        let mut cmd = Command::new(truxe_bin());
        cmd.arg("serve")
            .env("TRUXE_DEV_MAILBOX", "on")
            .env("PORT", port.to_string())
            .env("TRUXE_DATA_DIR", &dir)
            .env("TRUXE_ARGON2_MEMORY_KIB", "1024")
            .env("TRUXE_ARGON2_ITERATIONS", "1")
            .env("JWT_ALGORITHM", "EdDSA")
            .envs(env.iter().copied());
        let child = ChildGuard::spawn("truxe", cmd, log_dir);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{url}/ready"), WAIT).await;
        Truxe {
            url,
            dir,
            _child: child,
        }
    }

    /// Registers `email` and logs in; returns the access token.
    async fn token(&self, email: &str) -> String {
        let http = reqwest::Client::new();
        let creds = json!({"email": email, "password": "Correct-Horse-9"});
        let r = http
            .post(format!("{}/api/auth/register", self.url))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "register: {}", r.status());
        self.login(email).await
    }

    /// Proves `email`'s address through the mail Truxe sends (the
    /// development mailbox), with a session's `access` token.
    async fn verify(&self, email: &str, access: &str) {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/api/auth/email/send-verification", self.url))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "send-verification: {}", r.status());
        let url = format!("{}/dev/mailbox?to={email}", self.url);
        let text = eventually("the verification mail", WAIT, || async {
            let body: Value = testkit::get_json(&http, &url).await;
            body["messages"][0]["text"].as_str().map(str::to_owned)
        })
        .await;
        let token: String = text[text.find("token=").unwrap() + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let r = http
            .get(format!("{}/api/auth/email/verify", self.url))
            .query(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    async fn login(&self, email: &str) -> String {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/api/auth/login", self.url))
            .json(&json!({"email": email, "password": "Correct-Horse-9"}))
            .send_json()
            .await;
        body["data"]["tokens"]["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_owned()
    }
}

/// The claims of a JWT, unverified (the test's own view of its token).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn issue_18_an_unproven_address_gains_no_roles() {
    let dir = testkit::tempdir();
    let truxe = Truxe::start(dir.path(), &[]).await;
    let jwks = format!("{}/.well-known/jwks.json", truxe.url);
    let c = TestCluster::start_with(
        1,
        2,
        &[
            ("TORUA_JWKS_URL", jwks.as_str()),
            ("TORUA_JWT_ISSUER", truxe.url.as_str()),
        ],
    )
    .await;
    // Names carry their kind: a bare address is refused.
    let mut p = policy(1);
    p["subjects"] = json!({"victim@example.com": ["app"]});
    let r = c
        .http
        .put(format!("{}/admin/policy", c.url()))
        .json(&p)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_policy")
    );
    assert!(message.contains("email:"), "{message}");
    p["subjects"] = json!({"email:victim@example.com": ["app"]});
    set_policy(&c, &p).await;

    // Anyone may sign up with the victim's address; until it is proven,
    // the address stands for nobody.
    let token = truxe.token("victim@example.com").await;
    assert_eq!(claims(&token)["email_verified"], false);
    let (status, _, message) =
        outcome(c.client_with(&token).put(c.data_url("app/owned")).body("x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    // Control: once the owner proves it, the mapping applies.
    truxe.verify("victim@example.com", &token).await;
    let proven = truxe.login("victim@example.com").await;
    assert_eq!(claims(&proven)["email_verified"], true);
    let r = c
        .client_with(&proven)
        .put(c.data_url("app/owned"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn truxe_tokens_are_verified_against_its_jwks() {
    let dir = testkit::tempdir();
    let truxe = Truxe::start(
        dir.path(),
        &[
            ("JWT_ACCESS_TOKEN_TTL", "10s"),
            ("TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", "1000/1m"),
            ("TRUXE_RATE_LIMIT_LOGIN_IP", "1000/1m"),
        ],
    )
    .await;
    let jwks = format!("{}/.well-known/jwks.json", truxe.url);
    let c = TestCluster::start_with(
        1,
        4,
        &[
            ("TORUA_JWKS_URL", jwks.as_str()),
            ("TORUA_JWT_ISSUER", truxe.url.as_str()),
        ],
    )
    .await;
    let writer_token = truxe.token("writer@example.com").await;
    let mut p = policy(1);
    p["subjects"] =
        json!({format!("sub:{}", claims(&writer_token)["sub"].as_str().unwrap()): ["app"]});
    set_policy(&c, &p).await;
    assert_eq!(c.put("pub/doc", "hello").await, StatusCode::NO_CONTENT);

    // Truxe's `user` role maps to `reader`: it may read pub/, nothing more.
    let token = truxe.token("reader@example.com").await;
    let user = c.client_with(&token);
    let r = user.get(c.data_url("pub/doc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "hello");
    let (status, _, message) = outcome(user.put(c.data_url("app/x")).body("v")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.starts_with("user:"), "{message}");
    let me: Value = testkit::get_json(&user, &format!("{}/whoami", c.url())).await;
    assert_eq!(me["kind"], "token");
    assert_eq!(me["roles"], json!(["reader"]));
    // A subject mapping adds roles to one user.
    let writer = c.client_with(&writer_token);
    assert_eq!(
        writer
            .put(c.data_url("app/x"))
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );

    // Tampered: one changed character in the payload.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mid = parts[1].len() / 2;
    let flipped = if &parts[1][mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    parts[1].replace_range(mid..mid + 1, flipped);
    let (status, code, _) =
        outcome(c.client_with(&parts.join(".")).get(c.data_url("pub/doc"))).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // Wrong issuer: a coordinator pinned to another issuer refuses Truxe's token.
    let other_dir = testkit::tempdir();
    let other_port = free_port();
    let mut cmd = Command::new(COORD);
    cmd.env("COORDINATOR_ADDR", format!("127.0.0.1:{other_port}"))
        .env("TORUA_TLS", "off")
        .env("TORUA_DATA_DIR", other_dir.path().join("coordinator"))
        .env("TORUA_JWKS_URL", &jwks)
        .env("TORUA_JWT_ISSUER", "https://issuer.example.com");
    let _other = ChildGuard::spawn("other-coordinator", cmd, other_dir.path());
    let other = format!("http://127.0.0.1:{other_port}");
    wait_http_ok(&format!("{other}/health"), WAIT).await;
    let (status, _, message) = outcome(user.get(format!("{other}/whoami"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("issuer"), "{message}");

    // Truxe rotates its signing key: tokens from the new key verify (the
    // JWKS is refetched on the unknown kid), and so do those of the old one.
    let before_rotation = truxe.login("reader@example.com").await;
    let rotate = Command::new(truxe_bin())
        .args(["keys", "rotate"])
        .env("TRUXE_DATA_DIR", &truxe.dir)
        .env("JWT_ALGORITHM", "EdDSA")
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let kid = |t: &str| -> String {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    eventually("Truxe publishes the new key", WAIT, || async {
        let keys: Value = reqwest::get(&jwks).await.ok()?.json().await.ok()?;
        (keys["keys"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let rotated = eventually("Truxe signs with the new key", WAIT, || async {
        let t = truxe.login("reader@example.com").await;
        (kid(&t) != kid(&token)).then_some(t)
    })
    .await;
    let after = c.client_with(&rotated);
    eventually("Torua accepts the new key", WAIT, || async {
        let r = after.get(c.data_url("pub/doc")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    // The keys Torua fetched for the new one still verify the old one's
    // tokens. A token that outlived its 10 s since shows it too: its age is
    // checked only after its signature (an unknown key is `invalid_token`).
    assert_eq!(kid(&before_rotation), kid(&token));
    let (status, code, message) =
        outcome(c.client_with(&before_rotation).get(c.data_url("pub/doc"))).await;
    assert!(
        status == StatusCode::OK
            || (status, code.as_str()) == (StatusCode::UNAUTHORIZED, "token_expired"),
        "a token of the rotated key: {status} {code} {message}"
    );

    // Expired: Truxe's access tokens here live 10 s (plus 5 s of leeway).
    eventually("the token expires", Duration::from_secs(40), || async {
        let (status, code, _) = outcome(user.get(c.data_url("pub/doc"))).await;
        (status == StatusCode::UNAUTHORIZED && code == "token_expired").then_some(())
    })
    .await;
}

#[tokio::test]
async fn cli_manages_keys_and_policy() {
    let c = TestCluster::start(1, 4).await;
    let torua = |args: &[&str]| {
        Command::new(TORUA)
            .env("TORUA_TOKEN", &c.admin_key)
            .env("TORUA_CA", c.certs().join("ca.pem"))
            .args(["--coordinator", &c.url()])
            .args(args)
            .output()
            .unwrap()
    };
    let file = c.dir.path().join("policy.json");
    std::fs::write(&file, policy(1).to_string()).unwrap();
    let set = torua(&["policy", "set", file.to_str().unwrap()]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let got: Value = serde_json::from_slice(&torua(&["policy", "get"]).stdout).unwrap();
    assert_eq!(got["version"], 2);
    let stale = torua(&["policy", "set", file.to_str().unwrap()]);
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("version"));

    let made = torua(&[
        "apikey",
        "create",
        "--name",
        "ci",
        "--role",
        "app",
        "--expires-in",
        "30d",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    let as_app = |args: &[&str]| {
        Command::new(TORUA)
            .env("TORUA_TOKEN", &key)
            .env("TORUA_CA", c.certs().join("ca.pem"))
            .args(["--coordinator", &c.url()])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(as_app(&["put", "app/cli", "v"]).status.success());
    let denied = as_app(&["put", "other", "v"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("403"));
    let list = String::from_utf8_lossy(&torua(&["apikey", "list"]).stdout).into_owned();
    assert!(
        list.contains(&id) && list.contains("active") && list.contains("app"),
        "{list}"
    );
    assert!(!list.contains(&key[18..]));
    assert!(torua(&["apikey", "revoke", &id]).status.success());
    let refused = as_app(&["get", "app/cli"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("revoked"));
    let list = String::from_utf8_lossy(&torua(&["apikey", "list"]).stdout).into_owned();
    assert!(list.contains("revoked"), "{list}");
}
