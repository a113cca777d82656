//! A disk that can lose power, for tests of what `fsync` promises.
//!
//! A [`LoopDisk`] is an ext4 file system in an image file, attached to a
//! loop device and mounted on a directory. Pages a process wrote but did not
//! sync stay in the page cache of that file system; only what was synced
//! (or written back by the kernel) has reached the loop device and so the
//! image file. [`LoopDisk::power_cut`] copies the image as the device holds
//! it at that moment: mounting the copy is what a machine would see after
//! losing power, with the journal replayed.
//!
//! Mounted `data=writeback,commit=3600`: the journal commits only when
//! something syncs, and a commit never writes file data along with it, so
//! data that was not synced is not on the device unless the kernel's own
//! writeback took it (after 30 s by default, or under memory pressure): a
//! test can pass by luck that way, never fail by it. Needs root, a free
//! loop device, `losetup`, `mount` and `mkfs.ext4`. Unmounted and detached
//! on drop, also after a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An ext4 file system on a loop device, mounted.
pub struct LoopDisk {
    image: PathBuf,
    device: String,
    mount: PathBuf,
}

impl LoopDisk {
    /// Whether this machine lets a test attach and mount a loop device
    /// (root, the loop driver, util-linux and e2fsprogs); the reason when
    /// not.
    pub fn available() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let disk = Self::try_create(&dir.path().join("probe.img"), &dir.path().join("m"), 8)?;
        drop(disk);
        Ok(())
    }

    /// A fresh file system of `mib` MiB in `image`, mounted on `mount`
    /// (created if missing).
    pub fn create(image: &Path, mount: &Path, mib: u64) -> LoopDisk {
        Self::try_create(image, mount, mib).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_create(image: &Path, mount: &Path, mib: u64) -> Result<LoopDisk, String> {
        let file = std::fs::File::create(image).map_err(|e| e.to_string())?;
        file.set_len(mib << 20).map_err(|e| e.to_string())?;
        drop(file);
        run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
        Self::attach(image, mount)
    }

    /// Mounts the file system in `image` (replaying its journal) on
    /// `mount`.
    pub fn open(image: &Path, mount: &Path) -> LoopDisk {
        Self::attach(image, mount).unwrap_or_else(|e| panic!("{e}"))
    }

    fn attach(image: &Path, mount: &Path) -> Result<LoopDisk, String> {
        std::fs::create_dir_all(mount).map_err(|e| e.to_string())?;
        let device = run("losetup", &["--find", "--show", &image.to_string_lossy()])?;
        let disk = LoopDisk {
            image: image.to_owned(),
            device,
            mount: mount.to_owned(),
        };
        run(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                "data=writeback,commit=3600",
                &disk.device,
                &disk.mount.to_string_lossy(),
            ],
        )
        .inspect_err(|_| {
            let _ = run("losetup", &["-d", &disk.device]);
        })?;
        Ok(disk)
    }

    /// Where the file system is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Copies the image, as the device holds it now, to `to`: the disk
    /// after a power cut at this instant. Stop every writer first (kill
    /// it), or the copy may catch a write half done.
    pub fn power_cut(&self, to: &Path) {
        std::fs::copy(&self.image, to).unwrap_or_else(|e| panic!("copy the image: {e}"));
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // Lazy, so a process still holding a file cannot keep it mounted.
        let _ = run("umount", &["-l", &self.mount.to_string_lossy()]);
        if let Err(e) = run("losetup", &["-d", &self.device]) {
            if !std::thread::panicking() {
                eprintln!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: synced data survives a power cut, data only
    /// written does not. Without this the fsync tests prove nothing.
    #[test]
    fn a_power_cut_keeps_what_was_synced_and_loses_the_rest() {
        if let Err(why) = LoopDisk::available() {
            panic!("this test needs root and loop devices (run as CI does): {why}");
        }
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let disk = LoopDisk::create(&dir.path().join("a.img"), &dir.path().join("a"), 32);
        let mut synced = std::fs::File::create(disk.path().join("synced")).unwrap();
        synced.write_all(b"kept").unwrap();
        synced.sync_all().unwrap();
        synced.write_all(b" and lost").unwrap();
        std::fs::write(disk.path().join("unsynced"), b"lost").unwrap();
        disk.power_cut(&dir.path().join("b.img"));
        drop(disk);
        let after = LoopDisk::open(&dir.path().join("b.img"), &dir.path().join("b"));
        assert_eq!(std::fs::read(after.path().join("synced")).unwrap(), b"kept");
        assert!(!after.path().join("unsynced").exists());
    }
}
