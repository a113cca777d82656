//! Keeps SQLite's database and WAL files mapped into this process, so that
//! their pages stay in memory through a quiet spell.
//!
//! SQLite reads and writes both files through the page cache. Linux
//! reclaims file pages that no process maps most readily, and some hosts
//! drop them within seconds: on the project's machine the hypervisor's DAMON
//! scheme pages out unmapped file pages of cold regions (`pageout`,
//! `unmapped` filter) a few seconds after the last access. The next write
//! then reads them back from disk inside the write lock: a WAL frame is a
//! page plus a 24-byte header, so writing one into a dropped page reads
//! that page first, and a transaction's B-tree pages are read before they
//! change. Each read is a few milliseconds, and every refresh queued behind
//! the group commit waits for it (measured: 60-136 KiB read back at the
//! start of a refresh burst after 3 s without writes, single reads of
//! 2-8 ms; none with the files mapped). A read-only mapping, populated and
//! never read through, makes those pages mapped ones; SQLite still uses
//! `pread`/`pwrite`, so an I/O error stays an error and never becomes a
//! signal. The database's descriptor is never closed (see `Handle`).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use memmap2::{Advice, MmapOptions, MmapRaw};

/// A database file larger than this is left to the page cache alone:
/// mapping it whole would read it all into memory.
const KEEP_MAX: u64 = 1 << 30;
/// Mappings are made this much larger than the file, so that a growing
/// file is mapped again only every so often.
const ROOM: u64 = 64 << 20;
const PAGE: u64 = 4096;

/// The files of one SQLite database, kept mapped.
#[derive(Debug)]
pub(super) struct Resident {
    files: Vec<Kept>,
}

impl Resident {
    /// The database at `path` and its WAL (`<path>-wal`).
    pub(super) fn new(path: PathBuf) -> Self {
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        Resident {
            files: vec![Kept::new(path, true), Kept::new(wal.into(), false)],
        }
    }

    /// Maps what the files gained since the last call (all of them the
    /// first time). Cheap when nothing changed: a `stat` of each, and an
    /// `open` of the WAL.
    pub(super) fn keep(&mut self) -> io::Result<()> {
        for f in &mut self.files {
            f.keep()?;
        }
        Ok(())
    }
}

/// How a kept file is opened.
#[derive(Debug)]
enum Handle {
    /// The database, not opened yet. Its descriptor is opened once and
    /// never closed: closing any descriptor of a file drops every POSIX
    /// lock this process holds on it, SQLite's shared lock included, and
    /// then another process (the CLI on the same file) may take the file
    /// for itself, checkpoint and delete the WAL under the server.
    ToHold,
    /// The database's descriptor, held for good (leaked on purpose).
    Held(&'static File),
    /// The WAL, which SQLite never locks: opened by path each time, to
    /// notice it made again.
    ByPath,
}

#[derive(Debug)]
struct Kept {
    path: PathBuf,
    handle: Handle,
    map: Option<MmapRaw>,
    /// The file the mapping is of (a WAL is deleted and made again when
    /// the last connection closes).
    inode: u64,
    /// Bytes of the file from its start whose pages are mapped.
    populated: u64,
}

impl Kept {
    fn new(path: PathBuf, hold: bool) -> Self {
        Kept {
            path,
            handle: if hold { Handle::ToHold } else { Handle::ByPath },
            map: None,
            inode: 0,
            populated: 0,
        }
    }

    fn keep(&mut self) -> io::Result<()> {
        if let Handle::Held(file) = self.handle {
            return self.map_from(file);
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.map = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match self.handle {
            Handle::ToHold => {
                let file: &'static File = Box::leak(Box::new(file));
                self.handle = Handle::Held(file);
                self.map_from(file)
            }
            _ => self.map_from(&file),
        }
    }

    fn map_from(&mut self, file: &File) -> io::Result<()> {
        let meta = file.metadata()?;
        let len = meta.len();
        if len > KEEP_MAX {
            self.map = None;
            return Ok(());
        }
        let room = self.map.as_ref().map_or(0, |m| m.len() as u64);
        // Another file, one that shrank (VACUUM), or one past the mapping's
        // room: map it again. The mapping may reach past the end of the
        // file; nothing reads through it, so that is never touched.
        if meta.ino() != self.inode || len < self.populated || len > room {
            self.map = Some(
                MmapOptions::new()
                    .len((len + ROOM) as usize)
                    .map_raw_read_only(file)?,
            );
            self.inode = meta.ino();
            self.populated = 0;
        }
        if len > self.populated {
            let from = self.populated / PAGE * PAGE;
            if let Some(map) = &self.map {
                // Faults in the pages from the file (reading any that are
                // not in memory) without touching them: an I/O error comes
                // back here as an error, not as SIGBUS.
                map.advise_range(Advice::PopulateRead, from as usize, (len - from) as usize)?;
            }
            self.populated = len;
        }
        Ok(())
    }
}

/// Resident pages (kB) of this process's mappings of `path`, from
/// /proc/self/smaps: what the mappings hold, not what the file is.
#[cfg(test)]
pub(super) fn mapped_kb(path: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut total = 0;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        // A mapping's header starts with its address range; the lines
        // after it, up to the next header, are its counters.
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.ends_with(name);
        } else if let Some(kb) = line.strip_prefix("Rss:").filter(|_| inside) {
            total += kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_files_pages_are_mapped_as_they_grow_and_after_being_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        std::fs::write(&db, vec![1u8; 64 << 10]).unwrap();
        let mut r = Resident::new(db.clone());
        // No WAL yet: not an error.
        r.keep().unwrap();
        assert_eq!(mapped_kb(&db), 64, "the whole database is mapped");
        assert_eq!(mapped_kb(&wal), 0);

        // Growth is mapped, including a partly written last page.
        let mut f = std::fs::OpenOptions::new().append(true).open(&db).unwrap();
        f.write_all(&vec![2u8; (32 << 10) + 100]).unwrap();
        std::fs::write(&wal, vec![3u8; 8 << 10]).unwrap();
        r.keep().unwrap();
        assert_eq!(mapped_kb(&db), 100);
        assert_eq!(mapped_kb(&wal), 8);

        // A WAL deleted and made again (a new inode) is mapped anew.
        std::fs::remove_file(&wal).unwrap();
        r.keep().unwrap();
        std::fs::write(&wal, vec![4u8; 12 << 10]).unwrap();
        r.keep().unwrap();
        assert_eq!(mapped_kb(&wal), 12);

        // A file that shrank is mapped again to its new end; the pages past
        // it are never touched, so this neither fails nor faults.
        f.set_len(16 << 10).unwrap();
        r.keep().unwrap();
        assert_eq!(mapped_kb(&db), 16);
    }
}
