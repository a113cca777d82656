//! Outgoing mail. [`Mailer`] is the seam: [`SmtpMailer`] and
//! [`ResendMailer`] deliver; [`DevMailbox`] keeps messages in a local file
//! (JSON lines, mode 0600) that developers and tests read through
//! `GET /dev/mailbox` (only outside production).

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mail {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// The same as HTML, sent beside the text.
    #[serde(default)]
    pub html: Option<String>,
    /// When it was sent (unix ms).
    pub at_ms: i64,
}

/// Sends mail.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Delivers one message (or fails with a reason for the log).
    async fn send(&self, mail: &Mail) -> Result<(), String>;
    /// Whether mail can be sent at all (notices are skipped otherwise).
    fn delivers(&self) -> bool {
        true
    }
}

/// Refuses to send: production has no SMTP transport configured yet, and
/// mail for real users must never land in a local file.
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, _mail: &Mail) -> Result<(), String> {
        Err("email delivery is not configured".into())
    }
    fn delivers(&self) -> bool {
        false
    }
}

/// A local mailbox file for development.
pub struct DevMailbox {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl DevMailbox {
    /// A mailbox at `path` (created on first message).
    pub fn new(path: PathBuf) -> Self {
        DevMailbox {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Messages, oldest first, optionally only those to `to`.
    pub async fn read(&self, to: Option<&str>) -> Vec<Mail> {
        let _g = self.lock.lock().await;
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Mail>(l).ok())
            .filter(|m| to.is_none_or(|t| m.to.eq_ignore_ascii_case(t)))
            .collect()
    }
}

#[async_trait]
impl Mailer for DevMailbox {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let _g = self.lock.lock().await;
        let mut line = serde_json::to_string(mail).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut opts = tokio::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts
            .open(&self.path)
            .await
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        f.write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        f.sync_data().await.map_err(|e| e.to_string())?;
        tracing::info!(to = %mail.to, subject = %mail.subject, "mail kept in the development mailbox");
        Ok(())
    }
}

/// Delivery through an SMTP server (STARTTLS, implicit TLS, or plain text to
/// a loopback relay).
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl SmtpMailer {
    /// A mailer for `cfg` (validated at start-up).
    pub fn new(cfg: &crate::config::Smtp) -> Result<Self, String> {
        use crate::config::SmtpTls;
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
        type T = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
        // The server's certificate must name SMTP_HOST and chain to
        // SMTP_CA when given (only to it), else to the system's roots.
        let params = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(cfg.host.clone());
            if let Some(pem) = &cfg.ca_pem {
                let ca = Certificate::from_pem(pem).map_err(|e| format!("SMTP_CA: {e}"))?;
                b = b
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(ca);
            }
            b.build_rustls().map_err(|e| e.to_string())
        };
        let builder = T::builder_dangerous(&cfg.host);
        let builder = match cfg.tls {
            SmtpTls::StartTls => builder.tls(Tls::Required(params()?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(params()?)),
            SmtpTls::None => builder,
        };
        let mut builder = builder
            .port(cfg.port)
            .timeout(Some(std::time::Duration::from_secs(20)));
        if let Some((user, password)) = &cfg.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
        }
        let from = cfg.from.parse().map_err(|e| format!("SMTP_FROM: {e}"))?;
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        use lettre::AsyncTransport;
        let to = mail.to.parse().map_err(|e| format!("recipient: {e}"))?;
        let builder = lettre::message::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone());
        let message = match &mail.html {
            Some(html) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
                mail.text.clone(),
                html.clone(),
            )),
            None => builder
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(mail.text.clone()),
        }
        .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        tracing::info!(subject = %mail.subject, "mail sent by SMTP");
        Ok(())
    }
}

/// Delivery through Resend's HTTP API (`POST {url}/emails`, bearer API key,
/// JSON `{from, to, subject, text, html}`), one of the original Truxe's
/// providers (`EMAIL_PROVIDER=resend`).
pub struct ResendMailer {
    http: reqwest::Client,
    endpoint: String,
    key: secure::Secret<String>,
    from: String,
}

impl ResendMailer {
    /// A mailer for `cfg` (validated at start-up).
    pub fn new(cfg: &crate::config::Resend) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ResendMailer {
            http,
            endpoint: format!("{}/emails", cfg.url),
            key: cfg.key.clone(),
            from: cfg.from.clone(),
        })
    }
}

#[async_trait]
impl Mailer for ResendMailer {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let mut body = serde_json::json!({
            "from": self.from,
            "to": [mail.to],
            "subject": mail.subject,
            "text": mail.text,
        });
        if let Some(html) = &mail.html {
            body["html"] = serde_json::json!(html);
        }
        let r = self
            .http
            .post(&self.endpoint)
            .bearer_auth(self.key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("Resend: {}", e.without_url()))?;
        let status = r.status();
        // Resend's errors are `{"statusCode", "name", "message"}`.
        let answer: serde_json::Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            let why = answer["message"].as_str().unwrap_or("no reason given");
            return Err(format!("Resend refused the message ({status}): {why}"));
        }
        tracing::info!(subject = %mail.subject, id = %answer["id"].as_str().unwrap_or(""), "mail sent by Resend");
        Ok(())
    }
}
