//! Raft snapshots on their way between replicas, streamed through a file
//! instead of held in memory (a shard may hold gigabytes).
//!
//! A [`SnapshotFile`] is an unnamed file in the shards directory (gone
//! when closed, or when the process dies), encrypted with a
//! [`Keystream`] that exists only in memory: a shard sealed at rest is
//! never written out in the clear, and no key for it is ever stored.
//! openraft reads and writes it in chunks at any offset (it is
//! `AsyncRead + AsyncWrite + AsyncSeek`); the shard writes and reads it
//! sequentially from its blocking threads.
//!
//! Layout of the plaintext (little-endian):
//! `MAGIC | revision u64 | records… | END u32 | record count u64`, each
//! record `key length u32 | key | record length u32 | Record v3`. The count
//! after the end mark catches a file cut short; lengths are bounded before
//! anything is allocated.

use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use secure::scratch::Keystream;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::{Record, StoreError, MAX_CONTENT_TYPE_LEN, MAX_KEY_LEN};

const MAGIC: &[u8; 8] = b"TORUASN1";
/// Where a key length would be: no more records.
const END: u32 = u32::MAX;
/// Largest encoded record accepted: the header, the longest content type
/// and a value of up to 1 GiB (far above any node's value limit).
const MAX_RECORD: u32 = (1 << 30) + 11 + MAX_CONTENT_TYPE_LEN as u32;
/// Bytes encrypted per write call (re-done if the file is busy).
const STEP: usize = 256 << 10;
/// Buffer of the sequential readers and writers.
const BUFFER: usize = 1 << 20;

/// A snapshot in transit. See the module documentation.
pub struct SnapshotFile {
    file: tokio::fs::File,
    keys: Arc<Keystream>,
    /// The position the caller sees (where the next byte is read or written).
    pos: u64,
    staged: Vec<u8>,
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFile")
            .field("pos", &self.pos)
            .finish()
    }
}

impl SnapshotFile {
    /// A new, empty snapshot file in `dir`. Blocking (one `open`).
    pub fn create(dir: &Path) -> Result<SnapshotFile, StoreError> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(SnapshotFile::from_parts(
            file,
            Arc::new(Keystream::random()),
        ))
    }

    fn from_parts(file: std::fs::File, keys: Arc<Keystream>) -> SnapshotFile {
        SnapshotFile {
            file: tokio::fs::File::from_std(file),
            keys,
            pos: 0,
            staged: Vec::new(),
        }
    }

    /// The file for sequential, blocking use, after every write made so
    /// far has reached it (and failed, if it failed).
    async fn into_std(mut self) -> Result<(std::fs::File, Arc<Keystream>), StoreError> {
        tokio::io::AsyncWriteExt::flush(&mut self.file).await?;
        Ok((self.file.into_std().await, self.keys))
    }

    /// Writes a snapshot with `write` (blocking: a blocking thread), then
    /// rewinds it for reading.
    pub(crate) fn write_with<T>(
        dir: &Path,
        write: impl FnOnce(&mut SnapshotWriter) -> Result<T, StoreError>,
    ) -> Result<(SnapshotFile, T), StoreError> {
        use std::io::Seek;
        let keys = Arc::new(Keystream::random());
        let mut w = SnapshotWriter {
            out: io::BufWriter::with_capacity(
                BUFFER,
                Encrypting {
                    inner: tempfile::tempfile_in(dir)?,
                    keys: keys.clone(),
                    pos: 0,
                    buf: Vec::new(),
                },
            ),
            count: 0,
        };
        let t = write(&mut w)?;
        let mut file = w.finish()?;
        file.rewind()?;
        Ok((SnapshotFile::from_parts(file, keys), t))
    }

    /// The reader of this snapshot from its start, for a blocking thread.
    pub(crate) async fn reader(self) -> Result<SnapshotReader, StoreError> {
        use std::io::Seek;
        let (mut file, keys) = self.into_std().await?;
        file.rewind()?;
        SnapshotReader::new(io::BufReader::with_capacity(
            BUFFER,
            Decrypting {
                inner: file,
                keys,
                pos: 0,
            },
        ))
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.file).poll_read(cx, buf))?;
        let new = &mut buf.filled_mut()[before..];
        me.keys.apply(me.pos, new);
        me.pos += new.len() as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        // Encrypted at the caller's position each time: if the file is busy
        // the caller comes back, possibly with other bytes.
        me.staged.clear();
        me.staged.extend_from_slice(&buf[..buf.len().min(STEP)]);
        me.keys.apply(me.pos, &mut me.staged);
        let n = ready!(Pin::new(&mut me.file).poll_write(cx, &me.staged))?;
        me.pos += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.get_mut().file).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let me = self.get_mut();
        let pos = ready!(Pin::new(&mut me.file).poll_complete(cx))?;
        me.pos = pos;
        Poll::Ready(Ok(pos))
    }
}

/// Encrypts what it writes, in order from the start of the file.
struct Encrypting {
    inner: std::fs::File,
    keys: Arc<Keystream>,
    pos: u64,
    buf: Vec<u8>,
}

impl Write for Encrypting {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.clear();
        self.buf.extend_from_slice(data);
        self.keys.apply(self.pos, &mut self.buf);
        self.inner.write_all(&self.buf)?;
        self.pos += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts what it reads, in order from the start of the file.
struct Decrypting {
    inner: std::fs::File,
    keys: Arc<Keystream>,
    pos: u64,
}

impl Read for Decrypting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.keys.apply(self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes a snapshot's records in order.
pub(crate) struct SnapshotWriter {
    out: io::BufWriter<Encrypting>,
    count: u64,
}

impl SnapshotWriter {
    /// The header; first, once.
    pub(crate) fn revision(&mut self, revision: u64) -> Result<(), StoreError> {
        self.out.write_all(MAGIC)?;
        self.out.write_all(&revision.to_le_bytes())?;
        Ok(())
    }

    pub(crate) fn record(&mut self, key: &str, record: &Record) -> Result<(), StoreError> {
        let len = |n: usize| u32::try_from(n).map_err(|_| StoreError::Corrupt("record too long"));
        self.out.write_all(&len(key.len())?.to_le_bytes())?;
        self.out.write_all(key.as_bytes())?;
        let enc = record.encode();
        self.out.write_all(&len(enc.len())?.to_le_bytes())?;
        self.out.write_all(&enc)?;
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<std::fs::File, StoreError> {
        self.out.write_all(&END.to_le_bytes())?;
        self.out.write_all(&self.count.to_le_bytes())?;
        let enc = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(enc.inner)
    }
}

/// Reads a snapshot's records in order; an iterator that ends with an
/// error if the file is cut short, malformed or has bytes after its end.
pub(crate) struct SnapshotReader {
    input: io::BufReader<Decrypting>,
    revision: u64,
    count: u64,
    done: bool,
}

impl SnapshotReader {
    fn new(mut input: io::BufReader<Decrypting>) -> Result<SnapshotReader, StoreError> {
        let mut magic = [0; 8];
        input.read_exact(&mut magic).map_err(truncated)?;
        if &magic != MAGIC {
            return Err(StoreError::Corrupt("not a snapshot"));
        }
        let revision = read_u64(&mut input)?;
        Ok(SnapshotReader {
            input,
            revision,
            count: 0,
            done: false,
        })
    }

    /// The shard revision the snapshot was taken at.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    fn next_record(&mut self) -> Result<Option<(String, Record)>, StoreError> {
        let key_len = read_u32(&mut self.input)?;
        if key_len == END {
            if read_u64(&mut self.input)? != self.count {
                return Err(StoreError::Corrupt("snapshot record count differs"));
            }
            if self.input.read(&mut [0])? != 0 {
                return Err(StoreError::Corrupt("bytes after the snapshot's end"));
            }
            return Ok(None);
        }
        if key_len as usize > MAX_KEY_LEN {
            return Err(StoreError::Corrupt("snapshot key too long"));
        }
        let key = String::from_utf8(read_exactly(&mut self.input, key_len)?)
            .map_err(|_| StoreError::Corrupt("snapshot key is not UTF-8"))?;
        let rec_len = read_u32(&mut self.input)?;
        if rec_len > MAX_RECORD {
            return Err(StoreError::Corrupt("snapshot record too long"));
        }
        let record = Record::decode(&read_exactly(&mut self.input, rec_len)?)?;
        self.count += 1;
        Ok(Some((key, record)))
    }
}

impl Iterator for SnapshotReader {
    type Item = Result<(String, Record), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_record();
        self.done = !matches!(next, Ok(Some(_)));
        next.transpose()
    }
}

fn truncated(e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => StoreError::Corrupt("snapshot cut short"),
        _ => e.into(),
    }
}

/// `len` bytes; memory grows with what is really there, not with a
/// length read from the file.
fn read_exactly(r: &mut impl Read, len: u32) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut v)?;
    if v.len() != len as usize {
        return Err(StoreError::Corrupt("snapshot cut short"));
    }
    Ok(v)
}

fn read_u32(r: &mut impl Read) -> Result<u32, StoreError> {
    let mut b = [0; 4];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64, StoreError> {
    let mut b = [0; 8];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;
    use crate::{ShardState, ShardStore};

    const SECRET: &[u8] = b"a value that must not reach the disk in the clear";

    async fn shard_with(n: usize) -> (tempfile::TempDir, ShardStore, Arc<crate::Shard>) {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path(), None).unwrap();
        let s = store.create_shard(1, ShardState::Replicated).await.unwrap();
        for i in 0..n {
            s.put(
                format!("k{i:04}"),
                Record::new("text/plain", SECRET.to_vec()),
            )
            .await
            .unwrap();
        }
        (dir, store, s)
    }

    async fn raw(file: SnapshotFile) -> Vec<u8> {
        let (mut f, _) = file.into_std().await.unwrap();
        let mut all = Vec::new();
        std::io::Seek::rewind(&mut f).unwrap();
        f.read_to_end(&mut all).unwrap();
        all
    }

    #[tokio::test]
    async fn snapshots_are_encrypted_on_disk_and_read_back_whole() {
        let (_d, _store, s) = shard_with(50).await;
        let (file, _) = s.snapshot().await.unwrap();
        let bytes = raw(file).await;
        assert!(bytes.len() > 50 * SECRET.len(), "every record is there");
        let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!found(SECRET), "a value is in the file in the clear");
        assert!(!found(MAGIC), "the header is in the file in the clear");
        // Control: the same file, read through its keystream, holds them.
        let (file, _) = s.snapshot().await.unwrap();
        let reader = file.reader().await.unwrap();
        assert_eq!(reader.revision(), 50);
        let records: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(records.len(), 50);
        assert!(records.iter().all(|(_, r)| r.value == SECRET));
    }

    /// Copies `from` into `to` as openraft does: chunks at offsets, one of
    /// them sent twice, with seeks in between.
    async fn copy_in_chunks(from: &mut SnapshotFile, to: &mut SnapshotFile, chunk: usize) {
        let end = from.seek(io::SeekFrom::End(0)).await.unwrap();
        let mut offset = 0;
        let mut resent = false;
        while offset < end {
            from.seek(io::SeekFrom::Start(offset)).await.unwrap();
            let mut buf = vec![0; chunk];
            let mut n = 0;
            while n < chunk {
                let m = from.read(&mut buf[n..]).await.unwrap();
                if m == 0 {
                    break;
                }
                n += m;
            }
            to.seek(io::SeekFrom::Start(offset)).await.unwrap();
            to.write_all(&buf[..n]).await.unwrap();
            if offset > 0 && !resent {
                resent = true; // the same chunk again, as after a lost answer
                continue;
            }
            offset += n as u64;
        }
    }

    #[tokio::test]
    async fn a_snapshot_moved_in_chunks_restores_the_same_shard() {
        let (_d, store, s) = shard_with(300).await;
        s.delete("k0007".into()).await.unwrap();
        let (mut from, _) = s.snapshot().await.unwrap();
        let other = store.create_shard(2, ShardState::Replicated).await.unwrap();
        other
            .put("stale".into(), Record::new("t", vec![]))
            .await
            .unwrap();
        let mut to = other.receive_snapshot().await.unwrap();
        copy_in_chunks(&mut from, &mut to, 1000).await;
        other.restore(to, b"m".to_vec()).await.unwrap();
        assert_eq!(other.get("stale").await.unwrap(), None);
        assert_eq!(other.get("k0007").await.unwrap(), None);
        let r = other.get("k0299").await.unwrap().unwrap();
        assert_eq!((r.value.as_slice(), r.version), (SECRET, 300));
        assert_eq!(other.list("", None, 1000).await.unwrap().len(), 299);
        // The revision came along: the next write follows it.
        assert_eq!(
            other
                .put("x".into(), Record::new("t", vec![]))
                .await
                .unwrap(),
            302
        );
    }

    #[tokio::test]
    async fn a_damaged_snapshot_changes_nothing() {
        let (_d, store, s) = shard_with(20).await;
        let other = store.create_shard(2, ShardState::Replicated).await.unwrap();
        other
            .put("mine".into(), Record::new("t", b"v".to_vec()))
            .await
            .unwrap();
        let (file, _) = s.snapshot().await.unwrap();
        let whole = raw(file).await.len() as u64;
        // Cut short at several places, and one byte too many.
        for len in [0, 4, 20, whole / 2, whole - 1, whole + 1] {
            let (file, _) = s.snapshot().await.unwrap();
            let (f, keys) = file.into_std().await.unwrap();
            f.set_len(len).unwrap();
            let err = other
                .restore(SnapshotFile::from_parts(f, keys), b"m".to_vec())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("snapshot"), "{len}: {err}");
            assert_eq!(other.list("", None, 100).await.unwrap(), ["mine"], "{len}");
        }
        // Control: whole, it installs.
        let (file, _) = s.snapshot().await.unwrap();
        other.restore(file, b"m".to_vec()).await.unwrap();
        assert_eq!(other.list("", None, 100).await.unwrap().len(), 20);
    }
}
