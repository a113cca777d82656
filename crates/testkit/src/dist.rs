//! The release packages, built by `scripts/dist` from the binaries under
//! test and installed on this machine with `dpkg` (root, as CI has).

use std::path::{Path, PathBuf};
use std::process::Command;

/// An installed package; purged, with its configuration and state, on drop.
pub struct Installed {
    product: String,
    /// Where `scripts/dist` wrote the archives.
    pub out: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn purge(product: &str) {
    let _ = Command::new("dpkg").args(["--purge", product]).output();
    for dir in [format!("/etc/{product}"), format!("/var/lib/{product}")] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Packages `product` from the binaries in `bin_dir` with `scripts/dist`,
/// checks the checksums and the tarball, and installs the `.deb`.
pub fn build_and_install(product: &str, bin_dir: &Path) -> Installed {
    // SAFETY of the machine: only root may install, and only CI runs these.
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "this test installs a Debian package and needs root, as CI has"
    );
    // The running test's package, read at run time (cargo sets it for test
    // processes): this library may be reused from a shared target
    // directory built in another checkout, whose path `env!` would bake in.
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = package.join("../..");
    let out = crate::tempdir();
    run(Command::new(root.join("scripts/dist")).args([
        "--product",
        product,
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--compress",
        "none",
    ]));
    run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(out.path()));
    let file_of = |suffix: &str| -> PathBuf {
        std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {}", out.path().display()))
    };
    let listing = run(Command::new("tar").arg("-tzf").arg(file_of(".tar.gz")));
    for part in [
        format!("/bin/{product}"),
        "/systemd/".into(),
        "/etc/".into(),
        "/man/".into(),
        "/completions/".into(),
    ] {
        assert!(listing.contains(&part), "{part} missing from:\n{listing}");
    }
    // A leftover of an interrupted run must not hide what this one does.
    purge(product);
    run(Command::new("dpkg").arg("-i").arg(file_of(".deb")));
    Installed {
        product: product.into(),
        out,
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        purge(&self.product);
    }
}

/// `KEY=VALUE` lines of a systemd environment file, comments left out.
pub fn env_file(path: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{path}: not KEY=VALUE: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Checks units with `systemd-analyze verify`: it must accept them without
/// a single warning (unknown directives are only warnings there).
pub fn verify_units(units: &[&str]) {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .output()
    else {
        eprintln!("systemd-analyze is not installed; units not verified");
        return;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

/// `cmd` run as the service user `user`, as systemd would (`User=`).
pub fn as_user(cmd: &Path, user: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--init-groups",
        "--",
    ])
    .arg(cmd);
    c
}
