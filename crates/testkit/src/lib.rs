//! Test support only: free ports, child processes that die with the test,
//! and polling with deadlines (never sleep-and-hope).
//!
//! Used from `[dev-dependencies]` only; nothing in a shipped binary
//! depends on this crate.

pub mod cli;
pub mod disk;
pub mod dist;
pub mod netlab;

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Ports handed out by this process: tests run in parallel threads, and two
/// of them must never be given the same port.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// The kernel's ephemeral ports (`ip_local_port_range`): those it gives
/// outgoing connections and `bind(…:0)`.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A port free on 127.0.0.1 that no other test of this process has been
/// given, for a child process to listen on.
///
/// It is chosen outside the kernel's ephemeral range, so nothing can take
/// it between this check and the child's bind: no outgoing connection of
/// any process is given it as its local port, and no `bind(…:0)` is. The
/// same holds after the child exits, so a restarted child (a node keeps
/// its address: Raft groups know it by it) gets its port back.
pub fn free_port() -> u16 {
    let (low, high) = ephemeral_range();
    let (first, last) = if low > 11_000 {
        (10_000, low - 1)
    } else {
        (high.saturating_add(1).max(1024), u16::MAX)
    };
    let span = u32::from(last - first) + 1;
    // Start somewhere else in each process, so test binaries run one after
    // another do not queue on the same ports.
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ now_nanos();
    let mut taken = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..span {
        let port = first + ((seed.wrapping_add(i)) % span) as u16;
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("no free port in {first}..={last}");
}

fn now_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    child: std::process::Child,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> ChildGuard {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{name}.log")))
            .unwrap_or_else(|e| panic!("log file for {name}: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("log file for {name}: {e}"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child,
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap: the process gets no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `limit` for exit; returns the exit code
    /// (`None`, after a SIGKILL, if it did not exit in time).
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        self.signal_and_wait("TERM", limit)
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits like [`Self::terminate`].
    pub fn interrupt(&mut self, limit: Duration) -> Option<i32> {
        self.signal_and_wait("INT", limit)
    }

    fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        match self.wait_exit(limit) {
            Some(st) => st.code(),
            None => {
                self.kill();
                None
            }
        }
    }

    /// Waits for the process to exit by itself within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Panics with the child's log if it has exited (e.g. could not bind):
    /// a readiness probe answered by some other process must not pass.
    pub fn assert_running(&mut self, log_dir: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(log_dir.join(format!("{}.log", self.name)))
                .unwrap_or_default();
            panic!("{} exited with {status}:\n{log}", self.name);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 25 ms until it returns `Some`, or panics after `limit`
/// naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `GET url` answers 2xx.
pub async fn wait_http_ok(url: &str, limit: Duration) {
    wait_ok_with(&reqwest::Client::new(), url, limit).await
}

/// Waits until `GET url` with `client` (e.g. one that trusts a test CA)
/// answers 2xx.
pub async fn wait_ok_with(client: &reqwest::Client, url: &str, limit: Duration) {
    eventually(&format!("{url} to answer 2xx"), limit, || async {
        match client.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status().is_success() => Some(()),
            _ => None,
        }
    })
    .await
}

/// A fresh temporary directory, removed when dropped.
/// With `TESTKIT_KEEP=1` the directory (process logs, data) is kept for
/// inspection and its path printed.
pub fn tempdir() -> tempfile::TempDir {
    let keep = std::env::var_os("TESTKIT_KEEP").is_some_and(|v| v == "1");
    let dir = tempfile::Builder::new()
        .disable_cleanup(keep)
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    if keep {
        eprintln!("testkit: keeping {}", dir.path().display());
    }
    dir
}

/// Blocking twin of [`eventually`] for plain `#[test]`s.
pub fn eventually_sync(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The first of `n` consecutive ports that were all free a moment ago.
pub fn free_port_range(n: u16) -> u16 {
    for _ in 0..100 {
        let base = free_port();
        let (low, high) = ephemeral_range();
        let Some(end) = base.checked_add(n - 1) else {
            continue;
        };
        if end >= low && base <= high {
            continue;
        }
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        let all_free = (1..n).all(|i| {
            !taken.contains(&(base + i)) && TcpListener::bind(("127.0.0.1", base + i)).is_ok()
        });
        if all_free {
            taken.extend((1..n).map(|i| base + i));
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// `GET url`, asserting 2xx, parsed as JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    let res = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(res.status().is_success(), "GET {url}: {}", res.status());
    res.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not the expected JSON: {e}"))
}

/// Reads from `s` until the other end closes the connection, for at most
/// `limit`: what it said, or `None` if it was still open at the deadline.
pub async fn read_until_closed<S>(s: &mut S, limit: Duration) -> Option<String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut out))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}
