//! Mail over SMTP: to Debian's Exim, a real mail server, over STARTTLS and
//! implicit TLS with authentication (and refused when its certificate is
//! not trusted or the password is wrong); and, for what only a plain-text
//! receiver shows (the message as sent, loopback-only plain text), to a
//! minimal sink.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::server::{LoopbackTls, Truxe};

const EXIM: &str = "/usr/sbin/exim4";
const SMTP_USER: &str = "truxe";
const SMTP_PASSWORD: &str = "Smtp-Secret-7";

/// Exim (scripts/test installs exim4-daemon-light) on two loopback ports:
/// submission with STARTTLS, and implicit TLS; both with a certificate of
/// a CA made here, and AUTH (PLAIN, LOGIN) offered only over TLS, for one
/// user. Every message it accepts is appended to one mbox file. Its own
/// spool, logs and configuration live in a temporary directory.
struct Exim {
    dir: tempfile::TempDir,
    /// The CA its certificate chains to.
    ca: std::path::PathBuf,
    starttls: u16,
    tls: u16,
    _daemon: testkit::ChildGuard,
}

impl Exim {
    async fn start() -> Exim {
        assert!(
            std::path::Path::new(EXIM).exists(),
            "{EXIM} is needed: ./scripts/test installs Debian's exim4-daemon-light"
        );
        let dir = testkit::tempdir();
        let d = dir.path();
        let certs = LoopbackTls::write(d, "Truxe test SMTP CA");
        let (starttls, tls) = (testkit::free_port(), testkit::free_port());
        let p = d.display();
        let (cert, key) = (certs.cert.display(), certs.key.display());
        let config = format!(
            r#"primary_hostname = smtp.test
spool_directory = {p}/spool
log_file_path = {p}/log/%slog
pid_file_path = {p}/exim.pid
log_selector = +received_recipients +tls_cipher
daemon_smtp_ports = {starttls} : {tls}
tls_on_connect_ports = {tls}
local_interfaces = <; 127.0.0.1.{starttls} ; 127.0.0.1.{tls}
tls_advertise_hosts = *
tls_certificate = {cert}
tls_privatekey = {key}
auth_advertise_hosts = ${{if def:tls_in_cipher {{*}}{{}}}}
acl_smtp_rcpt = acl_check_rcpt
keep_environment =
begin acl
acl_check_rcpt:
  accept authenticated = *
  deny message = authentication required
begin routers
all:
  driver = accept
  transport = keep
begin transports
keep:
  driver = appendfile
  file = {p}/inbox
  user = Debian-exim
  envelope_to_add
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and {{{{eq{{$auth2}}{{{SMTP_USER}}}}}{{eq{{$auth3}}{{{SMTP_PASSWORD}}}}}}}}}
  server_set_id = $auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{if and {{{{eq{{$auth1}}{{{SMTP_USER}}}}}{{eq{{$auth2}}{{{SMTP_PASSWORD}}}}}}}}}
  server_set_id = $auth1
"#
        );
        std::fs::write(d.join("exim.conf"), config).unwrap();
        for sub in ["spool", "log"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        // Exim gives up root for a configuration of its caller's: its own
        // user must be able to read and write the rest; the configuration
        // itself must stay root's (Exim checks).
        let owned = std::process::Command::new("chown")
            .args(["-R", "Debian-exim"])
            .arg(d)
            .status()
            .unwrap();
        assert!(owned.success(), "chown to Debian-exim");
        std::os::unix::fs::chown(d.join("exim.conf"), Some(0), Some(0)).unwrap();
        let mut cmd = std::process::Command::new(EXIM);
        cmd.arg("-C").arg(d.join("exim.conf")).arg("-bdf");
        let daemon = testkit::ChildGuard::spawn("exim", cmd, d);
        for port in [starttls, tls] {
            testkit::eventually("Exim to listen", Duration::from_secs(30), || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            })
            .await;
        }
        Exim {
            ca: certs.ca,
            dir,
            starttls,
            tls,
            _daemon: daemon,
        }
    }

    /// Truxe's settings for mail through this server.
    fn env(&self, tls: &str, password: &str, trusted: bool) -> Vec<(String, String)> {
        let port = if tls == "tls" {
            self.tls
        } else {
            self.starttls
        };
        let mut env = vec![
            ("SMTP_HOST", "127.0.0.1".to_owned()),
            ("SMTP_PORT", port.to_string()),
            ("SMTP_TLS", tls.to_owned()),
            ("SMTP_USER", SMTP_USER.to_owned()),
            ("SMTP_PASSWORD", password.to_owned()),
            ("SMTP_FROM", "Truxe <no-reply@example.com>".to_owned()),
        ];
        if trusted {
            env.push(("SMTP_CA", self.ca.display().to_string()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The message delivered to `to`, if any (from the mbox).
    fn message_to(&self, to: &str) -> Option<String> {
        let inbox = std::fs::read_to_string(self.dir.path().join("inbox")).unwrap_or_default();
        inbox
            .split("\nFrom ")
            .find(|m| m.contains(&format!("Envelope-to: {to}")))
            .map(str::to_owned)
    }

    /// Exim's log line recording the reception of mail for `to`.
    fn received_line(&self, to: &str) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default();
        log.lines()
            .find(|l| l.contains(" <= ") && l.contains(&format!("for {to}")))
            .map(str::to_owned)
    }

    /// Exim's rejections (failed authentications among them).
    fn rejections(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/rejectlog")).unwrap_or_default()
    }
}

/// Starts Truxe with `env`, registers `to` and asks for a reset mail.
async fn reset_mail(env: &[(String, String)], to: &str) -> Truxe {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = Truxe::start(&env).await;
    t.register(to).await;
    let (s, _) = t
        .post("/api/auth/password/forgot", json!({"email": to}))
        .await;
    assert_eq!(s, StatusCode::OK);
    t
}

#[tokio::test]
async fn mail_goes_to_a_real_server_over_starttls_and_implicit_tls_with_authentication() {
    let exim = Exim::start().await;
    for mode in ["starttls", "tls"] {
        let to = format!("{mode}-user@example.com");
        let _t = reset_mail(&exim.env(mode, SMTP_PASSWORD, true), &to).await;
        let message = testkit::eventually(
            &format!("the reset mail in Exim's mailbox ({mode})"),
            Duration::from_secs(30),
            || async { exim.message_to(&to) },
        )
        .await;
        let body = decode_quoted_printable(message.split_once("\n\n").unwrap().1);
        assert!(body.contains("/reset-password?token=prt_"), "{body}");
        // Exim's record: received by ESMTP over TLS, authenticated
        // (`P=esmtpsa`), as the configured user, with a TLS cipher.
        let line = exim.received_line(&to).expect("Exim logged the reception");
        assert!(line.contains("P=esmtpsa"), "{line}");
        assert!(line.contains(&format!(":{SMTP_USER}")), "{line}");
        assert!(line.contains(" X=TLS"), "{line}");
    }
}

#[tokio::test]
async fn mail_is_not_sent_to_an_untrusted_server_or_with_a_wrong_password() {
    let exim = Exim::start().await;
    // Without SMTP_CA, the test CA is not among the system's roots: the
    // server could be anyone, and Truxe does not hand it the password.
    let to = "untrusted@example.com";
    let t = reset_mail(&exim.env("starttls", SMTP_PASSWORD, false), to).await;
    let log = t.dir.path().join("truxe.log");
    testkit::eventually(
        "Truxe to refuse the certificate",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.contains("mail not sent") && text.contains("certificate")).then_some(())
        },
    )
    .await;
    assert!(exim.message_to(to).is_none());
    // A wrong password: Exim refuses it, nothing is delivered.
    let to = "wrong-password@example.com";
    let _t = reset_mail(&exim.env("tls", "Not-The-Password", true), to).await;
    testkit::eventually(
        "Exim to refuse the login",
        Duration::from_secs(30),
        || async {
            exim.rejections()
                .contains("Incorrect authentication data")
                .then_some(())
        },
    )
    .await;
    assert!(exim.message_to(to).is_none());
}

/// Accepts SMTP sessions and keeps each message's DATA.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let kept = messages.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(buf) = data.as_mut() {
                        if line == "." {
                            kept.lock().unwrap().push(std::mem::take(buf));
                            data = None;
                            let _ = w.write_all(b"250 queued\r\n").await;
                        } else {
                            buf.push_str(&line);
                            buf.push('\n');
                        }
                        continue;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("DATA") {
                        data = Some(String::new());
                        b"354 end with .\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    (port, messages)
}

/// RFC 2045 quoted-printable: soft line breaks and `=XX` escapes.
fn decode_quoted_printable(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a plain-text receiver sees: the message as Truxe writes it.
#[tokio::test]
async fn mail_goes_out_by_smtp() {
    let (port, messages) = smtp_sink().await;
    let port = port.to_string();
    let t = Truxe::start(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &port),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "Truxe <no-reply@example.com>"),
    ])
    .await;
    t.register("smtp-user@example.com").await;
    let (s, _) = t
        .post(
            "/api/auth/password/forgot",
            json!({"email": "smtp-user@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let message = testkit::eventually(
        "the reset mail at the SMTP server",
        Duration::from_secs(30),
        || async { messages.lock().unwrap().first().cloned() },
    )
    .await;
    assert!(message.contains("To: smtp-user@example.com"), "{message}");
    assert!(
        message.contains("From: Truxe <no-reply@example.com>"),
        "{message}"
    );
    assert!(
        message.contains("Content-Transfer-Encoding: quoted-printable"),
        "{message}"
    );
    let body = decode_quoted_printable(message.split_once("\n\n").unwrap().1);
    assert!(body.contains("/reset-password?token=prt_"), "{body}");
    // With SMTP configured there is no local mailbox.
    let r = t
        .http
        .get(format!("{}/dev/mailbox", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Plain-text SMTP is refused to anything but loopback.
    let out = t
        .command()
        .env("SMTP_HOST", "mail.example.com")
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SMTP_TLS"));
}
