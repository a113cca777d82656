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
                std::fs::create_dir_all(dir)?;
                clap_mangen::generate_to(cmd, dir)?;
                println!("wrote the man pages to {}", dir.display());
            }
        }
        Ok(())
    }
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
