//! Role-based access on key prefixes. A role grants actions on prefixes;
//! a principal's roles come from its API key, its certificate, or, for a
//! Truxe token, from the token's `roles` claim, and from the policy's
//! `subjects`, whose names carry their kind (`email:`, `sub:`, `service:`,
//! `key:`, `cert:`) so that one kind of name cannot pose as another.
//! Everything here is pure: the caller supplies the names, this decides.

use std::collections::{BTreeMap, BTreeSet};

use secure::ratelimit::Quota;
use serde::{Deserialize, Serialize};

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `GET /data/{key}`.
    Read,
    /// `PUT /data/{key}`.
    Write,
    /// `DELETE /data/{key}`.
    Delete,
    /// `GET /data?prefix=`.
    List,
    /// Cluster administration; only meaningful on the empty prefix.
    Admin,
    /// Reading the cluster's layout and metrics (`/nodes`, `/shards`,
    /// `/metrics`); only meaningful on the empty prefix.
    Monitor,
}

impl Action {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Admin => "admin",
            Action::Monitor => "monitor",
        }
    }
}

/// Actions on every key under `prefix` (`""`: every key).
///
/// A prefix ends at a separator (`tenant1/`, `app:`) so that a grant on
/// one tenant never covers another whose name merely starts the same way
/// (`tenant1` would also match `tenant10/`). A prefix that does not end at
/// a separator is accepted only with `raw: true`, which matches the bytes
/// as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Key prefix.
    pub prefix: String,
    /// Actions allowed under it.
    pub actions: BTreeSet<Action>,
    /// Match `prefix` as raw bytes even though it does not end at a separator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
}

/// Characters a (non-raw) grant prefix must end with.
const SEPARATORS: [char; 2] = ['/', ':'];

impl Grant {
    fn at_boundary(&self) -> bool {
        self.prefix.is_empty() || self.prefix.ends_with(SEPARATORS)
    }

    /// Whether `key` is under this grant's prefix. A grant stored before
    /// prefixes had to end at a separator is read at a boundary: the key
    /// itself, or the prefix followed by a separator.
    fn covers(&self, key: &str) -> bool {
        match key.strip_prefix(self.prefix.as_str()) {
            None => false,
            Some(rest) => {
                self.raw || self.at_boundary() || rest.is_empty() || rest.starts_with(SEPARATORS)
            }
        }
    }

    /// Whether every key starting with `prefix` is under this grant.
    fn covers_all(&self, prefix: &str) -> bool {
        match prefix.strip_prefix(self.prefix.as_str()) {
            None => false,
            Some(rest) => self.raw || self.at_boundary() || rest.starts_with(SEPARATORS),
        }
    }

    /// The prefixes whose keys are all under this grant.
    fn scopes(&self) -> Vec<String> {
        if self.raw || self.at_boundary() {
            return vec![self.prefix.clone()];
        }
        SEPARATORS
            .iter()
            .map(|s| format!("{}{s}", self.prefix))
            .collect()
    }
}

/// A named set of grants, with an optional request quota.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// What the role allows.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Requests per window for principals with this role, e.g. `500/1s`
    /// (the most generous of a principal's roles applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

/// Built-in role: every action on every key.
pub const ADMIN_ROLE: &str = "admin";
/// Built-in role of storage nodes: may register with the coordinator as
/// the one node its key or certificate names, nothing else.
pub const NODE_ROLE: &str = "node";
/// Built-in role of monitoring: may read `/nodes`, `/shards` and
/// `/metrics`, no data.
pub const MONITOR_ROLE: &str = "monitor";

/// The kinds of name `subjects` maps, each written `kind:value`.
pub const SUBJECT_KINDS: [&str; 5] = ["email", "sub", "service", "key", "cert"];

/// The access policy, versioned: every accepted change bumps `version`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Set by the coordinator; a change must name the version it replaces.
    #[serde(default)]
    pub version: u64,
    /// Custom roles by name (`admin` and `node` are built in).
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// Truxe role (the token's `roles` claim) → Torua roles.
    #[serde(default)]
    pub token_roles: BTreeMap<String, Vec<String>>,
    /// A named principal → Torua roles. Names carry their kind:
    /// `email:<address>` (a Truxe user token whose `email_verified` is
    /// true; never a service token), `sub:<user id>` (a Truxe user token),
    /// `service:<service account id>` (a Truxe client-credentials token),
    /// `key:<API key id>`, `cert:<certificate common name>`.
    #[serde(default)]
    pub subjects: BTreeMap<String, Vec<String>>,
}

/// Longest prefix, role name or subject accepted in a policy.
const MAX_NAME: usize = 4096;

fn builtin(name: &str) -> bool {
    name == ADMIN_ROLE || name == NODE_ROLE || name == MONITOR_ROLE
}

/// Checks a `subjects` name: a known kind, a value, and addresses in lower
/// case (tokens' addresses are compared in lower case).
fn check_subject(name: &str) -> Result<(), String> {
    let Some((kind, value)) = name.split_once(':') else {
        return Err(format!(
            "subjects: `{name}` has no kind; write `email:…` (honoured only for verified addresses), `sub:…`, `service:…`, `key:…` or `cert:…`"
        ));
    };
    if !SUBJECT_KINDS.contains(&kind) {
        return Err(format!(
            "subjects: `{name}` has the unknown kind `{kind}`; kinds are {}",
            SUBJECT_KINDS.join(", ")
        ));
    }
    if value.is_empty() {
        return Err(format!("subjects: `{name}` names nobody"));
    }
    if kind == "email" && value.chars().any(char::is_uppercase) {
        return Err(format!(
            "subjects: write `{name}` in lower case (addresses are compared in lower case)"
        ));
    }
    Ok(())
}

/// Whether `name` is a role a key or mapping may name.
pub fn role_exists(policy: &Policy, name: &str) -> bool {
    builtin(name) || policy.roles.contains_key(name)
}

impl Policy {
    /// Checks a proposed policy; the message names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        for (name, role) in &self.roles {
            if builtin(name) {
                return Err(format!("role `{name}` is built in and cannot be redefined"));
            }
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
                return Err(format!(
                    "role name `{name}` must be 1 to 64 characters without spaces"
                ));
            }
            if let Some(q) = &role.quota {
                q.parse::<Quota>()
                    .map_err(|e| format!("role `{name}`: {e}"))?;
            }
            for g in &role.grants {
                if g.prefix.len() > MAX_NAME {
                    return Err(format!(
                        "role `{name}`: a prefix is longer than {MAX_NAME} bytes"
                    ));
                }
                if g.actions.is_empty() {
                    return Err(format!(
                        "role `{name}`: the grant on `{}` has no actions",
                        g.prefix
                    ));
                }
                for whole in [Action::Admin, Action::Monitor] {
                    if g.actions.contains(&whole) && !g.prefix.is_empty() {
                        return Err(format!(
                            "role `{name}`: `{}` applies to the whole cluster; grant it on the prefix \"\"",
                            whole.as_str()
                        ));
                    }
                }
                if !g.raw && !g.at_boundary() {
                    return Err(format!(
                        "role `{name}`: the prefix `{p}` does not end at a separator, so it would also cover keys such as `{p}0/…`; write `{p}/` (or `{p}:`), or mark the grant `\"raw\": true` to match the bytes as written",
                        p = g.prefix
                    ));
                }
            }
        }
        for (what, map) in [
            ("token_roles", &self.token_roles),
            ("subjects", &self.subjects),
        ] {
            for (from, roles) in map {
                if from.is_empty() || from.len() > MAX_NAME {
                    return Err(format!("{what}: names must be 1 to {MAX_NAME} bytes"));
                }
                if let Some(r) = roles.iter().find(|r| !role_exists(self, r)) {
                    return Err(format!("{what}: `{from}` maps to unknown role `{r}`"));
                }
            }
        }
        self.subjects.keys().try_for_each(|s| check_subject(s))
    }

    /// Subject names written before names carried a kind; they match
    /// nobody (listed at start-up so the operator can rewrite them).
    pub fn unkinded_subjects(&self) -> Vec<&str> {
        self.subjects
            .keys()
            .filter(|s| check_subject(s).is_err())
            .map(String::as_str)
            .collect()
    }

    /// The roles of a principal known by the subject `names` (kind
    /// included, see [`Policy::subjects`]) and holding the Truxe roles
    /// `claimed` (mapped through `token_roles`), plus `own` (an API key's).
    pub fn roles_of(&self, names: &[String], claimed: &[String], own: &[String]) -> Vec<String> {
        let mut out: BTreeSet<String> = own.iter().cloned().collect();
        for name in names {
            out.extend(self.subjects.get(name).into_iter().flatten().cloned());
        }
        for c in claimed {
            out.extend(self.token_roles.get(c).into_iter().flatten().cloned());
        }
        out.into_iter().collect()
    }

    /// What `roles` may do under this policy. Unknown roles grant nothing.
    pub fn access(&self, roles: &[String]) -> Access {
        let mut grants = Vec::new();
        let mut quota: Option<Quota> = None;
        let mut node = false;
        for r in roles {
            match r.as_str() {
                ADMIN_ROLE => grants.push(Grant {
                    prefix: String::new(),
                    actions: [
                        Action::Read,
                        Action::Write,
                        Action::Delete,
                        Action::List,
                        Action::Admin,
                        Action::Monitor,
                    ]
                    .into(),
                    raw: false,
                }),
                MONITOR_ROLE => grants.push(Grant {
                    prefix: String::new(),
                    actions: [Action::Monitor].into(),
                    raw: false,
                }),
                NODE_ROLE => node = true,
                _ => {
                    let Some(role) = self.roles.get(r) else {
                        continue;
                    };
                    grants.extend(role.grants.iter().cloned());
                    if let Some(q) = role.quota.as_deref().and_then(|q| q.parse::<Quota>().ok()) {
                        quota = Some(match quota {
                            Some(old) if rate(&old) >= rate(&q) => old,
                            _ => q,
                        });
                    }
                }
            }
        }
        Access {
            grants,
            quota,
            node,
        }
    }
}

fn rate(q: &Quota) -> f64 {
    f64::from(q.limit) / q.window.as_secs_f64().max(1e-9)
}

/// The effective permissions of one principal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    grants: Vec<Grant>,
    /// The role quota, if any of its roles sets one.
    pub quota: Option<Quota>,
    /// Holds the built-in `node` role.
    pub node: bool,
}

impl Access {
    /// Everything (authentication switched off).
    pub fn everything() -> Access {
        Policy::default().access(&[ADMIN_ROLE.to_owned()])
    }

    /// Whether `action` is allowed on `key`.
    pub fn allows(&self, action: Action, key: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.actions.contains(&action) && g.covers(key))
    }

    /// The prefixes to list so that a listing under `prefix` returns
    /// exactly the keys the principal may list: `prefix` itself when a grant
    /// covers it, otherwise the granted prefixes that extend it. Empty when
    /// nothing under `prefix` may be listed.
    pub fn list_scopes(&self, prefix: &str) -> Vec<String> {
        let listable = || {
            self.grants
                .iter()
                .filter(|g| g.actions.contains(&Action::List))
        };
        if listable().any(|g| g.covers_all(prefix)) {
            return vec![prefix.to_owned()];
        }
        let mut scopes: Vec<String> = listable()
            .flat_map(|g| g.scopes())
            .filter(|s| s.starts_with(prefix))
            .collect();
        scopes.sort();
        scopes.dedup();
        // Drop scopes inside another (sorted order puts `a/` before `a/b/`).
        let mut out: Vec<String> = Vec::new();
        for s in scopes {
            if !out.last().is_some_and(|p| s.starts_with(p.as_str())) {
                out.push(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        serde_json::from_value(serde_json::json!({
            "roles": {
                "app": {"grants": [{"prefix": "app/", "actions": ["read", "write", "delete", "list"]}]},
                "reader": {"grants": [
                    {"prefix": "pub/", "actions": ["read", "list"]},
                    {"prefix": "pub/a/", "actions": ["list"]},
                    {"prefix": "docs/", "actions": ["list"]}
                ], "quota": "10/1s"},
                "fast": {"quota": "1000/1s"}
            },
            "token_roles": {"user": ["reader"], "admin": ["admin"]},
            "subjects": {"sub:u-1": ["app"], "email:ops@example.com": ["fast"]}
        }))
        .unwrap()
    }

    #[test]
    fn grants_apply_to_their_prefix_only() {
        let p = policy();
        assert_eq!(p.validate(), Ok(()));
        let app = p.access(&["app".into()]);
        assert!(app.allows(Action::Write, "app/x"));
        assert!(!app.allows(Action::Write, "ap"));
        assert!(!app.allows(Action::Write, "other"));
        assert!(!app.allows(Action::Admin, ""));
        let admin = p.access(&["admin".into()]);
        assert!(admin.allows(Action::Admin, "") && admin.allows(Action::Delete, "x"));
        assert!(p.access(&["missing".into()]).grants.is_empty());
        assert!(p.access(&["node".into()]).node);
    }

    #[test]
    fn token_roles_come_from_claims_and_subjects() {
        let p = policy();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            p.roles_of(
                &names(&["sub:u-1", "email:ops@example.com"]),
                &["user".into()],
                &[]
            ),
            vec!["app", "fast", "reader"]
        );
        assert!(p
            .roles_of(&names(&["sub:u-2"]), &["nobody".into()], &[])
            .is_empty());
        // A name of one kind never matches another kind's entry.
        assert!(p
            .roles_of(&names(&["cert:u-1", "key:u-1", "service:u-1"]), &[], &[])
            .is_empty());
        assert_eq!(p.roles_of(&[], &[], &["admin".into()]), vec!["admin"]);
        // The most generous quota of the roles applies.
        let a = p.access(&["reader".into(), "fast".into()]);
        assert_eq!(a.quota.map(|q| q.limit), Some(1000));
    }

    #[test]
    fn prefixes_end_at_a_separator_unless_raw() {
        let grant = |prefix: &str, raw: bool| Role {
            grants: vec![Grant {
                prefix: prefix.into(),
                actions: [Action::Write, Action::List].into(),
                raw,
            }],
            quota: None,
        };
        let mut p = policy();
        p.roles.insert("t".into(), grant("tenant1", false));
        assert!(p.validate().unwrap_err().contains("tenant1/"));
        for ok in ["tenant1/", "tenant1:", ""] {
            p.roles.insert("t".into(), grant(ok, false));
            assert_eq!(p.validate(), Ok(()), "{ok}");
        }
        p.roles.insert("t".into(), grant("tenant1/", false));
        let a = p.access(&["t".into()]);
        assert!(a.allows(Action::Write, "tenant1/x"));
        assert!(!a.allows(Action::Write, "tenant10/x"));
        // Raw, on request: the bytes as written.
        p.roles.insert("t".into(), grant("tenant1", true));
        assert_eq!(p.validate(), Ok(()));
        assert!(p.access(&["t".into()]).allows(Action::Write, "tenant10/x"));
        // A grant stored before the rule is read at a boundary.
        p.roles.insert("t".into(), grant("tenant1", false));
        let legacy = p.access(&["t".into()]);
        assert!(legacy.allows(Action::Write, "tenant1/x"));
        assert!(legacy.allows(Action::Write, "tenant1:x"));
        assert!(!legacy.allows(Action::Write, "tenant10/x"));
        assert_eq!(legacy.list_scopes("tenant1"), vec!["tenant1/", "tenant1:"]);
        assert_eq!(legacy.list_scopes("tenant1/a"), vec!["tenant1/a"]);
    }

    #[test]
    fn listing_is_narrowed_to_what_may_be_listed() {
        let r = policy().access(&["reader".into()]);
        assert_eq!(r.list_scopes("pub/x"), vec!["pub/x"]);
        assert_eq!(r.list_scopes(""), vec!["docs/", "pub/"]);
        assert_eq!(r.list_scopes("p"), vec!["pub/"]);
        assert!(r.list_scopes("secret/").is_empty());
    }

    #[test]
    fn bad_policies_are_refused_with_the_entry_named() {
        let mut p = policy();
        p.roles.insert("admin".into(), Role::default());
        assert!(p.validate().unwrap_err().contains("built in"));
        let mut p = policy();
        p.token_roles.insert("x".into(), vec!["ghost".into()]);
        assert!(p.validate().unwrap_err().contains("ghost"));
        let mut p = policy();
        p.roles.insert(
            "half".into(),
            Role {
                grants: vec![Grant {
                    prefix: "a/".into(),
                    actions: [Action::Admin].into(),
                    raw: false,
                }],
                quota: None,
            },
        );
        assert!(p.validate().unwrap_err().contains("whole cluster"));
        let mut p = policy();
        p.subjects
            .insert("victim@example.com".into(), vec!["app".into()]);
        assert!(p.validate().unwrap_err().contains("no kind"));
        let mut p = policy();
        p.subjects.insert("mail:x".into(), vec!["app".into()]);
        assert!(p.validate().unwrap_err().contains("unknown kind"));
        let mut p = policy();
        p.subjects
            .insert("email:Ops@x.com".into(), vec!["app".into()]);
        assert!(p.validate().unwrap_err().contains("lower case"));
        let mut p = policy();
        p.roles.get_mut("app").unwrap().quota = Some("lots".into());
        assert!(p.validate().unwrap_err().contains("app"));
        assert!(serde_json::from_str::<Policy>(r#"{"roles":{},"extra":1}"#).is_err());
        assert!(serde_json::from_str::<Policy>(
            r#"{"roles":{"r":{"grants":[{"prefix":"","actions":["fly"]}]}}}"#
        )
        .is_err());
    }
}
