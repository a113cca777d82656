//! Checks shared by the Torua and Truxe command lines.

use std::process::Command;

/// Runs `bin args…` with `env`, asserting success; its standard output.
pub fn stdout_of(bin: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new(bin)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `bin completions …` prints scripts each shell accepts that complete
/// `name` and its subcommand `sub`; `bin man DIR` writes `name.1` and
/// `name-sub.1` as man pages. With `env` (settings the command would
/// refuse to serve with): they need no server and no valid configuration.
pub fn completions_and_man_pages(bin: &str, env: &[(&str, &str)], name: &str, sub: &str) {
    let dir = crate::tempdir();
    let bash = stdout_of(bin, env, &["completions", "bash"]);
    assert!(bash.contains(sub), "{bash}");
    let script = dir.path().join("completion.bash");
    std::fs::write(&script, &bash).unwrap();
    // Bash loads it and registers a completion for the command.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p {name}", script.display()))
        .output()
        .unwrap();
    assert!(
        registered.status.success() && String::from_utf8_lossy(&registered.stdout).contains(name),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let zsh = stdout_of(bin, env, &["completions", "zsh"]);
    assert!(zsh.starts_with(&format!("#compdef {name}")), "{zsh}");
    let fish = stdout_of(bin, env, &["completions", "fish"]);
    assert!(fish.contains(&format!("complete -c {name}")) && fish.contains(sub));
    let refused = Command::new(bin)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "an unknown shell is refused"
    );

    let pages = dir.path().join("man");
    stdout_of(bin, env, &["man", pages.to_str().unwrap()]);
    let top = std::fs::read_to_string(pages.join(format!("{name}.1"))).unwrap();
    assert!(top.contains(&format!(".TH {name} 1")), "{top}");
    assert!(top.contains(sub), "the page lists the subcommands");
    let page = std::fs::read_to_string(pages.join(format!("{name}-{sub}.1"))).unwrap();
    assert!(page.contains(".SH NAME"), "{page}");
}
