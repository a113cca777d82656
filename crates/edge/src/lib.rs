//! The HTTP edge shared by Torua's and Truxe's servers.
//!
//! * [`Incoming`] accepts TCP and, when given a [`TlsSource`], runs TLS
//!   handshakes off the accept path, at most [`Limits::max_handshakes`] at a
//!   time and each within [`Limits::header_read`]; every connection then
//!   carries a [`Peer`] (its address and, when it presented a certificate
//!   the TLS configuration accepts, its identity).
//! * Open connections are capped at [`Limits::max_connections`]; one over
//!   the cap is answered `503` with `Retry-After` and closed, never left to
//!   hang.
//! * [`serve`] runs a router over them: HTTP/1.1, a header-read deadline
//!   that also closes idle keep-alive connections, a deadline for each whole
//!   request (a client sending its body slowly holds nothing for long), and
//!   a graceful shutdown.
//!
//! Errors are answered in the shape both products use:
//! `{"error":{"code","message"}}`.
//!
//! No product logic here: no routes, no authentication, no storage.

pub mod cli;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Bounds on what clients may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time to send a request's headers (from the connection's
    /// start, or from the end of the previous response on a kept-alive
    /// connection, which is therefore also the idle timeout) and to finish
    /// a TLS handshake.
    pub header_read: Duration,
    /// Longest time one request may take, body upload included.
    pub request: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// TLS handshakes under way at most.
    pub max_handshakes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            max_connections: 4096,
            max_handshakes: 256,
        }
    }
}

/// Where a TLS listener gets its configuration, on every handshake (so a
/// reloaded certificate applies to the next connection).
pub trait TlsSource: Send + Sync + 'static {
    /// The server configuration in force.
    fn server_config(&self) -> Arc<tokio_rustls::rustls::ServerConfig>;
}

/// A server certificate and key from files, reloaded when the files change
/// (checked every [`FileTls::RELOAD_EVERY`]); clients present no
/// certificate. A reload that fails keeps the previous configuration.
pub struct FileTls {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: std::sync::RwLock<(Arc<tokio_rustls::rustls::ServerConfig>, secure::tls::Stamp)>,
}

impl FileTls {
    /// How often the files are checked.
    pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

    /// Loads the files (failing, naming the file, if they do not load) and
    /// watches them for replacement until the process ends.
    pub fn open(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Arc<FileTls>, secure::Error> {
        let (config, not_after) = secure::tls::load_server(cert, key)?;
        let tls = Arc::new(FileTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: std::sync::RwLock::new((config, secure::tls::stamp(&[cert, key]))),
        });
        log_expiry(cert, not_after);
        let weak = Arc::downgrade(&tls);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Self::RELOAD_EVERY).await;
                match weak.upgrade() {
                    Some(t) => t.reload_if_changed(),
                    None => return,
                }
            }
        });
        Ok(tls)
    }

    fn reload_if_changed(&self) {
        let now = secure::tls::stamp(&[&self.cert, &self.key]);
        let seen = self.current.read().map(|c| c.1.clone()).unwrap_or_default();
        if now == seen {
            return;
        }
        let next = secure::tls::load_server(&self.cert, &self.key);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match next {
            Ok((config, not_after)) => {
                tracing::info!(cert = %self.cert.display(), "TLS certificate or key reloaded");
                log_expiry(&self.cert, not_after);
                *current = (config, now);
            }
            Err(e) => {
                // Files are often replaced one at a time: retried on change.
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones");
                current.1 = now;
            }
        }
    }
}

fn log_expiry(cert: &std::path::Path, not_after: std::time::SystemTime) {
    let left = not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    if left < Duration::from_secs(30 * 86_400) {
        tracing::warn!(cert = %cert.display(), days_left = left.as_secs() / 86_400, "TLS certificate expires soon (or has expired); replace the file, it is reloaded without a restart");
    }
}

impl TlsSource for FileTls {
    fn server_config(&self) -> Arc<tokio_rustls::rustls::ServerConfig> {
        match self.current.read() {
            Ok(c) => c.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Source address.
    pub addr: SocketAddr,
    /// Identity of the verified client certificate (its one common name,
    /// see `secure::tls::inspect`), if one was presented.
    pub identity: Option<String>,
}

/// An accepted connection: plain TCP, or TLS over it.
pub enum Conn {
    /// Without TLS.
    Plain(TcpStream),
    /// With TLS.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A connection admitted under the cap; the permit is returned when it ends.
struct Admitted {
    conn: Conn,
    peer: Peer,
    _permit: OwnedSemaphorePermit,
}

/// The listener of every server (see the crate doc).
pub struct Incoming {
    rx: mpsc::Receiver<Admitted>,
    local: SocketAddr,
}

impl Incoming {
    /// Starts accepting on `tcp` under `limits`, with TLS when `tls` is given.
    pub fn new(
        tcp: TcpListener,
        tls: Option<Arc<dyn TlsSource>>,
        limits: Limits,
    ) -> io::Result<Incoming> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(accept_loop(tcp, tls, tx, limits));
        Ok(Incoming { rx, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Answers a connection over the cap with `503` and closes it.
async fn refuse_overloaded(mut conn: Conn) {
    let body = r#"{"error":{"code":"overloaded","message":"too many open connections; retry in a moment"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes()).await;
    let _ = conn.shutdown().await;
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<Arc<dyn TlsSource>>,
    tx: mpsc::Sender<Admitted>,
    limits: Limits,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    loop {
        let (stream, addr) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let _ = stream.set_nodelay(true);
        let permit = open.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::warn!(peer = %addr, limit = limits.max_connections, "connection refused: too many open connections");
        }
        // Answering takes a handshake (TLS) or a write (plain): both are
        // bounded by the handshake cap, so a flood cannot queue work.
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "connection dropped: too many handshakes under way");
            continue;
        };
        let (tls, tx) = (tls.clone(), tx.clone());
        tokio::spawn(async move {
            let conn = match tls {
                None => Some((Conn::Plain(stream), None)),
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
                    match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let identity = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| secure::tls::inspect(c).ok())
                                .and_then(|(cn, _)| cn);
                            Some((Conn::Tls(Box::new(s)), identity))
                        }
                        Ok(Err(e)) => {
                            tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                            None
                        }
                        Err(_) => {
                            tracing::info!(peer = %addr, "TLS handshake timed out");
                            None
                        }
                    }
                }
            };
            drop(handshake);
            let Some((conn, identity)) = conn else { return };
            match permit {
                Some(permit) => {
                    let admitted = Admitted {
                        conn,
                        peer: Peer { addr, identity },
                        _permit: permit,
                    };
                    let _ = tx.send(admitted).await;
                }
                None => refuse_overloaded(conn).await,
            }
        });
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Middleware: answers `408 request_timeout` when a request, body upload
/// included, takes longer than its deadline.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            let mut res = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request did not complete in time",
            );
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

/// Serves `router` on `incoming` under `limits` until `shutdown`, then stops
/// accepting and lets requests under way finish (for at most one request
/// deadline). Handlers find the [`Peer`] as `ConnectInfo<Peer>` and its
/// address as `ConnectInfo<SocketAddr>`.
pub async fn serve<F>(
    mut incoming: Incoming,
    router: Router,
    limits: Limits,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.request,
        deadline,
    ));
    // Connections may be upgraded (Torua's node data stream), which hyper's
    // graceful-shutdown helper does not support: each connection task holds
    // a clone of `live` and stops gracefully when `stop` turns true; the
    // channel closes once every task has ended.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (live, mut ended) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let admitted = tokio::select! {
            a = incoming.rx.recv() => match a {
                Some(a) => a,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let Admitted {
            conn,
            peer,
            _permit,
        } = admitted;
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer.addr));
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .serve_connection(TokioIo::new(conn), service)
            .with_upgrades();
        let mut stop = stop.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let (_permit, _live) = (_permit, live);
            let mut conn = std::pin::pin!(conn);
            let res = tokio::select! {
                r = conn.as_mut() => r,
                () = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(incoming);
    let _ = stop_tx.send(true);
    drop(live);
    if tokio::time::timeout(limits.request, ended.recv())
        .await
        .is_err()
    {
        tracing::warn!("requests still under way at shutdown were cut off");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let incoming = Incoming::new(tcp, None, limits).unwrap();
        let addr = incoming.local_addr();
        let router = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(incoming, router, limits, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// Reads until the server closes the connection (or `limit` passes).
    async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        tokio::time::timeout(limit, s.read_to_end(&mut out))
            .await
            .ok()
            .map(|_| out)
    }

    #[tokio::test]
    async fn half_sent_requests_and_idle_connections_are_closed() {
        let limits = Limits {
            header_read: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _stop) = server(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Both are closed by the server: half a request gets nothing, the
        // idle keep-alive connection its one answer.
        let got = read_to_close(&mut slow, Duration::from_secs(20)).await;
        assert!(got.is_some(), "the half-sent request was not closed");
        let got = read_to_close(&mut idle, Duration::from_secs(20)).await;
        let text = String::from_utf8(got.expect("the idle connection was not closed")).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_answered_503() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (addr, _stop) = server(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let got = read_to_close(&mut third, Duration::from_secs(20))
            .await
            .expect("answered and closed");
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("retry-after: 1"), "{text}");
        assert!(text.contains(r#""code":"overloaded""#), "{text}");
        // Control: once one closes, a new connection is served.
        drop(held.pop());
        let body = testing_get(addr).await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    }

    async fn testing_get(addr: SocketAddr) -> String {
        for _ in 0..100 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let got = read_to_close(&mut s, Duration::from_secs(20))
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&got).into_owned();
            if text.starts_with("HTTP/1.1 200") {
                return text;
            }
            // The freed permit returns when the server notices the close.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        "never served".into()
    }

    #[tokio::test]
    async fn requests_past_their_deadline_answer_408() {
        let limits = Limits {
            request: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _stop) = server(limits).await;
        let r = reqwest::get(format!("http://{addr}/slow")).await.unwrap();
        assert_eq!(r.status(), 408);
        let body = r.text().await.unwrap();
        assert!(body.contains(r#""code":"request_timeout""#), "{body}");
        let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
}
