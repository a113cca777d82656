//! The answering end of a stream: the upgrade, then each request frame run
//! as its own task (a slow call does not hold up those behind it), at most
//! [`IN_FLIGHT`] at once, after which the stream is not read until one
//! finishes.

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, Semaphore};

use super::{FrameReader, PROTOCOL};
use crate::http::ApiError;
use crate::shutdown::Shutdown;

/// Requests of one stream under way at once.
const IN_FLIGHT: usize = 1024;

/// Answers `req` with `101` and serves the upgraded connection with
/// `serve`; `426` when it did not ask for `Upgrade: torua-stream`.
pub(crate) fn upgrade<F, Fut>(mut req: Request, serve: F) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let asked = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(PROTOCOL.as_bytes()));
    if !asked {
        return ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!("this path speaks only `Upgrade: {PROTOCOL}`"),
        )
        .into_response();
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => serve(TokioIo::new(io)).await,
            Err(e) => tracing::debug!(error = %e, "stream upgrade failed"),
        }
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    res
}

/// Reads `Req` frames of up to `max_frame` bytes from `io` until it ends
/// (or `stop`), answering each with the frame `answer` makes.
pub(crate) async fn serve<T, Req, F, Fut>(
    io: T,
    max_frame: usize,
    stop: Option<Shutdown>,
    answer: F,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    Req: DeserializeOwned + Send + 'static,
    F: Fn(Req) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<u8>> + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(super::write_frames(wr, rx));
    let mut frames = FrameReader::new(rd, max_frame);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let stopping = async move {
        match stop {
            Some(s) => s.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopping);
    loop {
        let next = tokio::select! {
            f = frames.next::<Req>() => f,
            () = &mut stopping => break,
        };
        let req = match next {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "closing a stream that sent a bad frame");
                break;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (answer, tx) = (answer.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(answer(req).await);
            drop(slot);
        });
    }
    // Answers of requests still under way are sent before the stream
    // closes: the writer ends once every sender has gone.
    drop(tx);
    if let Ok(Err(e)) = writer.await {
        tracing::debug!(error = %e, "stream ended with an error");
    }
}
