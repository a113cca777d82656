//! A `truxe serve` process on a free port with its own data directory.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{free_port, wait_http_ok, ChildGuard};

pub const TRUXE: &str = env!("CARGO_BIN_EXE_truxe");
pub const PASSWORD: &str = "Correct-Horse-9";

pub struct Truxe {
    pub dir: tempfile::TempDir,
    /// PostgreSQL database of this server, when the suite runs on PostgreSQL.
    database_url: Option<String>,
    pub port: u16,
    pub env: Vec<(String, String)>,
    child: Option<ChildGuard>,
    pub http: reqwest::Client,
    /// A file the server sees as its `/etc/hosts` (in a mount namespace of
    /// its own), so a test decides what names resolve to.
    hosts: Option<std::path::PathBuf>,
}

impl Truxe {
    /// Starts with cheap Argon2 parameters (development mode allows them)
    /// plus `env`.
    pub async fn start(env: &[(&str, &str)]) -> Truxe {
        Truxe::start_on(free_port(), env).await
    }

    /// As [`Truxe::start`], on a port chosen beforehand (for callers that
    /// must know Truxe's URL first, such as an identity provider).
    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> Truxe {
        Truxe::launch(port, None, env).await
    }

    /// As [`Truxe::start`], resolving names by `hosts` (bind-mounted over
    /// `/etc/hosts` in a mount namespace of the server's own; the test may
    /// rewrite the file in place at any time). Needs root.
    pub async fn start_resolving(hosts: &std::path::Path, env: &[(&str, &str)]) -> Truxe {
        assert!(
            is_root(),
            "this test needs root (a mount namespace with its own /etc/hosts), as CI has"
        );
        Truxe::launch(free_port(), Some(hosts.to_owned()), env).await
    }

    async fn launch(port: u16, hosts: Option<std::path::PathBuf>, env: &[(&str, &str)]) -> Truxe {
        let mut t = Truxe {
            hosts,
            database_url: postgres_database().await,
            dir: testkit::tempdir(),
            port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            http: reqwest::Client::new(),
        };
        t.restart().await;
        t
    }

    pub fn command(&self) -> Command {
        let mut cmd = match &self.hosts {
            Some(hosts) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
                    .arg(hosts)
                    .arg(TRUXE);
                c
            }
            None => Command::new(TRUXE),
        };
        cmd.env("TRUXE_DATA_DIR", self.dir.path().join("data"))
            .env("PORT", self.port.to_string())
            .env("TRUXE_ARGON2_MEMORY_KIB", "1024")
            .env("TRUXE_ARGON2_ITERATIONS", "1")
            .env("JWT_ALGORITHM", "EdDSA");
        if let Some(url) = &self.database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.terminate(Duration::from_secs(10));
        }
        let mut cmd = self.command();
        // Mail for the tests to read, unless a test sets up mail itself.
        let set = |name: &str| self.env.iter().any(|(k, _)| k == name);
        if !set("TRUXE_ENV") && !set("SMTP_HOST") && !set("TRUXE_DEV_MAILBOX") {
            cmd.env("TRUXE_DEV_MAILBOX", "on");
        }
        cmd.arg("serve");
        let mut child = ChildGuard::spawn("truxe", cmd, self.dir.path());
        wait_http_ok(&format!("{}/ready", self.url()), Duration::from_secs(60)).await;
        child.assert_running(self.dir.path());
        self.child = Some(child);
    }

    /// The database URL the server uses.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.dir.path().join("data/truxe.db").display()
            )
        })
    }

    /// Whether this server stores in PostgreSQL (else a SQLite file).
    pub fn on_postgres(&self) -> bool {
        self.database_url.is_some()
    }

    /// Whether the database holds `needle` in the clear anywhere: in the
    /// SQLite files, or in PostgreSQL's rows as `pg_dump` prints them;
    /// as it is, or merely encoded (hex, which is also how `pg_dump` shows
    /// binary columns, or base64).
    pub fn stores(&self, needle: &[u8]) -> bool {
        let stored = match &self.database_url {
            None => ["truxe.db", "truxe.db-wal"]
                .iter()
                .flat_map(|f| {
                    std::fs::read(self.dir.path().join("data").join(f)).unwrap_or_default()
                })
                .collect::<Vec<u8>>(),
            Some(url) => {
                let out = Command::new(pg_tool("pg_dump"))
                    .args(["--data-only", "--dbname", url])
                    .output()
                    .expect("pg_dump (Debian's postgresql, as scripts/test installs)");
                assert!(
                    out.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        };
        assert!(!stored.is_empty(), "nothing stored to search");
        use base64::Engine;
        let hex: Vec<u8> = needle
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(needle);
        [needle, hex.as_slice(), b64.as_bytes()]
            .iter()
            .any(|n| stored.windows(n.len()).any(|w| w == *n))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn me(&self, token: &str) -> StatusCode {
        self.authed(reqwest::Method::GET, "/auth/me", token, None)
            .await
            .0
    }

    /// Registers `email` and returns (access, refresh).
    pub async fn register(&self, email: &str) -> (String, String) {
        let (s, body) = self
            .post(
                "/api/auth/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        tokens(&body)
    }

    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/api/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh: &str) -> (StatusCode, Value) {
        self.post("/auth/refresh", json!({"refreshToken": refresh}))
            .await
    }

    /// Runs a `truxe` subcommand with this server's configuration.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }
}

/// With `TRUXE_TEST_POSTGRES_URL` set (scripts/test sets it), a fresh
/// database on that server for one test; otherwise `None` (SQLite).
async fn postgres_database() -> Option<String> {
    use sqlx::{Connection, Executor};
    let base = std::env::var("TRUXE_TEST_POSTGRES_URL").ok()?;
    let name = format!("t_{}", secure::token::random_uuid().replace('-', ""));
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    Some(with_database(&base, &name))
}

/// `url` naming database `name` instead, its query (TLS settings) kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let (prefix, _) = path.rsplit_once('/').expect("URL has a database name");
    match query {
        "" => format!("{prefix}/{name}"),
        q => format!("{prefix}/{name}?{q}"),
    }
}

pub fn tokens(body: &Value) -> (String, String) {
    let t = &body["data"]["tokens"];
    (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    )
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Waits for the `n`-th mail with a link to `to` and returns its token.
pub async fn mailed_token(t: &Truxe, to: &str, n: usize) -> String {
    let url = format!("{}/dev/mailbox?to={to}", t.url());
    let text = testkit::eventually(
        &format!("mail #{n} to {to}"),
        Duration::from_secs(30),
        || async {
            // Links only: notices (password changed, new device) carry none.
            let body: Value = testkit::get_json(&t.http, &url).await;
            body["messages"]
                .as_array()?
                .iter()
                .filter_map(|m| m["text"].as_str())
                .filter(|text| text.contains("token="))
                .nth(n - 1)
                .map(str::to_owned)
        },
    )
    .await;
    let start = text.find("token=").expect("mail has a link with a token") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// Decodes one base64url part of a JWT (0 header, 1 claims) as JSON.
pub fn jwt_part(token: &str, part: usize) -> Value {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(part).unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

impl Truxe {
    /// Proves `email`'s address (its first mail) with a session's `access`
    /// token: asks for the verification mail and follows its link.
    pub async fn verify_address(&self, email: &str, access: &str) {
        let (s, _) = self
            .authed(
                reqwest::Method::POST,
                "/api/auth/email/send-verification",
                access,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let token = mailed_token(self, email, 1).await;
        let r = self
            .http
            .get(format!("{}/api/auth/email/verify", self.url()))
            .query(&[("token", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Creates a system administrator with the CLI and signs in: (id, access token).
    pub async fn admin(&self, email: &str) -> (String, String) {
        let out = self.cli(
            &["user", "create", "--email", email, "--admin"],
            Some("Admin-Password-9\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (s, body) = self.login(email, "Admin-Password-9").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let id = body["data"]["user"]["id"].as_str().unwrap().to_owned();
        (id, tokens(&body).0)
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// A PostgreSQL program of the newest installed version.
fn pg_tool(name: &str) -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("{name} not found under /usr/lib/postgresql (scripts/test installs PostgreSQL)")
    })
}

/// A CA made for one test, and a certificate of it for 127.0.0.1 valid
/// for a day: what a throwaway server speaking TLS (Redis, SMTP) needs.
pub struct LoopbackTls {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl LoopbackTls {
    /// Makes them, written into `dir` (`tls-ca.pem`, `tls-cert.pem`,
    /// `tls-key.pem`), the CA named `ca_name`.
    pub fn write(dir: &std::path::Path, ca_name: &str) -> LoopbackTls {
        let now = std::time::SystemTime::now();
        let day = now + Duration::from_secs(86_400);
        let ca = secure::tls::dev::DevCa::new(ca_name, day).unwrap();
        let leaf = ca.issue("127.0.0.1", &["127.0.0.1"], now, day).unwrap();
        let tls = LoopbackTls {
            ca: dir.join("tls-ca.pem"),
            cert: dir.join("tls-cert.pem"),
            key: dir.join("tls-key.pem"),
        };
        std::fs::write(&tls.ca, &ca.cert_pem).unwrap();
        std::fs::write(&tls.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&tls.key, leaf.key_pem.expose()).unwrap();
        tls
    }
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    // Production with no secrets set: `serve` would refuse to start.
    let weak = [("TRUXE_ENV", "production"), ("COOKIE_SECRET", "changeme")];
    testkit::cli::completions_and_man_pages(TRUXE, &weak, "truxe", "keys");
}

#[tokio::test]
async fn serve_prints_a_banner_saying_what_production_would_refuse() {
    let secret = "q8Jv3mZ1x0Lw7Rt2Ys5Pn9Kc4Hd6Fg3Bn7Vm2QeW";
    let t = Truxe::start(&[("COOKIE_SECRET", secret)]).await;
    let log = t.dir.path().join("truxe.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    testkit::eventually_sync("the banner", Duration::from_secs(10), || {
        read().contains("Production mode")
    });
    let out = read();
    let url = format!("http://127.0.0.1:{}", t.port);
    assert!(
        out.contains(&format!("Truxe is serving on {url} (development mode)")),
        "{out}"
    );
    let keys = t.dir.path().join("data").join("keys");
    assert!(
        out.contains(&format!("keys      {}", keys.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("JWKS      {url}/.well-known/jwks.json")),
        "{out}"
    );
    // Each refusal on a line of its own, naming its variable; the secret
    // set is long enough, so it is not among them, and never printed.
    assert!(
        out.contains("  - TRUXE_TLS_CERT: production serves HTTPS"),
        "{out}"
    );
    assert!(
        out.contains("  - MFA_ENCRYPTION_KEY: required in production"),
        "{out}"
    );
    assert!(!out.contains("  - COOKIE_SECRET"), "{out}");
    assert!(!out.contains(secret), "{out}");
}
