//! Where `torua dev` logs: each component to its own file under
//! `<dir>/logs` (`coordinator.log`, `n1.log`, …, `truxe.log`), and
//! warnings and errors also to the terminal, one line each, so the first
//! thing a user reads is the banner. `--verbose` streams everything to the
//! terminal instead.
//!
//! The coordinator and the nodes run in this process, each on a Tokio
//! runtime of its own whose threads carry its name: a log line goes to the
//! file of the thread that wrote it. Tasks stay on the runtime that spawned
//! them (openraft's too), so the name follows the component; a span would
//! not, as spawned tasks do not inherit it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Log lines of threads that belong to no component (`torua dev` itself).
const OWN: &str = "dev";

/// One file per thread name under a directory, opened on first use.
#[derive(Clone)]
pub(crate) struct Files {
    dir: PathBuf,
    open: Arc<Mutex<HashMap<String, Arc<File>>>>,
}

impl Files {
    /// Log files in `dir`, made if missing.
    pub(crate) fn new(dir: &Path) -> anyhow::Result<Files> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Files {
            dir: dir.to_owned(),
            open: Arc::default(),
        })
    }

    /// The file of component `name`, appended to.
    pub(crate) fn file(&self, name: &str) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(name) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(name))?,
        );
        open.insert(name.to_owned(), f.clone());
        Ok(f)
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where component `name` logs.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
}

/// A shared append-only file; each log line is one `write`.
pub(crate) struct Append(Option<Arc<File>>);

impl Write for Append {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            Some(f) => (&**f).write(buf),
            // The file could not be opened: the line is dropped rather
            // than failing the component that logged it.
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Files {
    type Writer = Append;
    fn make_writer(&'a self) -> Append {
        let thread = std::thread::current();
        let name = match thread.name() {
            Some(n) if is_component(n) => n,
            _ => OWN,
        };
        Append(self.file(name).ok())
    }
}

/// Names `torua dev` gives its components' runtimes.
fn is_component(name: &str) -> bool {
    let numbered = |prefix: char| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    name == "coordinator" || numbered('n') || numbered('c')
}

/// Installs `torua dev`'s subscriber: with `files`, every line at `info`
/// (or `RUST_LOG`) into them and warnings to the terminal; without,
/// everything to the terminal, each line naming its component.
pub(crate) fn init(files: Option<Files>, json: bool) {
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"))
    };
    let colour = edge::cli::colour_on(&io::stderr());
    let terminal = || {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(colour)
            .with_thread_names(true)
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    match files {
        None if json => layers.push(terminal().json().with_filter(filter()).boxed()),
        None => layers.push(terminal().with_filter(filter()).boxed()),
        Some(files) => {
            let to_files = tracing_subscriber::fmt::layer()
                .with_writer(files)
                .with_ansi(false);
            layers.push(match json {
                true => to_files.json().with_filter(filter()).boxed(),
                false => to_files.with_filter(filter()).boxed(),
            });
            // Elections make openraft warn about stale votes: normal, so
            // only its errors reach the terminal.
            layers.push(
                terminal()
                    .without_time()
                    .with_target(false)
                    .with_filter(EnvFilter::new("warn,openraft=error"))
                    .boxed(),
            );
        }
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// Copies a child's output into its log file line by line, and its
/// warnings and errors to the terminal too, prefixed with `name`.
pub(crate) async fn copy_lines(
    name: &'static str,
    from: impl tokio::io::AsyncRead + Unpin,
    to: Arc<File>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut from = tokio::io::BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match from.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let _ = (&*to).write_all(&line);
        if is_warning(&line) {
            let text = String::from_utf8_lossy(&line);
            // Without the timestamp, as the other warnings shown.
            let shown = match text.split_once(' ') {
                Some((time, rest)) if time.starts_with(|c: char| c.is_ascii_digit()) => rest,
                _ => &text,
            };
            eprint!("{name}: {}", shown.trim_start());
        }
    }
}

/// A log line at `WARN` or `ERROR`, as text or JSON.
fn is_warning(line: &[u8]) -> bool {
    let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    has(b" WARN ") || has(b" ERROR ") || has(b"\"level\":\"WARN\"") || has(b"\"level\":\"ERROR\"")
}

/// The components' runtimes, stopped without waiting when dropped (their
/// servers have been asked to stop and waited for before).
#[derive(Default)]
pub(crate) struct Runtimes(Vec<tokio::runtime::Runtime>);

impl Runtimes {
    /// Listens on `addr` now (so a port in use is reported at once) and
    /// runs `serve` on it on a new runtime whose threads are named `name`.
    pub(crate) fn serve<F, Fut>(
        &mut self,
        name: &str,
        addr: std::net::SocketAddr,
        serve: F,
    ) -> anyhow::Result<tokio::task::JoinHandle<Result<(), crate::Error>>>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), crate::Error>> + Send + 'static,
    {
        let bind = |source| crate::Error::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        // One worker each: measured against two each and against one
        // shared runtime (bench/side-by-side.sh rf3, A B A B), it keeps
        // the single-client latency of the shared runtime (1.17 ms against
        // 1.29 ms with two each) and serves GETs at c=64 35 % faster.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting a runtime for {name}"))?;
        let task = rt.spawn(async move {
            serve(tokio::net::TcpListener::from_std(listener).map_err(crate::Error::Serve)?).await
        });
        self.0.push(rt);
        Ok(task)
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async caller may not do.
        for rt in self.0.drain(..) {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_file_of_the_thread_that_logs() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("logs")).unwrap();
        let write = |thread: &str, line: &'static str| {
            let files = files.clone();
            std::thread::Builder::new()
                .name(thread.into())
                .spawn(move || files.make_writer().write_all(line.as_bytes()).unwrap())
                .unwrap()
                .join()
                .unwrap();
        };
        write("n1", "one\n");
        write("n12", "twelve\n");
        write("coordinator", "c\n");
        write("n1", "again\n");
        write("tokio-runtime-worker", "mine\n");
        write("nx", "not a node\n");
        let read = |name: &str| std::fs::read_to_string(files.path(name)).unwrap();
        assert_eq!(read("n1"), "one\nagain\n");
        assert_eq!(read("n12"), "twelve\n");
        assert_eq!(read("coordinator"), "c\n");
        assert_eq!(read("dev"), "mine\nnot a node\n");
    }

    #[test]
    fn warnings_are_told_from_other_lines() {
        assert!(is_warning(
            b"2026-12-06T14:00:00Z  WARN truxe: weak secret\n"
        ));
        assert!(is_warning(
            b"2026-12-06T14:00:00Z ERROR truxe: no database\n"
        ));
        assert!(is_warning(
            br#"{"timestamp":"x","level":"WARN","fields":{}}"#
        ));
        assert!(!is_warning(
            b"2026-12-06T14:00:00Z  INFO truxe: WARNING in a message\n"
        ));
    }
}
