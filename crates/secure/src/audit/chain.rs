//! A tamper-evident audit log: JSON lines, each carrying a keyed MAC that
//! also covers the MAC of the entry before it, so an altered, inserted or
//! removed entry breaks the chain at a line [`verify`] names, and nobody
//! without the key can write a chain that verifies.
//!
//! One line:
//! `{"seq":N,"prev":"<hex>",<the AuditEvent's fields>,"mac":"<hex>"}`
//! * `seq` counts from 1 with no gaps;
//! * `prev` is the previous line's `mac` (64 zeros on the first line);
//! * `mac` is hex HMAC-SHA256, under the log's key, of the line's own bytes
//!   up to (not including) `,"mac":`: the bytes as written, never a
//!   re-serialisation, so any change to them shows.
//!
//! The key never goes into the log file (keep it on another volume or in a
//! secret store). A MAC chain alone cannot show that its *tail* was cut
//! off: the writer therefore also keeps a [`Checkpoint`] of the newest
//! entry, MAC'd too, in a file of its own (keep it apart from the log, or
//! ship it off the machine), and [`verify`] given a checkpoint refuses a log
//! that ends before it or differs from it there.
//!
//! Writes are group-committed: concurrent events share one `fdatasync`,
//! and [`ChainedLog::record`] returns only once its line is durable.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{AuditEvent, AuditSink};
use crate::{Error, Secret};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most events written under one fsync.
const MAX_BATCH: usize = 512;
/// Longest line read back when resuming a log.
const MAX_LINE: u64 = 1 << 20;
/// What ends every line, around the MAC's 64 hex digits.
const MAC_OPEN: &str = ",\"mac\":\"";
const MAC_CLOSE: &str = "\"}";
/// How often the checkpoint is brought up to date (when entries were added).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// The key of an audit log: 32 random bytes, kept apart from the log.
pub type AuditKey = Secret<[u8; 32]>;

/// Reads a key file: 64 hex digits (whitespace around them ignored).
pub fn read_key(path: &Path) -> Result<AuditKey, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("audit key {}: {e}", path.display())))?;
    parse_key(text.trim())
        .ok_or_else(|| Error::Config(format!("audit key {}: not 64 hex digits", path.display())))
}

fn parse_key(hex: &str) -> Option<AuditKey> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Secret::new(key))
}

/// Reads the key file at `path`, or makes one (mode 0600) if there is none.
pub fn ensure_key(path: &Path) -> Result<AuditKey, Error> {
    if path.exists() {
        return read_key(path);
    }
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    write_private(path, hex::encode(key).as_bytes())
        .map_err(|e| Error::Io(format!("audit key {}: {e}", path.display())))?;
    Ok(Secret::new(key))
}

/// Writes `bytes` to `path` whole (temporary file, fsync, rename), 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn mac(key: &AuditKey, bytes: &[u8]) -> String {
    crate::mac::sign_hex(key.expose(), bytes)
}

/// Builds the line for `event` after the entry `(seq - 1, prev)`: the line
/// and its MAC.
fn line(
    key: &AuditKey,
    event: &AuditEvent,
    seq: u64,
    prev: &str,
) -> Result<(String, String), Error> {
    let Value::Object(mut body) =
        serde_json::to_value(event).map_err(|e| Error::Io(e.to_string()))?
    else {
        return Err(Error::Io("audit event is not a JSON object".into()));
    };
    body.remove("mac");
    body.insert("seq".into(), Value::from(seq));
    body.insert("prev".into(), Value::from(prev));
    let mut text = Value::Object(body).to_string();
    text.pop(); // the closing brace: the MAC goes before it
    let tag = mac(key, text.as_bytes());
    text.push_str(MAC_OPEN);
    text.push_str(&tag);
    text.push_str(MAC_CLOSE);
    Ok((text, tag))
}

/// Splits a line into the bytes its MAC covers and the MAC it states.
fn split_mac(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_suffix(MAC_CLOSE)?;
    let cut = body.len().checked_sub(64)?;
    let (covered, tag) = (body.get(..cut)?, body.get(cut..)?);
    let covered = covered.strip_suffix(MAC_OPEN)?;
    tag.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some((covered, tag))
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
    /// The last entry's MAC (the genesis value for an empty log).
    pub mac: String,
}

impl ChainHead {
    fn empty() -> Self {
        ChainHead {
            entries: 0,
            mac: GENESIS.into(),
        }
    }
}

/// A record, kept apart from the log, of an entry the log reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The entry's `seq`.
    pub seq: u64,
    /// The entry's MAC.
    pub mac: String,
    /// When the checkpoint was written (unix milliseconds).
    pub at_ms: i64,
    /// HMAC of the three fields above under the log's key.
    pub sig: String,
}

impl Checkpoint {
    fn signed_bytes(seq: u64, mac: &str, at_ms: i64) -> String {
        format!("checkpoint|{seq}|{mac}|{at_ms}")
    }

    fn new(key: &AuditKey, head: &ChainHead) -> Checkpoint {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let sig = mac(
            key,
            Self::signed_bytes(head.entries, &head.mac, at_ms).as_bytes(),
        );
        Checkpoint {
            seq: head.entries,
            mac: head.mac.clone(),
            at_ms,
            sig,
        }
    }

    /// Reads and checks a checkpoint file.
    pub fn read(path: &Path, key: &AuditKey) -> Result<Checkpoint, Error> {
        let bad = |why: &str| Error::Config(format!("audit checkpoint {}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
        let c: Checkpoint = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        let signed = Self::signed_bytes(c.seq, &c.mac, c.at_ms);
        if !crate::mac::verify_hex(key.expose(), signed.as_bytes(), &c.sig) {
            return Err(bad(
                "its signature does not match: it was altered, or belongs to another key",
            ));
        }
        Ok(c)
    }
}

/// Checks a whole log under `key`; with a `checkpoint`, also that the log
/// reaches the checkpoint's entry unchanged. Returns the head, or the first
/// break.
pub fn verify(
    reader: impl BufRead,
    key: &AuditKey,
    checkpoint: Option<&Checkpoint>,
) -> Result<ChainHead, ChainBreak> {
    let mut head = ChainHead::empty();
    let mut lines = 0u64;
    for (i, text) in reader.lines().enumerate() {
        let line = i as u64 + 1;
        lines = line;
        let brk = |reason: String| ChainBreak { line, reason };
        let text = text.map_err(|e| brk(format!("cannot be read ({e})")))?;
        let Some((covered, stated)) = split_mac(&text) else {
            return Err(brk(
                "does not end with its MAC: the entry was altered or inserted".into(),
            ));
        };
        if !crate::mac::verify_hex(key.expose(), covered.as_bytes(), stated) {
            return Err(brk(
                "its MAC does not match its bytes: the entry was altered (or the key is not this log's)".into(),
            ));
        }
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&text) else {
            return Err(brk("is not a JSON object: the entry was altered".into()));
        };
        let (Some(seq), Some(prev)) = (
            body.get("seq").and_then(Value::as_u64),
            body.get("prev").and_then(Value::as_str),
        ) else {
            return Err(brk(
                "lacks seq or prev: the entry was altered or inserted".into()
            ));
        };
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
        if prev != head.mac {
            return Err(brk(format!(
                "entry seq {seq} does not follow the entry before it: an entry was altered, inserted or removed"
            )));
        }
        head = ChainHead {
            entries: seq,
            mac: stated.to_owned(),
        };
        if let Some(c) = checkpoint.filter(|c| c.seq == seq) {
            if c.mac != head.mac {
                return Err(brk(format!(
                    "entry seq {seq} differs from the checkpoint of {}: the log was rewritten from here",
                    c.at_ms
                )));
            }
        }
    }
    if let Some(c) = checkpoint.filter(|c| c.seq > head.entries) {
        return Err(ChainBreak {
            line: lines + 1,
            reason: format!(
                "the log ends at entry {} but a checkpoint saw entry {}: its tail was cut off",
                head.entries, c.seq
            ),
        });
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
        return Ok(ChainHead::empty());
    };
    let damaged = || {
        Error::Config(
            "the last entry of the audit log is damaged; check it with `torua audit verify`".into(),
        )
    };
    let text = std::str::from_utf8(last).map_err(|_| damaged())?;
    let (_, tag) = split_mac(text).ok_or_else(damaged)?;
    let v: Value = serde_json::from_str(text).map_err(|_| damaged())?;
    let entries = v["seq"].as_u64().ok_or_else(damaged)?;
    Ok(ChainHead {
        entries,
        mac: tag.to_owned(),
    })
}

/// Whether an existing log was written before entries were MAC'd (its last
/// line carries a `hash`).
fn is_unkeyed(file: &mut File) -> bool {
    let mut first = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = std::io::BufReader::new(&mut *file).read_line(&mut first);
    let _ = file.seek(SeekFrom::End(0));
    let first = first.trim_end();
    !first.is_empty() && split_mac(first).is_none() && first.contains("\"hash\":")
}

type Job = (AuditEvent, oneshot::Sender<Result<(), String>>);

/// An [`AuditSink`] appending MAC-chained JSON lines to one file, and
/// keeping a checkpoint of its newest entry in another.
#[derive(Debug, Clone)]
pub struct ChainedLog {
    tx: mpsc::Sender<Job>,
}

impl ChainedLog {
    /// Opens (or creates, mode 0600) the log at `path` and continues its
    /// chain under `key`, writing checkpoints to `checkpoint`. A log from
    /// before entries were MAC'd is set aside (renamed `<path>.unkeyed-<ms>`)
    /// and a new chain begins. Must be called inside a Tokio runtime only
    /// for `record`; the writer is a thread of its own.
    pub fn open(path: &Path, key: AuditKey, checkpoint: PathBuf) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io(format!("audit log {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let open = || {
            let mut opts = OpenOptions::new();
            opts.read(true).append(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            opts.open(path)
        };
        let mut file = open().map_err(io)?;
        if is_unkeyed(&mut file) {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let aside = path.with_extension(format!("jsonl.unkeyed-{ms}"));
            std::fs::rename(path, &aside).map_err(io)?;
            tracing::warn!(old = %aside.display(), "the audit log was written before entries were MAC'd; it was set aside and a new chain begins");
            file = open().map_err(io)?;
        }
        let head = resume(&mut file)?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let display = path.display().to_string();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                Writer {
                    file,
                    head,
                    key,
                    checkpoint,
                    checkpointed: None,
                    path: display,
                }
                .run(rx)
            })
            .map_err(io)?;
        Ok(ChainedLog { tx })
    }
}

struct Writer {
    file: File,
    head: ChainHead,
    key: AuditKey,
    checkpoint: PathBuf,
    /// The entry and time of the last checkpoint written.
    checkpointed: Option<(u64, Instant)>,
    path: String,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        self.write_checkpoint();
        loop {
            let first = match rx.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Idle: bring the checkpoint up to date, then wait.
                    self.write_checkpoint();
                    match rx.blocking_recv() {
                        Some(job) => job,
                        None => break,
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let result = self.append(&batch);
            for (_, ack) in batch {
                let _ = ack.send(result.clone());
            }
            if self
                .checkpointed
                .is_none_or(|(_, at)| at.elapsed() >= CHECKPOINT_EVERY)
            {
                self.write_checkpoint();
            }
        }
        self.write_checkpoint();
    }

    fn append(&mut self, batch: &[Job]) -> Result<(), String> {
        let mut buf = String::new();
        let mut next = self.head.clone();
        for (event, _) in batch {
            let (text, mac) =
                line(&self.key, event, next.entries + 1, &next.mac).map_err(|e| e.to_string())?;
            buf.push_str(&text);
            buf.push('\n');
            next = ChainHead {
                entries: next.entries + 1,
                mac,
            };
        }
        let written = self
            .file
            .write_all(buf.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("writing audit log {}: {e}", self.path));
        match written {
            Ok(()) => self.head = next,
            Err(_) => {
                // A failed write may have left part of the batch; continue
                // from what is really on disk.
                if let Ok(h) = resume(&mut self.file) {
                    self.head = h;
                }
            }
        }
        written
    }

    /// Records the newest durable entry in the checkpoint file, if it moved.
    fn write_checkpoint(&mut self) {
        if self
            .checkpointed
            .is_some_and(|(seq, _)| seq == self.head.entries)
        {
            return;
        }
        let c = Checkpoint::new(&self.key, &self.head);
        let written = serde_json::to_vec(&c)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| write_private(&self.checkpoint, &bytes));
        match written {
            Ok(()) => self.checkpointed = Some((c.seq, Instant::now())),
            Err(e) => {
                tracing::error!(path = %self.checkpoint.display(), error = %e, "audit checkpoint not written")
            }
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

    fn key() -> AuditKey {
        Secret::new([7u8; 32])
    }

    fn check(lines: &[String], checkpoint: Option<&Checkpoint>) -> Result<ChainHead, ChainBreak> {
        verify(
            std::io::Cursor::new(lines.join("\n") + "\n"),
            &key(),
            checkpoint,
        )
    }

    /// Waits for the writer thread to checkpoint entry `seq`.
    fn checkpoint_at(path: &Path, seq: u64) -> Checkpoint {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Checkpoint::read(path, &key()) {
                Ok(c) if c.seq == seq => return c,
                _ if Instant::now() > deadline => panic!("no checkpoint of entry {seq}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    async fn write_log(path: &Path, checkpoint: &Path, n: i64) {
        let log = ChainedLog::open(path, key(), checkpoint.to_owned()).unwrap();
        let writes = (0..n).map(|i| {
            let log = log.clone();
            async move {
                let e = AuditEvent::new("put", Outcome::Success, i).target(format!("k{i}"));
                log.record(&e).await
            }
        });
        for r in futures_join(writes).await {
            r.unwrap();
        }
    }

    #[tokio::test]
    async fn chain_survives_reopen_and_names_the_first_tampered_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cp) = (dir.path().join("audit.jsonl"), dir.path().join("cp.json"));
        write_log(&path, &cp, 20).await;
        // A reopened log continues the same chain.
        ChainedLog::open(&path, key(), cp.clone())
            .unwrap()
            .record(&AuditEvent::new("get", Outcome::Denied, 99))
            .await
            .unwrap();
        let lines = read(&path);
        assert_eq!(lines.len(), 21);
        let checkpoint = checkpoint_at(&cp, 21);
        assert_eq!(check(&lines, Some(&checkpoint)).map(|h| h.entries), Ok(21));
        // Another key verifies nothing.
        let other = verify(
            std::io::Cursor::new(lines.join("\n") + "\n"),
            &Secret::new([8u8; 32]),
            None,
        );
        assert_eq!(other.map_err(|b| b.line), Err(1));

        let mut altered = lines.clone();
        altered[4] = altered[4].replace("\"put\"", "\"del\"");
        let b = check(&altered, None).unwrap_err();
        assert_eq!(b.line, 5);
        assert!(b.reason.contains("altered"), "{b}");

        // Raw bytes, not a re-serialisation: a change that parses to the
        // same JSON still shows.
        let mut spaced = lines.clone();
        spaced[6] = spaced[6].replacen("\"seq\":", "\"seq\": ", 1);
        assert_eq!(check(&spaced, None).map_err(|b| b.line), Err(7));

        let mut removed = lines.clone();
        removed.remove(7);
        let b = check(&removed, None).unwrap_err();
        assert_eq!(b.line, 8);
        assert!(b.reason.contains("removed"), "{b}");

        let mut inserted = lines.clone();
        inserted.insert(3, lines[2].clone());
        let b = check(&inserted, None).unwrap_err();
        assert_eq!(b.line, 4);
        assert!(b.reason.contains("inserted"), "{b}");

        // Without the key a rewritten entry cannot be given a valid MAC.
        let mut forged = lines.clone();
        let (covered, _) = split_mac(&forged[9]).unwrap();
        let covered = covered.replace("\"put\"", "\"del\"");
        let tag = crate::mac::sign_hex(b"a guessed key", covered.as_bytes());
        forged[9] = format!("{covered}{MAC_OPEN}{tag}{MAC_CLOSE}");
        assert_eq!(check(&forged, None).map_err(|b| b.line), Err(10));

        // A cut-off tail verifies as a chain, but not against the checkpoint.
        let truncated = lines[..15].to_vec();
        assert_eq!(check(&truncated, None).map(|h| h.entries), Ok(15));
        let b = check(&truncated, Some(&checkpoint)).unwrap_err();
        assert!(b.reason.contains("cut off"), "{b}");
        // Nor a checkpoint altered to match.
        let mut bent = checkpoint.clone();
        bent.seq = 15;
        std::fs::write(&cp, serde_json::to_vec(&bent).unwrap()).unwrap();
        assert!(Checkpoint::read(&cp, &key()).is_err());

        let mut garbage = lines;
        garbage[0] = "not json".into();
        assert_eq!(check(&garbage, None).map_err(|b| b.line), Err(1));
    }

    #[tokio::test]
    async fn partial_last_line_from_a_crash_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cp) = (dir.path().join("audit.jsonl"), dir.path().join("cp.json"));
        write_log(&path, &cp, 1).await;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"pr").unwrap();
        write_log(&path, &cp, 1).await;
        let lines = read(&path);
        assert_eq!(check(&lines, None).map(|h| h.entries), Ok(2));
    }

    #[tokio::test]
    async fn a_log_from_before_macs_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cp) = (dir.path().join("audit.jsonl"), dir.path().join("cp.json"));
        std::fs::write(&path, "{\"seq\":1,\"prev\":\"00\",\"hash\":\"ab\"}\n").unwrap();
        write_log(&path, &cp, 2).await;
        assert_eq!(check(&read(&path), None).map(|h| h.entries), Ok(2));
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("unkeyed"))
            .collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(parse_key(&"ab".repeat(32)).is_some());
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let made = ensure_key(&p).unwrap();
        assert_eq!(read_key(&p).unwrap().expose(), made.expose());
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
