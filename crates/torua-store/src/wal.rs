//! The node's write-ahead log for all of its Raft groups, in
//! `<data dir>/raft/wal/`, shared by every shard replica on the node.
//!
//! A log made for appending, as etcd's WAL and TiKV's raft-engine are:
//! segment files (`<seq>.wal`, 32 MiB, filled with zeros when made so an
//! append changes no file size and `fdatasync` writes data only) hold
//! checksummed frames, one per write. Writes from all groups go through
//! one queue to one writer, which appends everything queued with one
//! `pwrite` and one `fdatasync` (group commit): a node with many shards
//! does not pay one fsync per shard per batch. [`Wal::submit`] returns at
//! once and calls back when the write is durable, so a Raft group can go
//! on while its entries are flushed; writes are applied in submission
//! order. [`Wal::record`] queues a write that need not be durable before
//! anything goes on (Raft's commit index): it is written with the next
//! commit and made durable by the next `fdatasync`, never one of its own.
//!
//! An in-memory index maps each group's entries to where they are in the
//! files, and holds each group's named state values (vote, committed,
//! purged); opening the log replays the frames to rebuild it. A frame cut
//! short by a crash at the end of the newest segment was never
//! acknowledged: it is dropped and zeroed. A bad frame anywhere else is
//! corruption, and the log refuses to open.
//!
//! Space comes back by whole segments, oldest first: each segment starts
//! with every group's state, so one whose entries are all gone (purged,
//! truncated, replaced) is deleted once the ones before it are. When the
//! files hold more than twice the live entries, the oldest segment's live
//! entries are copied forward so it can go.
//!
//! Entries are opaque bytes to this module, keyed by `(group, index)`; with
//! a master key they are sealed at rest (AAD `"torua-raft-log" | group |
//! index`, see `crypto.rs`), so a copy moved between files stays valid.
//! A log from before segment files (`raft/log.redb`) is moved into them
//! the first time the node opens.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::{self, MasterKeys};
use crate::tables::{WAL_LOG, WAL_STATE};
use crate::{non_empty, StoreError};

/// Most queued writes folded into one group commit.
const MAX_GROUP: usize = 4096;
/// Size past which the next write starts a new segment (a larger write
/// still goes whole into one).
const SEGMENT_BYTES: u64 = 32 << 20;
/// Zeros written ahead of the frames: an append into them changes no file
/// size, so its `fdatasync` writes data only (measured: about a third
/// less time per sync than appending at the end of the file).
const ZERO_AHEAD: u64 = 4 << 20;
/// Writes this large get no zeros ahead of them.
const LARGE_WRITE: usize = 256 << 10;
const MAGIC: &[u8; 8] = b"TORUAWAL";
const VERSION: u32 = 1;
/// Magic, version, sequence number.
const HEADER_BYTES: u64 = 8 + 4 + 8;
/// A frame: payload length (u32 LE), CRC-32C of the payload, payload.
const FRAME_HEADER: usize = 8;
/// Frames written when copying entries forward stop near this size.
const COPY_FRAME_BYTES: usize = 4 << 20;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

// Records in a frame's payload, each after its one-byte tag:
const APPEND: u8 = 1; //   group u32, index u64, length u32, stored entry
const TRUNCATE: u8 = 2; // group u32, from u64
const PURGE: u8 = 3; //    group u32, upto u64
const STATE: u8 = 4; //    group u32, name length u8, name, length u32, value
const DROP: u8 = 5; //     group u32

/// One change to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalWrite {
    /// Stores entries of `group` at their indexes (replacing any there).
    Append {
        /// Raft group (shard id).
        group: u32,
        /// `(index, entry)`, ascending.
        entries: Vec<(u64, Vec<u8>)>,
    },
    /// Removes the entries of `group` from index `from` on.
    Truncate {
        /// Raft group.
        group: u32,
        /// First index removed.
        from: u64,
    },
    /// Removes the entries of `group` up to and including `upto`.
    Purge {
        /// Raft group.
        group: u32,
        /// Last index removed.
        upto: u64,
    },
    /// Sets a named state value of `group`.
    SetState {
        /// Raft group.
        group: u32,
        /// Name (`vote`, `committed`, …; at most 255 bytes).
        name: &'static str,
        /// The value.
        value: Vec<u8>,
    },
    /// Forgets everything of `group` (the replica left this node).
    DropGroup {
        /// Raft group.
        group: u32,
    },
}

/// Called once the write is durable (or failed).
pub type WalDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Job {
    write: WalWrite,
    done: WalDone,
    /// Its writer waits for an `fdatasync` (see [`Wal::record`]).
    durable: bool,
}

/// Where a stored entry is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u64,
    off: u64,
    len: u32,
}

#[derive(Default)]
struct Group {
    entries: BTreeMap<u64, Loc>,
    state: BTreeMap<String, Vec<u8>>,
}

struct Segment {
    /// Shared with readers, which may still read a deleted segment.
    file: Arc<File>,
    /// Entries the index points into it, and their bytes.
    live: u64,
    live_bytes: u64,
    /// Bytes it holds (its frames; the zeros after them do not count).
    used: u64,
}

/// What the log holds now, rebuilt from the frames on open.
#[derive(Default)]
struct Index {
    groups: HashMap<u32, Group>,
    segments: BTreeMap<u64, Segment>,
}

/// A record of a frame. Entries are `E`: their stored form when written,
/// where they are in the files ([`Loc`]) when read back or indexed.
enum Rec<E = Vec<u8>> {
    Append {
        group: u32,
        entries: Vec<(u64, E)>,
    },
    Truncate {
        group: u32,
        from: u64,
    },
    Purge {
        group: u32,
        upto: u64,
    },
    State {
        group: u32,
        name: String,
        value: Vec<u8>,
    },
    Drop {
        group: u32,
    },
}

impl<E> Rec<E> {
    /// The same record with each entry replaced by `f(group, index, entry)`.
    fn map<T>(
        self,
        mut f: impl FnMut(u32, u64, E) -> Result<T, StoreError>,
    ) -> Result<Rec<T>, StoreError> {
        Ok(match self {
            Rec::Append { group, entries } => Rec::Append {
                group,
                entries: entries
                    .into_iter()
                    .map(|(i, e)| f(group, i, e).map(|t| (i, t)))
                    .collect::<Result<_, _>>()?,
            },
            Rec::Truncate { group, from } => Rec::Truncate { group, from },
            Rec::Purge { group, upto } => Rec::Purge { group, upto },
            Rec::State { group, name, value } => Rec::State { group, name, value },
            Rec::Drop { group } => Rec::Drop { group },
        })
    }
}

impl Index {
    fn forget(&mut self, loc: Loc) {
        if let Some(s) = self.segments.get_mut(&loc.seg) {
            s.live = s.live.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(u64::from(loc.len));
        }
    }

    fn apply(&mut self, rec: Rec<Loc>) {
        let gone: Vec<Loc> = match rec {
            Rec::Append { group, entries } => {
                let mut gone = Vec::new();
                for (index, loc) in entries {
                    if let Some(s) = self.segments.get_mut(&loc.seg) {
                        s.live += 1;
                        s.live_bytes += u64::from(loc.len);
                    }
                    let g = self.groups.entry(group).or_default();
                    gone.extend(g.entries.insert(index, loc));
                }
                gone
            }
            Rec::Truncate { group, from } => match self.groups.get_mut(&group) {
                Some(g) => g.entries.split_off(&from).into_values().collect(),
                None => Vec::new(),
            },
            Rec::Purge { group, upto } => match self.groups.get_mut(&group) {
                Some(g) => {
                    let kept = match upto.checked_add(1) {
                        Some(next) => g.entries.split_off(&next),
                        None => BTreeMap::new(),
                    };
                    std::mem::replace(&mut g.entries, kept)
                        .into_values()
                        .collect()
                }
                None => Vec::new(),
            },
            Rec::State { group, name, value } => {
                self.groups
                    .entry(group)
                    .or_default()
                    .state
                    .insert(name, value);
                Vec::new()
            }
            Rec::Drop { group } => match self.groups.remove(&group) {
                Some(g) => g.entries.into_values().collect(),
                None => Vec::new(),
            },
        };
        for loc in gone {
            self.forget(loc);
        }
    }

    /// Every group's state, as records (what a new segment starts with).
    fn state_records(&self) -> Vec<Rec> {
        let mut out = Vec::new();
        for (group, g) in &self.groups {
            for (name, value) in &g.state {
                out.push(Rec::State {
                    group: *group,
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        out
    }

    fn read(&self, loc: Loc) -> Result<Vec<u8>, StoreError> {
        let seg = self
            .segments
            .get(&loc.seg)
            .ok_or(StoreError::Corrupt("raft log segment missing"))?;
        read_at(&seg.file, loc)
    }
}

fn read_at(file: &File, loc: Loc) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0; loc.len as usize];
    file.read_exact_at(&mut buf, loc.off)?;
    Ok(buf)
}

/// Appends `recs` to `buf` as one frame (none if they record nothing);
/// notes in `placed` each entry's offset and length in `buf`, in order.
fn encode_frame(
    buf: &mut Vec<u8>,
    recs: &[Rec],
    placed: &mut Vec<(usize, u32)>,
) -> Result<(), StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    let len32 = |n: usize| {
        u32::try_from(n).map_err(|_| StoreError::Invalid("raft log entry over 4 GiB".into()))
    };
    for rec in recs {
        match rec {
            Rec::Append { group, entries } => {
                for (index, stored) in entries {
                    buf.push(APPEND);
                    buf.extend_from_slice(&group.to_le_bytes());
                    buf.extend_from_slice(&index.to_le_bytes());
                    let len = len32(stored.len())?;
                    buf.extend_from_slice(&len.to_le_bytes());
                    placed.push((buf.len(), len));
                    buf.extend_from_slice(stored);
                }
            }
            Rec::Truncate { group, from } => {
                buf.push(TRUNCATE);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(&from.to_le_bytes());
            }
            Rec::Purge { group, upto } => {
                buf.push(PURGE);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(&upto.to_le_bytes());
            }
            Rec::State { group, name, value } => {
                let n = u8::try_from(name.len()).map_err(|_| {
                    StoreError::Invalid("raft log state name over 255 bytes".into())
                })?;
                buf.push(STATE);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.push(n);
                buf.extend_from_slice(name.as_bytes());
                buf.extend_from_slice(&len32(value.len())?.to_le_bytes());
                buf.extend_from_slice(value);
            }
            Rec::Drop { group } => {
                buf.push(DROP);
                buf.extend_from_slice(&group.to_le_bytes());
            }
        }
    }
    if buf.len() == start + FRAME_HEADER {
        // Nothing to record; an empty frame would read as the end of data.
        buf.truncate(start);
        return Ok(());
    }
    let payload = len32(buf.len() - start - FRAME_HEADER)?;
    let crc = CRC.checksum(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&payload.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads a frame's payload front to back.
struct Reader<'a> {
    payload: &'a [u8],
    at: usize,
}

const BAD_FRAME: StoreError = StoreError::Corrupt("malformed raft log frame");

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(n).ok_or(BAD_FRAME)?;
        let s = self.payload.get(self.at..end).ok_or(BAD_FRAME)?;
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        b.try_into().map(u64::from_le_bytes).map_err(|_| BAD_FRAME)
    }
}

/// Reads a frame's records; `base` is the payload's offset in segment `seg`.
fn decode_frame(payload: &[u8], seg: u64, base: u64) -> Result<Vec<Rec<Loc>>, StoreError> {
    let mut r = Reader { payload, at: 0 };
    let mut out = Vec::new();
    while r.at < payload.len() {
        let tag = r.take(1)?[0];
        let group = r.u32()?;
        out.push(match tag {
            APPEND => {
                let index = r.u64()?;
                let len = r.u32()?;
                let off = base + r.at as u64;
                r.take(len as usize)?;
                Rec::Append {
                    group,
                    entries: vec![(index, Loc { seg, off, len })],
                }
            }
            TRUNCATE => Rec::Truncate {
                group,
                from: r.u64()?,
            },
            PURGE => Rec::Purge {
                group,
                upto: r.u64()?,
            },
            STATE => {
                let n = r.take(1)?[0] as usize;
                let name = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| BAD_FRAME)?;
                let len = r.u32()? as usize;
                Rec::State {
                    group,
                    name,
                    value: r.take(len)?.to_vec(),
                }
            }
            DROP => Rec::Drop { group },
            _ => return Err(BAD_FRAME),
        });
    }
    Ok(out)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Makes segment `seq`: header, then zeros to `size`, durable before it
/// gets its name (a crash leaves a `.tmp` file, removed on open).
fn create_segment(dir: &Path, seq: u64) -> Result<File, StoreError> {
    let size = ZERO_AHEAD;
    let tmp = dir.join(format!("{seq:016x}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let mut header = Vec::with_capacity(HEADER_BYTES as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    file.write_all_at(&header, 0)?;
    zero(&file, HEADER_BYTES, size)?;
    file.sync_all()?;
    std::fs::rename(&tmp, segment_path(dir, seq))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Writes zeros over `[from, to)`.
fn zero(file: &File, from: u64, to: u64) -> Result<(), StoreError> {
    let chunk = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(chunk.len() as u64) as usize;
        file.write_all_at(&chunk[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The writer's side: the active segment and where the next frame goes.
struct Writer {
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
    master: Option<Arc<MasterKeys>>,
    segment_bytes: u64,
    active: u64,
    file: Arc<File>,
    off: u64,
    /// The active segment is zeros from `off` to here.
    zeroed: u64,
    /// The active segment has frames written since its last `fdatasync`.
    unsynced: bool,
}

impl Writer {
    fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// Starts segment `active + 1`, beginning with every group's state.
    fn rotate(&mut self) -> Result<(), StoreError> {
        // Only the newest segment may end in a frame a crash cut short.
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        let seq = self.active + 1;
        let file = Arc::new(create_segment(&self.dir, seq)?);
        self.index().segments.insert(
            seq,
            Segment {
                file: file.clone(),
                live: 0,
                live_bytes: 0,
                used: HEADER_BYTES,
            },
        );
        (self.active, self.file, self.off, self.zeroed) = (seq, file, HEADER_BYTES, ZERO_AHEAD);
        let state = self.index().state_records();
        self.write_frames(vec![state], true)
    }

    /// Appends one frame per list of records, with one write and (with
    /// `sync`) one `fdatasync`, then updates the index.
    fn write_frames(&mut self, frames: Vec<Vec<Rec>>, sync: bool) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for recs in &frames {
            encode_frame(&mut buf, recs, &mut placed)?;
        }
        if self.off > HEADER_BYTES && self.off + buf.len() as u64 > self.segment_bytes {
            self.rotate()?;
        }
        let at = self.off;
        let end = at + buf.len() as u64;
        if end > self.zeroed {
            // Small appends gain from zeros ahead; a large one would only
            // write (and flush) its size again in zeros.
            self.zeroed = if buf.len() < LARGE_WRITE {
                zero(&self.file, end, end + ZERO_AHEAD)?;
                end + ZERO_AHEAD
            } else {
                end
            };
        }
        self.file.write_all_at(&buf, at)?;
        if sync {
            self.file.sync_data()?;
        }
        self.unsynced = !sync;
        self.off += buf.len() as u64;
        let seg = self.active;
        let mut placed = placed.into_iter();
        let mut index = self.index();
        if let Some(s) = index.segments.get_mut(&seg) {
            s.used = self.off;
        }
        for rec in frames.into_iter().flatten() {
            index.apply(rec.map(|_, _, _| {
                let (pos, len) = placed.next().ok_or(StoreError::Corrupt("raft log frame"))?;
                Ok(Loc {
                    seg,
                    off: at + pos as u64,
                    len,
                })
            })?);
        }
        Ok(())
    }

    /// Seals and writes `writes`, one frame each (with `sync`, durably).
    fn commit(&mut self, writes: Vec<WalWrite>, sync: bool) -> Result<(), StoreError> {
        let master = self.master.clone();
        let mut frames = Vec::with_capacity(writes.len());
        for w in writes {
            frames.push(vec![match w {
                WalWrite::Append { group, entries } => {
                    let mut sealed = Vec::with_capacity(entries.len());
                    for (index, entry) in entries {
                        let aad = entry_aad(group, index);
                        let stored =
                            crypto::seal_entry(master.as_deref(), group, index, &entry, &aad)?;
                        sealed.push((index, stored));
                    }
                    Rec::Append {
                        group,
                        entries: sealed,
                    }
                }
                WalWrite::Truncate { group, from } => Rec::Truncate { group, from },
                WalWrite::Purge { group, upto } => Rec::Purge { group, upto },
                WalWrite::SetState { group, name, value } => Rec::State {
                    group,
                    name: name.to_owned(),
                    value,
                },
                WalWrite::DropGroup { group } => Rec::Drop { group },
            }]);
        }
        self.write_frames(frames, sync)?;
        self.reclaim()
    }

    /// Deletes the oldest segments while nothing points into them; copies
    /// the oldest's live entries forward first when the files hold more
    /// than twice the live entries.
    fn reclaim(&mut self) -> Result<(), StoreError> {
        loop {
            let (oldest, live, wasteful) = {
                let index = self.index();
                let Some((&oldest, seg)) = index.segments.first_key_value() else {
                    return Ok(());
                };
                if oldest == self.active {
                    return Ok(());
                }
                let used: u64 = index.segments.values().map(|s| s.used).sum();
                let live: u64 = index.segments.values().map(|s| s.live_bytes).sum();
                (oldest, seg.live, used > 2 * live + 2 * self.segment_bytes)
            };
            if live == 0 {
                self.index().segments.remove(&oldest);
                std::fs::remove_file(segment_path(&self.dir, oldest))?;
                sync_dir(&self.dir)?;
                continue;
            }
            if !wasteful {
                return Ok(());
            }
            self.copy_forward(|seg| seg == oldest, |_, _, stored| Ok(stored))?;
        }
    }

    /// Writes again, at the end of the log, every live entry in a segment
    /// `pick` chooses, passed through `map`.
    fn copy_forward(
        &mut self,
        pick: impl Fn(u64) -> bool,
        map: impl Fn(u32, u64, Vec<u8>) -> Result<Vec<u8>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut moving = Vec::new();
        {
            let index = self.index();
            for (group, g) in &index.groups {
                for (i, loc) in &g.entries {
                    if pick(loc.seg) {
                        moving.push((*group, *i, *loc));
                    }
                }
            }
        }
        let mut frames = Vec::new();
        let mut frame: Vec<Rec> = Vec::new();
        let mut bytes = 0;
        for (group, index, loc) in moving {
            let stored = map(group, index, self.index().read(loc)?)?;
            bytes += stored.len();
            match frame.last_mut() {
                Some(Rec::Append { group: g, entries }) if *g == group => {
                    entries.push((index, stored))
                }
                _ => frame.push(Rec::Append {
                    group,
                    entries: vec![(index, stored)],
                }),
            }
            if bytes >= COPY_FRAME_BYTES {
                frames.push(std::mem::take(&mut frame));
                bytes = 0;
            }
        }
        frames.push(frame);
        self.write_frames(frames, true)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The index is consistent after every single call on it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared log. Cheap to share behind an `Arc`.
pub struct Wal {
    /// Held locked while open: two writers would interleave frames.
    _lock: File,
    index: Arc<Mutex<Index>>,
    tx: mpsc::UnboundedSender<Job>,
    master: Option<Arc<MasterKeys>>,
    syncs: Arc<AtomicU64>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").finish_non_exhaustive()
    }
}

fn entry_aad(group: u32, index: u64) -> Vec<u8> {
    [
        b"torua-raft-log".as_slice(),
        &group.to_le_bytes(),
        &index.to_le_bytes(),
    ]
    .concat()
}

/// Opens stored entry `index` of `group`.
fn open_row(
    master: Option<&MasterKeys>,
    group: u32,
    index: u64,
    stored: &[u8],
) -> Result<Vec<u8>, StoreError> {
    crypto::open_entry(master, group, index, stored, &entry_aad(group, index))
}

/// The newest segment, the end of its frames and the end of its zeros.
type Tail = (u64, u64, u64);

/// Replays the segments in `dir` into an index; returns it with its
/// [`Tail`] (none: the log is empty).
fn replay(dir: &Path) -> Result<(Index, Option<Tail>), StoreError> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(hex) = name.strip_suffix(".wal") {
            let seq = u64::from_str_radix(hex, 16).map_err(|_| {
                StoreError::Corrupt("unexpected .wal file in the raft log directory")
            })?;
            seqs.push(seq);
        } else if name.ends_with(".tmp") {
            // A segment whose making was cut short: never written to.
            std::fs::remove_file(&path)?;
        }
    }
    seqs.sort_unstable();
    let mut index = Index::default();
    let mut end = None;
    for (n, &seq) in seqs.iter().enumerate() {
        let last = n + 1 == seqs.len();
        let path = segment_path(dir, seq);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let data = std::fs::read(&path)?;
        let header_ok = data.len() >= HEADER_BYTES as usize
            && &data[..8] == MAGIC
            && data[8..12] == VERSION.to_le_bytes()
            && data[12..20] == seq.to_le_bytes();
        if !header_ok {
            return Err(StoreError::Corrupt("raft log segment with a bad header"));
        }
        let mut off = HEADER_BYTES as usize;
        let mut recs = Vec::new();
        while let Some(h) = data.get(off..off + FRAME_HEADER) {
            let (len, crc) = (
                u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize,
                u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            );
            if len == 0 && crc == 0 {
                break;
            }
            let body = off + FRAME_HEADER;
            match data.get(body..body + len) {
                Some(p) if CRC.checksum(p) == crc => {
                    recs.extend(decode_frame(p, seq, body as u64)?);
                    off = body + len;
                }
                _ if last => {
                    // Cut short by a crash before its fsync returned:
                    // never acknowledged. Zeroed, so that nothing of it
                    // can be read as a frame after later writes.
                    tracing::warn!(
                        segment = seq,
                        offset = off,
                        "dropping a torn raft log frame"
                    );
                    zero(&file, off as u64, data.len() as u64)?;
                    file.sync_data()?;
                    break;
                }
                _ => return Err(StoreError::Corrupt("raft log frame fails its checksum")),
            }
        }
        index.segments.insert(
            seq,
            Segment {
                file: Arc::new(file),
                live: 0,
                live_bytes: 0,
                used: off as u64,
            },
        );
        for r in recs {
            index.apply(r);
        }
        if last {
            end = Some((seq, off as u64, data.len().max(off) as u64));
        }
    }
    Ok((index, end))
}

/// Reads a log kept in redb by earlier versions, as records.
fn read_legacy(path: &Path) -> Result<Vec<Rec>, StoreError> {
    let db = redb::Builder::new().set_cache_size(16 << 20).create(path)?;
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    match txn.open_table(WAL_STATE) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                let (group, name) = k.value();
                out.push(Rec::State {
                    group,
                    name: name.to_owned(),
                    value: v.value().to_vec(),
                });
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(WAL_LOG) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                let (group, index) = k.value();
                out.push(Rec::Append {
                    group,
                    entries: vec![(index, v.value().to_vec())],
                });
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(out)
}

impl Wal {
    /// Opens (creating) the log in directory `dir` and starts its writer.
    /// A log of an earlier version at `dir/../log.redb` is moved in.
    /// Must run inside a tokio runtime.
    pub fn open(dir: &Path, master: Option<Arc<MasterKeys>>) -> Result<Arc<Wal>, StoreError> {
        Wal::open_with(dir, master, SEGMENT_BYTES)
    }

    fn open_with(
        dir: &Path,
        master: Option<Arc<MasterKeys>>,
        segment_bytes: u64,
    ) -> Result<Arc<Wal>, StoreError> {
        std::fs::create_dir_all(dir)?;
        let lock_file = File::create(dir.join("LOCK"))?;
        lock_file.try_lock().map_err(|e| {
            StoreError::Io(std::io::Error::other(format!(
                "the raft log in {} is in use by another process: {e}",
                dir.display()
            )))
        })?;
        let legacy = dir.parent().map(|p| p.join("log.redb"));
        let legacy = legacy.filter(|p| p.exists());
        if legacy.is_some() {
            // A move cut short earlier starts again from the old file,
            // which is deleted only once the segments hold everything.
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "wal") {
                    std::fs::remove_file(path)?;
                }
            }
        }
        let (index, end) = replay(dir)?;
        let index = Arc::new(Mutex::new(index));
        let (active, off, zeroed) = match end {
            Some(e) => e,
            None => {
                let file = Arc::new(create_segment(dir, 1)?);
                lock(&index).segments.insert(
                    1,
                    Segment {
                        file,
                        live: 0,
                        live_bytes: 0,
                        used: HEADER_BYTES,
                    },
                );
                (1, HEADER_BYTES, ZERO_AHEAD)
            }
        };
        let file = lock(&index)
            .segments
            .get(&active)
            .map(|s| s.file.clone())
            .ok_or(StoreError::Corrupt("raft log segment missing"))?;
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            index: index.clone(),
            master: master.clone(),
            segment_bytes,
            active,
            file,
            off,
            zeroed,
            unsynced: false,
        };
        if let Some(path) = &legacy {
            let mut recs = read_legacy(path)?.into_iter().peekable();
            let mut frames = Vec::new();
            while recs.peek().is_some() {
                frames.push(recs.by_ref().take(1024).collect());
            }
            writer.write_frames(frames, true)?;
            std::fs::remove_file(path)?;
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
            tracing::info!("raft log moved from log.redb into segment files");
        }
        if writer.off == HEADER_BYTES {
            // A segment made just before a crash, before the state it
            // starts with was written: write it now, or the state would go
            // with the segments before it.
            let state = writer.index().state_records();
            writer.write_frames(vec![state], true)?;
        }
        reseal(&mut writer)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let (to_writer, batches) = std::sync::mpsc::channel();
        let counted = syncs.clone();
        std::thread::Builder::new()
            .name("raft-wal".into())
            .spawn(move || commit_batches(writer, batches, counted))
            .map_err(StoreError::Io)?;
        tokio::spawn(gather(rx, to_writer));
        Ok(Arc::new(Wal {
            _lock: lock_file,
            index,
            tx,
            master,
            syncs,
        }))
    }

    /// Queues `write`; `done` runs once it is durable. Writes are applied
    /// in the order they are submitted.
    pub fn submit(&self, write: WalWrite, done: WalDone) {
        self.queue(write, done, true);
    }

    /// Queues `write` for the next commit without waiting for it or asking
    /// for an `fdatasync` of its own: it is durable once a later write is
    /// (or a crash loses it, and with it only this write). For values
    /// where an older one read back after a crash is safe.
    pub fn record(&self, write: WalWrite) {
        // A failure is logged by the commit, and shows in the next write.
        self.queue(write, Box::new(|_| ()), false);
    }

    fn queue(&self, write: WalWrite, done: WalDone, durable: bool) {
        let job = Job {
            write,
            done,
            durable,
        };
        if let Err(mpsc::error::SendError(job)) = self.tx.send(job) {
            (job.done)(Err(StoreError::Closed(u32::MAX)));
        }
    }

    /// Submits `write` and waits until it is durable.
    pub async fn write(&self, write: WalWrite) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            write,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.map_err(|_| StoreError::Closed(u32::MAX))?
    }

    /// Number of group commits (each one fsync) so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Durable entries of `group` with indexes in `range`, ascending, at
    /// most `limit`. Read in place: recent entries are in the page cache.
    pub async fn entries(
        &self,
        group: u32,
        range: impl RangeBounds<u64> + Send + 'static,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        if !non_empty(&bounds) {
            return Ok(Vec::new());
        }
        let found: Vec<(u64, Loc, Arc<File>)> = {
            let index = lock(&self.index);
            let Some(g) = index.groups.get(&group) else {
                return Ok(Vec::new());
            };
            g.entries
                .range(bounds)
                .take(limit)
                .filter_map(|(i, loc)| {
                    let seg = index.segments.get(&loc.seg)?;
                    Some((*i, *loc, seg.file.clone()))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(found.len());
        for (i, loc, file) in found {
            let stored = read_at(&file, loc)?;
            out.push((i, open_row(self.master.as_deref(), group, i, &stored)?));
        }
        Ok(out)
    }

    /// The durable entry of `group` with the highest index.
    pub async fn last(&self, group: u32) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let found = {
            let index = lock(&self.index);
            let last = index
                .groups
                .get(&group)
                .and_then(|g| g.entries.last_key_value());
            match last {
                None => return Ok(None),
                Some((i, loc)) => (*i, index.read(*loc)?),
            }
        };
        let (i, stored) = found;
        Ok(Some((
            i,
            open_row(self.master.as_deref(), group, i, &stored)?,
        )))
    }

    /// A named state value of `group`.
    pub async fn state(
        &self,
        group: u32,
        name: &'static str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let index = lock(&self.index);
        Ok(index
            .groups
            .get(&group)
            .and_then(|g| g.state.get(name).cloned()))
    }
}

/// Seals again, under the current master key, every entry sealed under a
/// previous one (master-key rotation), in the older form, or in plaintext
/// while migrating (`MasterKeys::migrating`), and writes the whole log
/// anew so no segment keeps the old form: the previous key can be retired
/// once every shard and log has opened with the new one. Fails at once
/// when an entry needs a master key that is not configured, or is
/// plaintext under a master key and the node is not migrating.
fn reseal(w: &mut Writer) -> Result<(), StoreError> {
    let master = w.master.clone();
    let mut stale = 0usize;
    {
        let index = w.index();
        for g in index.groups.values() {
            for loc in g.entries.values() {
                if crypto::entry_needs_reseal(master.as_deref(), &index.read(*loc)?)? {
                    stale += 1;
                }
            }
        }
    }
    if stale == 0 {
        return Ok(());
    }
    let before = w.active;
    w.rotate()?;
    w.copy_forward(
        |seg| seg <= before,
        |group, index, stored| {
            let m = master.as_deref();
            if !crypto::entry_needs_reseal(m, &stored)? {
                return Ok(stored);
            }
            let aad = entry_aad(group, index);
            let plain = crypto::open_entry(m, group, index, &stored, &aad)?;
            crypto::seal_entry(m, group, index, &plain, &aad)
        },
    )?;
    w.reclaim()?;
    tracing::info!(
        entries = stale,
        "raft log entries sealed again under the current master key"
    );
    Ok(())
}

/// Group commit across Raft groups, first half: gathers what is queued
/// (after letting the runtime's other ready tasks append too: under load
/// they join this batch rather than pay for the next fsync) and hands it
/// to the writer thread without waiting for it.
async fn gather(mut rx: mpsc::UnboundedReceiver<Job>, writer: std::sync::mpsc::Sender<Vec<Job>>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        tokio::task::yield_now().await;
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(std::sync::mpsc::SendError(jobs)) = writer.send(jobs) {
            // The writer thread is gone (it panicked): so is the log.
            for j in jobs {
                (j.done)(Err(StoreError::Closed(u32::MAX)));
            }
            return;
        }
    }
}

/// Second half, on a thread of its own: appends every batch waiting with
/// one fsync, then calls each job back in order. (A blocking-pool task per
/// commit cost a task, a hand-off and a wake-up of the waiting task each.)
/// Ends when the gathering task does.
fn commit_batches(
    mut writer: Writer,
    batches: std::sync::mpsc::Receiver<Vec<Job>>,
    syncs: Arc<AtomicU64>,
) {
    while let Ok(mut jobs) = batches.recv() {
        while jobs.len() < MAX_GROUP {
            match batches.try_recv() {
                Ok(more) => jobs.extend(more),
                Err(_) => break,
            }
        }
        let sync = jobs.iter().any(|j| j.durable);
        let (writes, dones): (Vec<WalWrite>, Vec<WalDone>) =
            jobs.into_iter().map(|j| (j.write, j.done)).unzip();
        let r = writer.commit(writes, sync);
        if r.is_ok() && sync {
            syncs.fetch_add(1, Ordering::Relaxed);
        }
        finish(dones, r);
    }
}

/// Calls every writer of a commit back with its outcome.
fn finish(dones: Vec<WalDone>, result: Result<(), StoreError>) {
    match result {
        Ok(()) => {
            for d in dones {
                d(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "raft log commit failed");
            let msg = e.to_string();
            for d in dones {
                d(Err(StoreError::Io(std::io::Error::other(msg.clone()))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The contents of every segment in `dir`, oldest first.
    fn files(dir: &Path) -> Vec<Vec<u8>> {
        segments(dir)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        out.sort();
        out
    }

    fn append(group: u32, from: u64, n: u64) -> WalWrite {
        WalWrite::Append {
            group,
            entries: (from..from + n)
                .map(|i| (i, format!("e{group}-{i}").into_bytes()))
                .collect(),
        }
    }

    #[tokio::test]
    async fn appends_truncates_purges_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("wal"), None).unwrap();
        wal.write(append(1, 1, 10)).await.unwrap();
        wal.write(append(2, 1, 3)).await.unwrap();
        wal.write(WalWrite::Truncate { group: 1, from: 8 })
            .await
            .unwrap();
        wal.write(WalWrite::Purge { group: 1, upto: 2 })
            .await
            .unwrap();
        let got: Vec<u64> = wal
            .entries(1, .., 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(got, (3..8).collect::<Vec<_>>());
        assert_eq!(wal.last(2).await.unwrap().unwrap(), (3, b"e2-3".to_vec()));
        assert_eq!(
            wal.entries(1, 4..=5, 1).await.unwrap(),
            vec![(4, b"e1-4".to_vec())]
        );
        wal.write(WalWrite::SetState {
            group: 2,
            name: "vote",
            value: b"v".to_vec(),
        })
        .await
        .unwrap();
        wal.write(WalWrite::DropGroup { group: 2 }).await.unwrap();
        assert!(wal.last(2).await.unwrap().is_none());
        assert!(wal.state(2, "vote").await.unwrap().is_none());
        assert_eq!(wal.last(1).await.unwrap().unwrap().0, 7);
        // An append of nothing records nothing, and what follows it stays.
        let empty = WalWrite::Append {
            group: 5,
            entries: Vec::new(),
        };
        wal.write(empty).await.unwrap();
        wal.write(append(5, 1, 1)).await.unwrap();
        drop(wal);
        let wal = Wal::open(&dir.path().join("wal"), None).unwrap();
        assert_eq!(wal.last(5).await.unwrap().unwrap().0, 1);
        assert_eq!(wal.last(1).await.unwrap().unwrap().0, 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_of_many_groups_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("wal"), None).unwrap();
        let before = wal.syncs();
        // Submitted before the writer task can run (single-threaded runtime),
        // so they are all queued together.
        let mut waits = Vec::new();
        for g in 0..64 {
            let (tx, rx) = oneshot::channel();
            wal.submit(append(g, 1, 2), Box::new(move |r| drop(tx.send(r))));
            waits.push(rx);
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert_eq!(wal.syncs() - before, 1);
        for g in 0..64 {
            assert_eq!(wal.last(g).await.unwrap().unwrap().0, 2);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn recorded_writes_ride_along_and_never_sync_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let wal = Wal::open(&path, None).unwrap();
        let committed = |v: &[u8]| WalWrite::SetState {
            group: 1,
            name: "committed",
            value: v.to_vec(),
        };
        let before = wal.syncs();
        // Queued together with a durable write: one fsync for both.
        wal.record(committed(b"c1"));
        wal.write(append(1, 1, 1)).await.unwrap();
        assert_eq!(wal.syncs() - before, 1);
        assert_eq!(
            wal.state(1, "committed").await.unwrap(),
            Some(b"c1".to_vec())
        );
        // Alone: written (readable), but no fsync of its own.
        wal.record(committed(b"c2"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wal.state(1, "committed").await.unwrap() != Some(b"c2".to_vec()) {
            assert!(
                std::time::Instant::now() < deadline,
                "recorded write never applied"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(wal.syncs() - before, 1);
        // The next durable write makes it durable too; replay finds it.
        wal.write(append(1, 2, 1)).await.unwrap();
        assert_eq!(wal.syncs() - before, 2);
        drop(wal);
        let wal = Wal::open(&path, None).unwrap();
        assert_eq!(
            wal.state(1, "committed").await.unwrap(),
            Some(b"c2".to_vec())
        );
        assert_eq!(wal.last(1).await.unwrap().unwrap().0, 2);
    }

    #[tokio::test]
    async fn sealed_entries_need_the_master_key_and_stay_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        {
            let wal = Wal::open(&path, Some(Arc::new(MasterKeys::new([7; 32], &[])))).unwrap();
            wal.write(append(3, 1, 2)).await.unwrap();
            assert_eq!(wal.last(3).await.unwrap().unwrap().1, b"e3-2");
        }
        // The files hold no plaintext.
        assert!(!files(&path)
            .iter()
            .any(|f| f.windows(4).any(|w| w == b"e3-2")));
        // Without the key, or with another, the log does not open.
        assert!(matches!(Wal::open(&path, None), Err(StoreError::Crypto(_))));
        let other = Some(Arc::new(MasterKeys::new([8; 32], &[])));
        assert!(matches!(
            Wal::open(&path, other),
            Err(StoreError::Crypto(_))
        ));
    }

    #[tokio::test]
    async fn master_key_rotation_reseals_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (old, new) = ([7u8; 32], [9u8; 32]);
        {
            let wal = Wal::open(&path, Some(Arc::new(MasterKeys::new(old, &[])))).unwrap();
            wal.write(append(3, 1, 5)).await.unwrap();
        }
        // New key with the old one as previous: opens, and seals again...
        {
            let both = Some(Arc::new(MasterKeys::new(new, &[old])));
            let wal = Wal::open(&path, both).unwrap();
            assert_eq!(wal.last(3).await.unwrap().unwrap().1, b"e3-5");
        }
        // ...so the new key alone opens every entry, and the old no longer does.
        let wal = Wal::open(&path, Some(Arc::new(MasterKeys::new(new, &[])))).unwrap();
        assert_eq!(wal.entries(3, 1..6, 100).await.unwrap().len(), 5);
        drop(wal);
        let stale = Some(Arc::new(MasterKeys::new(old, &[])));
        assert!(matches!(
            Wal::open(&path, stale),
            Err(StoreError::Crypto(_))
        ));
    }

    #[tokio::test]
    async fn a_torn_last_frame_is_dropped_zeroed_and_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        {
            let wal = Wal::open(&path, None).unwrap();
            wal.write(append(1, 1, 5)).await.unwrap();
            wal.write(append(1, 6, 1)).await.unwrap();
        }
        // A crash in the middle of the last write: its bytes half there.
        let seg = segments(&path).pop().unwrap();
        let mut data = std::fs::read(&seg).unwrap();
        let at = data.windows(4).position(|w| w == b"e1-6").unwrap();
        data[at] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        {
            let wal = Wal::open(&path, None).unwrap();
            assert_eq!(wal.last(1).await.unwrap().unwrap().0, 5);
            assert_eq!(wal.entries(1, .., 100).await.unwrap().len(), 5);
            // Nothing of the torn frame is left to be read as one later.
            let data = std::fs::read(&seg).unwrap();
            assert_eq!(data[at], 0);
            assert!(!data.windows(3).any(|w| w == b"1-6"));
            wal.write(append(1, 6, 2)).await.unwrap();
        }
        let wal = Wal::open(&path, None).unwrap();
        let got = wal.entries(1, .., 100).await.unwrap();
        assert_eq!(got.len(), 7);
        assert_eq!(got[6], (7, b"e1-7".to_vec()));
    }

    #[tokio::test]
    async fn a_bad_frame_before_the_end_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        {
            let wal = Wal::open_with(&path, None, 4096).unwrap();
            for i in 0..40 {
                wal.write(append(1, i * 10 + 1, 10)).await.unwrap();
            }
        }
        let segs = segments(&path);
        assert!(segs.len() > 2, "{} segments", segs.len());
        let mut data = std::fs::read(&segs[0]).unwrap();
        let at = data.windows(3).position(|w| w == b"e1-").unwrap();
        data[at] ^= 0xff;
        std::fs::write(&segs[0], &data).unwrap();
        assert!(matches!(
            Wal::open_with(&path, None, 4096),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn segments_rotate_and_space_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let seg = 8192;
        let wal = Wal::open_with(&path, None, seg).unwrap();
        // Group 9 writes a little and stops, pinning the oldest segment.
        wal.write(append(9, 1, 3)).await.unwrap();
        wal.write(WalWrite::SetState {
            group: 9,
            name: "vote",
            value: b"v9".to_vec(),
        })
        .await
        .unwrap();
        for round in 0..1000u64 {
            wal.write(append(1, round * 10 + 1, 10)).await.unwrap();
            if round % 10 == 9 {
                wal.write(WalWrite::Purge {
                    group: 1,
                    upto: round * 10,
                })
                .await
                .unwrap();
            }
            let n = segments(&path).len();
            assert!(n <= 6, "{n} segments after round {round}");
        }
        let check = |wal: Arc<Wal>| async move {
            assert_eq!(wal.entries(9, .., 100).await.unwrap().len(), 3);
            assert_eq!(wal.state(9, "vote").await.unwrap(), Some(b"v9".to_vec()));
            let live = wal.entries(1, .., 1000).await.unwrap();
            assert_eq!(live.first().unwrap().0, 9991);
            assert_eq!(live.last().unwrap(), &(10000, b"e1-10000".to_vec()));
        };
        check(wal.clone()).await;
        drop(wal);
        // What replay rebuilds from the files left is the same.
        check(Wal::open_with(&path, None, seg).unwrap()).await;
    }

    #[tokio::test]
    async fn a_log_kept_in_redb_is_moved_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("log.redb");
        let master = Some(Arc::new(MasterKeys::new([7; 32], &[])));
        {
            let db = redb::Database::create(&legacy).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut log = txn.open_table(WAL_LOG).unwrap();
                for i in 1..=4u64 {
                    let plain = format!("e2-{i}").into_bytes();
                    let sealed =
                        crypto::seal_entry(master.as_deref(), 2, i, &plain, &entry_aad(2, i))
                            .unwrap();
                    log.insert((2, i), sealed.as_slice()).unwrap();
                }
                let mut state = txn.open_table(WAL_STATE).unwrap();
                state.insert((2, "vote"), b"v".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let wal = Wal::open(&dir.path().join("wal"), master.clone()).unwrap();
        assert!(!legacy.exists());
        assert_eq!(wal.entries(2, .., 10).await.unwrap().len(), 4);
        assert_eq!(wal.last(2).await.unwrap().unwrap(), (4, b"e2-4".to_vec()));
        assert_eq!(wal.state(2, "vote").await.unwrap(), Some(b"v".to_vec()));
        // A second process on the same log is refused.
        assert!(Wal::open(&dir.path().join("wal"), master).is_err());
    }

    #[tokio::test]
    async fn a_segment_made_just_before_a_crash_still_gets_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let seg = 8192;
        {
            let wal = Wal::open_with(&path, None, seg).unwrap();
            wal.write(WalWrite::SetState {
                group: 4,
                name: "vote",
                value: b"v4".to_vec(),
            })
            .await
            .unwrap();
            wal.write(append(4, 1, 2)).await.unwrap();
        }
        // The crash: the next segment was made, nothing written to it yet.
        let first = segments(&path).remove(0);
        create_segment(&path, segments(&path).len() as u64 + 1).unwrap();
        {
            let wal = Wal::open_with(&path, None, seg).unwrap();
            // Nothing points into the first segment any more: it goes,
            // and the one made before the crash is all that is left.
            wal.write(WalWrite::Purge { group: 4, upto: 2 })
                .await
                .unwrap();
        }
        assert_eq!(segments(&path).len(), 1);
        assert!(
            !first.exists(),
            "the segments from before the crash are gone"
        );
        let wal = Wal::open_with(&path, None, seg).unwrap();
        assert_eq!(wal.state(4, "vote").await.unwrap(), Some(b"v4".to_vec()));
    }

    #[tokio::test]
    async fn only_small_writes_get_zeros_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let wal = Wal::open(&path, None).unwrap();
        let len = || {
            std::fs::metadata(segments(&path).pop().unwrap())
                .unwrap()
                .len()
        };
        // A 6 MiB entry: the file ends with it, not 4 MiB of zeros later.
        let big = WalWrite::Append {
            group: 1,
            entries: vec![(1, vec![7; 6 << 20])],
        };
        wal.write(big).await.unwrap();
        let after_big = len();
        assert!(after_big < (6 << 20) + 4096, "{after_big} bytes");
        // A small one past the zeros gets zeros ahead of it again.
        wal.write(append(1, 2, 1)).await.unwrap();
        assert!(len() >= after_big + ZERO_AHEAD, "{} bytes", len());
        assert_eq!(wal.entries(1, .., 10).await.unwrap()[0].1.len(), 6 << 20);
    }
}
