//! The node's end of the coordinator's data stream ([`crate::stream`]).
//! The route sits behind the node API's certificate check, so with TLS on
//! only a coordinator can open one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use torua_store::Record;

use super::data;
use super::Node;
use crate::http::extract::check_key;
use crate::http::{check_content_type, ApiError};
use crate::raft::groups::Refusal;
use crate::stream::{encode, Answer, Op, Response as Reply, FRAME_OVERHEAD};

/// `GET /stream` with `Upgrade: torua-stream`: switches the connection to
/// frames.
pub(super) async fn open(State(n): State<Arc<Node>>, req: Request) -> Response {
    crate::stream::server::upgrade(req, move |io| {
        let (max, stop) = (n.max_value + FRAME_OVERHEAD, n.shutdown.clone());
        crate::stream::server::serve(io, max, Some(stop), move |req: crate::stream::Request| {
            let n = n.clone();
            async move {
                let answer = run(&n, req.shard, req.op).await;
                encode(&Reply { id: req.id, answer })
            }
        })
    })
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
