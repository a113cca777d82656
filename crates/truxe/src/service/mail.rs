//! Outgoing mail. [`Mailer`] is the seam; [`DevMailbox`] keeps messages in
//! a local file (JSON lines, mode 0600) that developers and tests read
//! through `GET /dev/mailbox` (only outside production).

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
    /// When it was sent (unix ms).
    pub at_ms: i64,
}

/// Sends mail.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Delivers one message (or fails with a reason for the log).
    async fn send(&self, mail: &Mail) -> Result<(), String>;
}

/// Refuses to send: production has no SMTP transport configured yet, and
/// mail for real users must never land in a local file.
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, _mail: &Mail) -> Result<(), String> {
        Err("email delivery is not configured".into())
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
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.text.clone())
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        tracing::info!(subject = %mail.subject, "mail sent by SMTP");
        Ok(())
    }
}
