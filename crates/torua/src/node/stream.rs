//! The node's end of the coordinator's data stream ([`crate::stream`]).
//!
//! The route sits behind the node API's certificate check, so with TLS on
//! only a coordinator can open one. Each request runs as its own task (a
//! slow write does not hold up reads behind it); at most [`IN_FLIGHT`] run
//! per stream, after which the node stops reading until one finishes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Semaphore};
use torua_store::Record;

use super::data;
use super::Node;
use crate::http::extract::check_key;
use crate::http::{check_content_type, ApiError};
use crate::raft::groups::Refusal;
use crate::stream::{encode, Answer, FrameReader, Op, Response as Reply, FRAME_OVERHEAD, PROTOCOL};

/// Requests of one stream under way at once.
const IN_FLIGHT: usize = 1024;

/// `GET /stream` with `Upgrade: torua-stream`: switches the connection to
/// frames.
pub(super) async fn open(State(n): State<Arc<Node>>, mut req: Request) -> Response {
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
            Ok(io) => serve(n, TokioIo::new(io)).await,
            Err(e) => tracing::debug!(error = %e, "data stream upgrade failed"),
        }
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    res
}

async fn serve<T>(n: Arc<Node>, io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(crate::stream::write_frames(wr, rx));
    let mut frames = FrameReader::new(rd, n.max_value + FRAME_OVERHEAD);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let stopping = n.shutdown.clone();
    loop {
        let next = tokio::select! {
            f = frames.next::<crate::stream::Request>() => f,
            () = stopping.clone().wait() => break,
        };
        let req = match next {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "closing a data stream that sent a bad frame");
                break;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (n, tx) = (n.clone(), tx.clone());
        tokio::spawn(async move {
            let answer = run(&n, req.shard, req.op).await;
            let _ = tx.send(encode(&Reply { id: req.id, answer }));
            drop(slot);
        });
    }
    // Answers of requests still under way are sent before the stream
    // closes: the writer ends once every sender has gone.
    drop(tx);
    if let Ok(Err(e)) = writer.await {
        tracing::debug!(error = %e, "data stream ended with an error");
    }
}

/// One operation, checked as the HTTP routes check theirs.
async fn run(n: &Node, shard: u32, op: Op) -> Answer {
    let done = async {
        match op {
            Op::Get { key, stale } => {
                let key = check_key(key)?;
                Ok(match data::read(n, shard, &key, stale).await? {
                    Some(r) => Answer::Value {
                        version: r.version,
                        content_type: r.content_type,
                        value: r.value,
                    },
                    None => Answer::Absent,
                })
            }
            Op::Put {
                key,
                content_type,
                value,
                when,
            } => {
                let key = check_key(key)?;
                if value.len() > n.max_value {
                    return Err(ApiError::too_large(n.max_value).into());
                }
                check_content_type(content_type.as_bytes())?;
                let record = Record::new(content_type, value);
                let version = data::write(n, shard, key, record, when).await?;
                Ok(Answer::Written { version })
            }
            Op::Delete { key, when } => {
                data::delete(n, shard, check_key(key)?, when).await?;
                Ok(Answer::Deleted)
            }
        }
    };
    done.await.unwrap_or_else(|refusal: Refusal| {
        let (e, leader) = refusal.into_parts();
        Answer::Refused {
            status: e.status.as_u16(),
            code: e.code.into(),
            message: e.message,
            leader,
        }
    })
}
