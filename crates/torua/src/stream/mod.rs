//! The coordinator → node data stream: key reads and writes as binary
//! frames on one persistent connection per node, instead of an HTTP
//! request each.
//!
//! The coordinator opens it with `GET /stream` and `Upgrade: torua-stream`
//! on the node API (so behind the same mutual TLS and the same check that
//! only coordinators may call it); after `101` both sides send frames: a
//! little-endian `u32` length, then a postcard body. Requests carry an id
//! chosen by the coordinator and may be answered in any order. Everything
//! else the coordinator asks of a node stays on HTTP.

pub(crate) mod client;
pub(crate) mod server;

use std::io;

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The `Upgrade` protocol name and the node API path that accepts it.
pub const PROTOCOL: &str = "torua-stream";
/// Path of the upgrade request.
pub const PATH: &str = "/stream";

/// Room for a frame's fields around its value.
pub const FRAME_OVERHEAD: usize = 64 << 10;

/// A write's precondition as the node applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// None.
    Any,
    /// The key exists.
    Exists,
    /// The key exists in this version.
    Version(u64),
    /// The key does not exist.
    Absent,
    /// Store with exactly this version, unconditionally (a move target
    /// mirroring the owner's write).
    Keep(u64),
}

impl Precondition {
    /// The version to keep (a move target), and the precondition to check
    /// otherwise.
    pub fn split(self) -> (Option<u64>, torua_store::Expect) {
        use torua_store::Expect;
        match self {
            Precondition::Any => (None, Expect::Any),
            Precondition::Exists => (None, Expect::Exists),
            Precondition::Version(v) => (None, Expect::Version(v)),
            Precondition::Absent => (None, Expect::Absent),
            Precondition::Keep(v) => (Some(v), Expect::Any),
        }
    }
}

impl From<torua_store::Expect> for Precondition {
    fn from(e: torua_store::Expect) -> Self {
        use torua_store::Expect;
        match e {
            Expect::Any => Precondition::Any,
            Expect::Exists => Precondition::Exists,
            Expect::Version(v) => Precondition::Version(v),
            Expect::Absent => Precondition::Absent,
        }
    }
}

/// One operation on a shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    /// Read a key.
    Get {
        /// The key.
        key: String,
        /// Let a replica answer from its own state.
        stale: bool,
    },
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// Its content type.
        content_type: String,
        /// Its value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The precondition.
        when: Precondition,
    },
    /// Delete a key (`Keep` is refused).
    Delete {
        /// The key.
        key: String,
        /// The precondition.
        when: Precondition,
    },
}

/// A request frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the sender; echoed in the answer.
    pub id: u64,
    /// The shard the operation is on.
    pub shard: u32,
    /// What to do.
    pub op: Op,
}

/// What a node answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// The key's value.
    Value {
        /// Its version.
        version: u64,
        /// Its content type.
        content_type: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// The key does not exist.
    Absent,
    /// Written in this version.
    Written {
        /// The version the write made.
        version: u64,
    },
    /// Deleted (or already absent).
    Deleted,
    /// Refused, as the HTTP API would have answered: status, error code,
    /// message, and the leader a replica named when it does not lead.
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Why, in a sentence.
        message: String,
        /// The leader, when another replica leads.
        leader: Option<String>,
    },
}

/// An answer frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// Its outcome.
    pub answer: Answer,
}

/// `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&[0; 4]);
    // Serializing into a Vec cannot fail for these types.
    let mut buf = postcard::to_extend(msg, buf).unwrap_or_else(|_| unreachable!());
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf
}

/// Reads frames from one half of a stream, refusing any longer than `max`.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames from `io`.
    pub fn new(io: R, max: usize) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(64 << 10),
            max,
        }
    }

    /// The next frame decoded; `None` at a clean end of the stream.
    pub async fn next<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Option<T>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > self.max {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a frame of {len} bytes is over the limit of {}", self.max),
                    ));
                }
                if self.buf.len() >= 4 + len {
                    let msg = postcard::from_bytes(&self.buf[4..4 + len])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
                    self.buf.advance(4 + len);
                    return msg.map(Some);
                }
                self.buf.reserve(4 + len - self.buf.len());
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }
}

/// Writes encoded frames from `rx` to `io` until the channel closes or a
/// write fails, putting every frame waiting at the time into one write so
/// that concurrent requests share syscalls and TLS records.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(64 << 10);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        // The runtime's waiting tasks first: under load they queue frames
        // too, which then share this write. Alone, this returns at once.
        tokio::task::yield_now().await;
        while batch.len() < (256 << 10) {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        io.write_all(&batch).await?;
        io.flush().await?;
    }
    io.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_or_truncated_ones_are_refused() {
        let req = Request {
            id: 7,
            shard: 3,
            op: Op::Put {
                key: "ключ/α".into(),
                content_type: "text/plain".into(),
                value: vec![0, 1, 2, 255],
                when: Precondition::Version(9),
            },
        };
        let buf = [encode(&req), encode(&req)].concat();
        let mut r = FrameReader::new(&buf[..], 1 << 20);
        for _ in 0..2 {
            let got: Request = r.next().await.unwrap().unwrap();
            assert_eq!(got.id, 7);
            assert!(
                matches!(got.op, Op::Put { ref key, ref value, when: Precondition::Version(9), .. } if key == "ключ/α" && value == &[0, 1, 2, 255])
            );
        }
        assert!(r.next::<Request>().await.unwrap().is_none());

        let mut small = FrameReader::new(&buf[..], 8);
        let err = small.next::<Request>().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut cut = FrameReader::new(&buf[..buf.len() / 2 - 1], 1 << 20);
        let err = cut.next::<Request>().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        let mut bad = FrameReader::new(&garbage[..], 1 << 20);
        assert!(bad.next::<Request>().await.is_err());
    }
}
