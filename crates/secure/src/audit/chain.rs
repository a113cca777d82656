//! A tamper-evident audit log: JSON lines, each carrying the hash of the
//! entry before it, so an altered, inserted or removed entry breaks the
//! chain at a line [`verify`] names.
//!
//! One line (fields in any order):
//! `{"seq":N,"prev":"<hex>",<the AuditEvent's fields>,"hash":"<hex>"}`
//! * `seq` counts from 1 with no gaps;
//! * `prev` is the previous line's `hash` (64 zeros on the first line);
//! * `hash` is hex SHA-256 of the line's JSON object without `hash`, as
//!   serde_json writes it.
//!
//! A hash chain proves order and integrity against anyone who cannot
//! rewrite every later line too; keep a copy of the newest `hash` elsewhere
//! (log shipping) to also catch a rewritten or truncated tail.
//!
//! Writes are group-committed: concurrent events share one `fdatasync`,
//! and [`ChainedLog::record`] returns only once its line is durable.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{AuditEvent, AuditSink};
use crate::Error;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most events written under one fsync.
const MAX_BATCH: usize = 512;
/// Longest line read back when resuming a log.
const MAX_LINE: u64 = 1 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_of(body: &Map<String, Value>) -> String {
    hex(&Sha256::digest(
        Value::Object(body.clone()).to_string().as_bytes(),
    ))
}

/// Builds the line for `event` after the entry `(seq - 1, prev)`.
fn line(event: &AuditEvent, seq: u64, prev: &str) -> Result<(String, String), Error> {
    let Value::Object(mut body) =
        serde_json::to_value(event).map_err(|e| Error::Io(e.to_string()))?
    else {
        return Err(Error::Io("audit event is not a JSON object".into()));
    };
    body.insert("seq".into(), Value::from(seq));
    body.insert("prev".into(), Value::from(prev));
    let hash = hash_of(&body);
    body.insert("hash".into(), Value::from(hash.clone()));
    Ok((Value::Object(body).to_string(), hash))
}

/// Where the chain was found broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChainBreak {
    /// 1-based line number of the first bad entry.
    pub line: u64,
    /// What is wrong there.
    pub reason: String,
}

/// The tail of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Number of entries (the last `seq`).
    pub entries: u64,
    /// The last entry's hash (the genesis value for an empty log).
    pub hash: String,
}

/// Checks a whole log; returns its head, or the first break.
pub fn verify(reader: impl BufRead) -> Result<ChainHead, ChainBreak> {
    let mut head = ChainHead {
        entries: 0,
        hash: GENESIS.into(),
    };
    for (i, text) in reader.lines().enumerate() {
        let line = i as u64 + 1;
        let brk = |reason: String| ChainBreak { line, reason };
        let text = text.map_err(|e| brk(format!("cannot be read ({e})")))?;
        let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(&text) else {
            return Err(brk("is not a JSON object: the entry was altered".into()));
        };
        let stated = body.remove("hash");
        let (Some(Value::String(stated)), Some(seq), Some(prev)) = (
            stated,
            body.get("seq").and_then(Value::as_u64),
            body.get("prev").and_then(Value::as_str).map(str::to_owned),
        ) else {
            return Err(brk(
                "lacks seq, prev or hash: the entry was altered or inserted".into(),
            ));
        };
        if hash_of(&body) != stated {
            return Err(brk(format!(
                "entry seq {seq} was altered: its hash does not match its content"
            )));
        }
        let expected = head.entries + 1;
        if seq > expected {
            return Err(brk(format!(
                "entries seq {expected} to {} were removed before this one",
                seq - 1
            )));
        }
        if seq < expected {
            return Err(brk(format!(
                "entry seq {seq} was inserted or duplicated: seq {expected} was expected"
            )));
        }
        if prev != head.hash {
            return Err(brk(format!(
                "entry seq {seq} does not follow the entry before it: an entry was altered, inserted or removed"
            )));
        }
        head = ChainHead {
            entries: seq,
            hash: stated,
        };
    }
    Ok(head)
}

/// Reads the head of an existing log from its last line, dropping a
/// partial last line (a write cut short by a crash, never acknowledged).
fn resume(file: &mut File) -> Result<ChainHead, Error> {
    let io = |e: std::io::Error| Error::Io(format!("audit log: {e}"));
    let len = file.metadata().map_err(io)?.len();
    let start = len.saturating_sub(MAX_LINE);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    if complete < tail.len() {
        file.set_len(start + complete as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let tail = &tail[..complete];
    let Some(last) = tail
        .strip_suffix(b"\n")
        .map(|t| t.rsplit(|b| *b == b'\n').next().unwrap_or(t))
    else {
        return Ok(ChainHead {
            entries: 0,
            hash: GENESIS.into(),
        });
    };
    let damaged = || {
        Error::Config(
            "the last entry of the audit log is damaged; check it with `torua audit verify`".into(),
        )
    };
    let v: Value = serde_json::from_slice(last).map_err(|_| damaged())?;
    match (v["seq"].as_u64(), v["hash"].as_str()) {
        (Some(entries), Some(hash)) => Ok(ChainHead {
            entries,
            hash: hash.to_owned(),
        }),
        _ => Err(damaged()),
    }
}

type Job = (AuditEvent, oneshot::Sender<Result<(), String>>);

/// An [`AuditSink`] appending hash-chained JSON lines to one file.
#[derive(Debug, Clone)]
pub struct ChainedLog {
    tx: mpsc::Sender<Job>,
}

impl ChainedLog {
    /// Opens (or creates, mode 0600) the log and continues its chain. Must
    /// be called inside a Tokio runtime only for `record`; the writer is a
    /// thread of its own.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io(format!("audit log {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(io)?;
        let head = resume(&mut file)?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let display = path.display().to_string();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(file, head, rx, display))
            .map_err(io)?;
        Ok(ChainedLog { tx })
    }
}

fn write_loop(mut file: File, mut head: ChainHead, mut rx: mpsc::Receiver<Job>, path: String) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut buf = String::new();
        let mut next = head.clone();
        let mut failed = None;
        for (event, _) in &batch {
            match line(event, next.entries + 1, &next.hash) {
                Ok((text, hash)) => {
                    buf.push_str(&text);
                    buf.push('\n');
                    next = ChainHead {
                        entries: next.entries + 1,
                        hash,
                    };
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => file
                .write_all(buf.as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| format!("writing audit log {path}: {e}")),
        };
        if result.is_ok() {
            head = next;
        } else if let Ok(h) = resume(&mut file) {
            // A failed write may have left part of the batch; continue from
            // what is really on disk.
            head = h;
        }
        for (_, ack) in batch {
            let _ = ack.send(result.clone());
        }
    }
}

#[async_trait]
impl AuditSink for ChainedLog {
    async fn record(&self, event: &AuditEvent) -> Result<(), Error> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((event.clone(), ack))
            .await
            .map_err(|_| Error::Io("audit log writer stopped".into()))?;
        done.await
            .map_err(|_| Error::Io("audit log writer stopped".into()))?
            .map_err(Error::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;

    fn read(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn check(lines: &[String]) -> Result<ChainHead, ChainBreak> {
        verify(std::io::Cursor::new(lines.join("\n") + "\n"))
    }

    #[tokio::test]
    async fn chain_survives_reopen_and_names_the_first_tampered_line() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
        let path = dir.path().join("audit.jsonl");
        {
            let log = ChainedLog::open(&path)?;
            let writes = (0..20).map(|i| {
                let log = log.clone();
                async move {
                    let e = AuditEvent::new("put", Outcome::Success, i).target(format!("k{i}"));
                    log.record(&e).await
                }
            });
            for r in futures_join(writes).await {
                r?;
            }
        }
        // A reopened log continues the same chain.
        ChainedLog::open(&path)?
            .record(&AuditEvent::new("get", Outcome::Denied, 99))
            .await?;
        let lines = read(&path);
        assert_eq!(lines.len(), 21);
        assert_eq!(check(&lines).map(|h| h.entries), Ok(21));

        let mut altered = lines.clone();
        altered[4] = altered[4].replace("\"put\"", "\"del\"");
        assert_eq!(check(&altered).map_err(|b| b.line), Err(5));
        assert!(check(&altered)
            .err()
            .is_some_and(|b| b.reason.contains("altered")));

        let mut removed = lines.clone();
        removed.remove(7);
        let b = check(&removed).err();
        assert_eq!(b.as_ref().map(|b| b.line), Some(8));
        assert!(b.is_some_and(|b| b.reason.contains("removed")));

        let mut inserted = lines.clone();
        inserted.insert(3, lines[2].clone());
        let b = check(&inserted).err();
        assert_eq!(b.as_ref().map(|b| b.line), Some(4));
        assert!(b.is_some_and(|b| b.reason.contains("inserted")));

        // Rehashing an altered entry does not help: the next one no longer follows.
        let mut rehashed = lines.clone();
        let mut v: Map<String, Value> = serde_json::from_str(&rehashed[9]).unwrap_or_default();
        v.remove("hash");
        v.insert("action".into(), Value::from("del"));
        let h = hash_of(&v);
        v.insert("hash".into(), Value::from(h));
        rehashed[9] = Value::Object(v).to_string();
        assert_eq!(check(&rehashed).map_err(|b| b.line), Err(11));

        let mut garbage = lines;
        garbage[0] = "not json".into();
        assert_eq!(check(&garbage).map_err(|b| b.line), Err(1));
        Ok(())
    }

    #[tokio::test]
    async fn partial_last_line_from_a_crash_is_dropped() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
        let path = dir.path().join("audit.jsonl");
        ChainedLog::open(&path)?
            .record(&AuditEvent::new("a", Outcome::Success, 1))
            .await?;
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::Io(e.to_string()))?;
        f.write_all(b"{\"seq\":2,\"pr")
            .map_err(|e| Error::Io(e.to_string()))?;
        ChainedLog::open(&path)?
            .record(&AuditEvent::new("b", Outcome::Success, 2))
            .await?;
        let lines = read(&path);
        assert_eq!(check(&lines).map(|h| h.entries), Ok(2));
        Ok(())
    }

    async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            if let Ok(v) = h.await {
                out.push(v);
            }
        }
        out
    }
}
