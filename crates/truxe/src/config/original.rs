//! The original Truxe's configuration names. An operator moving over keeps
//! their environment: before the settings are read, each of the original's
//! names that is set becomes the name that means the same here, unless that
//! one is set as well (then ours is used and the original's reported as
//! overridden). Names whose meaning has no equivalent here are reported as
//! ignored, with why; `truxe check-config` prints the report.
//!
//! Read directly rather than translated (they have no older name here):
//! `JWT_PRIVATE_KEY`, `JWT_PRIVATE_KEY_BASE64`, `JWT_KEY_ID`,
//! `MAGIC_LINK_BASE_URL`, `EMAIL_PROVIDER` and `RESEND_API_KEY` (see
//! `RawConfig`).

use std::sync::OnceLock;

/// What became of one of the original's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The original's name.
    pub name: String,
    /// What happened to it.
    pub outcome: Outcome,
}

/// See [`Reading`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Read as this name of ours, meaning this.
    Read {
        /// Our name.
        ours: String,
        /// What it sets.
        meaning: &'static str,
    },
    /// Not read: ours (named) is set too.
    Overridden {
        /// Our name.
        ours: String,
    },
    /// Not read, because of this.
    Ignored(&'static str),
}

/// The same setting under another name.
const RENAMED: [(&str, &str, &str); 4] = [
    (
        "PASSWORD_REQUIRE_NUMBER",
        "PASSWORD_REQUIRE_NUMBERS",
        "passwords must contain a digit",
    ),
    (
        "PASSWORD_REQUIRE_SPECIAL",
        "PASSWORD_REQUIRE_SYMBOLS",
        "passwords must contain a symbol",
    ),
    ("SMTP_PASS", "SMTP_PASSWORD", "the SMTP password"),
    (
        "OAUTH_CALLBACK_BASE_URL",
        "TRUXE_PUBLIC_URL",
        "the public URL of this server (links, social-login callbacks)",
    ),
];

/// Names with no equivalent here, and why.
const IGNORED: [(&str, &str); 5] = [
    ("JWT_PUBLIC_KEY", "the public key is derived from the private key"),
    ("JWT_PUBLIC_KEY_BASE64", "the public key is derived from the private key"),
    (
        "OAUTH_ALLOWED_REDIRECT_HOSTS",
        "a host allows any path on it; TRUXE_OAUTH_REDIRECTS lists exact redirect URLs: list them there",
    ),
    (
        "OAUTH_STATE_SECRET",
        "social-login state is signed with keys Truxe manages itself",
    ),
    (
        "REDIS_PASSWORD",
        "give the password in REDIS_URL (rediss://:PASSWORD@HOST:PORT)",
    ),
];

/// The social-login providers the original configured by name.
const PROVIDERS: [&str; 3] = ["google", "github", "microsoft"];

/// Works out, from `env`, the variables to set and the report.
pub fn translate(env: impl Fn(&str) -> Option<String>) -> (Vec<(String, String)>, Vec<Reading>) {
    let get = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    let mut set: Vec<(String, String)> = Vec::new();
    let mut report = Vec::new();
    let mut notes = Vec::new();
    let mut adopt = |name: &str, ours: String, value: String, meaning: &'static str| {
        let outcome = if get(&ours).is_some() || set.iter().any(|(n, _)| *n == ours) {
            Outcome::Overridden { ours }
        } else {
            set.push((ours.clone(), value));
            Outcome::Read { ours, meaning }
        };
        report.push(Reading {
            name: name.to_owned(),
            outcome,
        });
    };
    for (name, ours, meaning) in RENAMED {
        if let Some(v) = get(name) {
            adopt(name, ours.to_owned(), v, meaning);
        }
    }
    if let Some(v) = get("SMTP_SECURE") {
        // The original's `secure: false` is nodemailer's opportunistic
        // STARTTLS; here STARTTLS is required.
        let tls = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => "tls",
            _ => "starttls",
        };
        adopt(
            "SMTP_SECURE",
            "SMTP_TLS".into(),
            tls.into(),
            "true: TLS from the first byte (tls); false: STARTTLS, required (starttls)",
        );
    }
    if let Some(addr) = get("EMAIL_FROM") {
        let from = match get("EMAIL_FROM_NAME") {
            Some(name) => format!("{} <{}>", name.trim(), addr.trim()),
            None => addr.trim().to_owned(),
        };
        adopt(
            "EMAIL_FROM",
            "SMTP_FROM".into(),
            from,
            "the sender of mail, with EMAIL_FROM_NAME as its name",
        );
        if get("EMAIL_FROM_NAME").is_some() {
            // It goes wherever EMAIL_FROM went.
            let outcome = match get("SMTP_FROM") {
                Some(_) => Outcome::Overridden {
                    ours: "SMTP_FROM".into(),
                },
                None => Outcome::Read {
                    ours: "SMTP_FROM".into(),
                    meaning: "the sender's name, with EMAIL_FROM",
                },
            };
            notes.push(Reading {
                name: "EMAIL_FROM_NAME".into(),
                outcome,
            });
        }
    }
    // Social login: each provider with a client id joins the list.
    let mut listed: Vec<&str> = Vec::new();
    for id in PROVIDERS {
        let up = id.to_ascii_uppercase();
        let original = |suffix: &str| format!("{up}_OAUTH_{suffix}");
        let ours = |suffix: &str| format!("TRUXE_OAUTH_{up}_{suffix}");
        if get(&original("CLIENT_ID")).is_none() {
            continue;
        }
        listed.push(id);
        let fields: [(&str, &[&str], &'static str); 4] = [
            ("CLIENT_ID", &["CLIENT_ID"], "the provider's client id"),
            (
                "CLIENT_SECRET",
                &["CLIENT_SECRET"],
                "the provider's client secret",
            ),
            (
                "REDIRECT_URI",
                &["REDIRECT_URI", "CALLBACK_URL"],
                "the callback URL registered with the provider",
            ),
            ("TENANT", &["TENANT"], "the Microsoft tenant"),
        ];
        for (our_suffix, theirs, meaning) in fields {
            for t in theirs {
                if let Some(v) = get(&original(t)) {
                    adopt(&original(t), ours(our_suffix), v, meaning);
                    break;
                }
            }
        }
    }
    if !listed.is_empty() {
        let names: Vec<String> = listed
            .iter()
            .map(|id| format!("{}_OAUTH_CLIENT_ID", id.to_ascii_uppercase()))
            .collect();
        adopt(
            &names.join(", "),
            "TRUXE_OAUTH_PROVIDERS".into(),
            listed.join(","),
            "the social-login providers to offer",
        );
    }
    report.extend(notes);
    for (name, why) in IGNORED {
        if get(name).is_some() {
            report.push(Reading {
                name: name.to_owned(),
                outcome: Outcome::Ignored(why),
            });
        }
    }
    (set, report)
}

static REPORT: OnceLock<Vec<Reading>> = OnceLock::new();

/// Adopts the original's names from the process environment. Call once,
/// first thing in `main`, before any thread starts (it sets variables).
pub fn adopt() {
    let (set, report) = translate(|n| std::env::var(n).ok());
    for (name, value) in set {
        std::env::set_var(name, value);
    }
    let _ = REPORT.set(report);
}

/// What [`adopt`] did.
pub fn report() -> &'static [Reading] {
    REPORT.get().map(Vec::as_slice).unwrap_or_default()
}

/// One line per reading, for `truxe check-config`.
pub fn describe(r: &Reading) -> String {
    match &r.outcome {
        Outcome::Read { ours, meaning } => format!("read {} as {ours}: {meaning}", r.name),
        Outcome::Overridden { ours } => {
            format!("not read {}: {ours} is set and is used instead", r.name)
        }
        Outcome::Ignored(why) => format!("ignored {}: {why}", r.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vars: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<String>) {
        let (set, report) = translate(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        });
        (set, report.iter().map(describe).collect())
    }

    #[test]
    fn the_originals_names_become_ours() {
        let (set, report) = run(&[
            ("SMTP_PASS", "pw"),
            ("SMTP_SECURE", "true"),
            ("EMAIL_FROM", "no-reply@example.com"),
            ("EMAIL_FROM_NAME", "Example"),
            ("PASSWORD_REQUIRE_SPECIAL", "false"),
            ("GITHUB_OAUTH_CLIENT_ID", "gh-id"),
            ("GITHUB_OAUTH_CLIENT_SECRET", "gh-secret"),
            (
                "GITHUB_OAUTH_REDIRECT_URI",
                "https://id.example.com/auth/oauth/callback/github",
            ),
            ("OAUTH_ALLOWED_REDIRECT_HOSTS", "app.example.com"),
        ]);
        let want = [
            ("SMTP_PASSWORD", "pw"),
            ("PASSWORD_REQUIRE_SYMBOLS", "false"),
            ("SMTP_TLS", "tls"),
            ("SMTP_FROM", "Example <no-reply@example.com>"),
            ("TRUXE_OAUTH_GITHUB_CLIENT_ID", "gh-id"),
            ("TRUXE_OAUTH_GITHUB_CLIENT_SECRET", "gh-secret"),
            (
                "TRUXE_OAUTH_GITHUB_REDIRECT_URI",
                "https://id.example.com/auth/oauth/callback/github",
            ),
            ("TRUXE_OAUTH_PROVIDERS", "github"),
        ];
        for (k, v) in want {
            assert!(set.contains(&(k.to_owned(), v.to_owned())), "{k}: {set:?}");
        }
        assert_eq!(set.len(), want.len(), "{set:?}");
        assert!(report
            .iter()
            .any(|l| l.starts_with("ignored OAUTH_ALLOWED_REDIRECT_HOSTS: ")));
        assert!(report.contains(&"read SMTP_PASS as SMTP_PASSWORD: the SMTP password".to_owned()));
        // Nothing is read that was not set.
        assert_eq!(run(&[]), (vec![], vec![]));
    }

    #[test]
    fn ours_wins_over_the_originals() {
        let (set, report) = run(&[
            ("SMTP_PASS", "old"),
            ("SMTP_PASSWORD", "new"),
            ("SMTP_SECURE", "false"),
        ]);
        assert_eq!(set, [("SMTP_TLS".to_owned(), "starttls".to_owned())]);
        assert!(report
            .contains(&"not read SMTP_PASS: SMTP_PASSWORD is set and is used instead".to_owned()));
    }
}
