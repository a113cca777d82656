//! Mail over SMTP to a real (minimal) SMTP receiver on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::server::Truxe;

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
