//! Command-line conventions both binaries share: shell completions and man
//! pages generated from their clap definitions, so they never drift from
//! the flags, and when to colour.

use std::path::PathBuf;

/// `completions SHELL` and `man DIR`, flattened into each binary's commands.
#[derive(Debug, clap::Subcommand)]
pub enum Reference {
    /// Print a shell completion script, e.g. `completions bash >
    /// /etc/bash_completion.d/NAME`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (the command's and one per subcommand) into DIR.
    Man {
        /// Where to write them (made if missing).
        dir: PathBuf,
    },
}

impl Reference {
    /// Answers from `cmd`, the binary's whole definition; needs neither
    /// configuration nor a server.
    pub fn answer(&self, mut cmd: clap::Command) -> std::io::Result<()> {
        match self {
            Reference::Completions { shell } => {
                let name = cmd.get_name().to_owned();
                clap_complete::generate(*shell, &mut cmd, name, &mut std::io::stdout());
            }
            Reference::Man { dir } => {
                man_pages(cmd, dir)?;
                println!("wrote the man pages to {}", dir.display());
            }
        }
        Ok(())
    }
}

/// Writes the man pages of `cmd` (its own and one per subcommand) into `dir`.
pub fn man_pages(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)
}

/// Whether to colour what goes to `stream`: only a terminal, and never
/// with `NO_COLOR` set (no-color.org).
pub fn colour_on(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How a command prints its results: aligned columns for people, or one
/// JSON document for scripts (`-o json`, in `torua` and `truxe` alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// Progress of a long operation, on standard error: on a terminal one line
/// rewritten in place with a bar; otherwise (logs, CI) a plain line at most
/// every few seconds, so a captured run stays short.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    started: std::time::Instant,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Plain lines at most this often.
    const PLAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
    const BAR: usize = 24;

    /// Starts the clock.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            tty: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            last: std::sync::Mutex::new(None),
        }
    }

    /// `done` of `total` of `what`.
    pub fn update(&self, what: &str, done: u64, total: u64) {
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let finished = done >= total;
        if !self.tty && !finished && last.is_some_and(|l| now - l < Self::PLAIN_EVERY) {
            return;
        }
        *last = Some(now);
        let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
        if self.tty {
            let filled = Self::BAR * pct as usize / 100;
            eprint!(
                "\r\x1b[2K{what:<20} [{}{}] {done}/{total} {pct:>3}%",
                "#".repeat(filled),
                " ".repeat(Self::BAR - filled)
            );
        } else {
            eprintln!("{what}: {done}/{total} ({pct}%)");
        }
    }

    /// Ends the in-place line; the time since [`Progress::new`].
    pub fn finish(&self) -> std::time::Duration {
        if self.tty && self.last.lock().is_ok_and(|l| l.is_some()) {
            eprintln!();
        }
        self.started.elapsed()
    }
}
