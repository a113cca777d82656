//! Role-based access on key prefixes. A role grants actions on prefixes;
//! a principal's roles come from its API key, or, for a Truxe token, from
//! the token's `roles` claim and `sub`/`email` through the policy's maps.
//! Everything here is pure: the caller supplies the roles, this decides.

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
        }
    }
}

/// Actions on every key starting with `prefix` (`""`: every key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Key prefix.
    pub prefix: String,
    /// Actions allowed under it.
    pub actions: BTreeSet<Action>,
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
/// Built-in role of storage nodes: may register with the coordinator, nothing else.
pub const NODE_ROLE: &str = "node";

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
    /// Token subject (`sub`) or email → Torua roles.
    #[serde(default)]
    pub subjects: BTreeMap<String, Vec<String>>,
}

/// Longest prefix, role name or subject accepted in a policy.
const MAX_NAME: usize = 4096;

fn builtin(name: &str) -> bool {
    name == ADMIN_ROLE || name == NODE_ROLE
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
                if g.actions.contains(&Action::Admin) && !g.prefix.is_empty() {
                    return Err(format!(
                        "role `{name}`: `admin` applies to the whole cluster; grant it on the prefix \"\""
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
        Ok(())
    }

    /// The roles a Truxe token holder has.
    pub fn token_holder_roles(
        &self,
        sub: &str,
        email: Option<&str>,
        claimed: &[String],
    ) -> Vec<String> {
        let mut out = BTreeSet::new();
        for name in std::iter::once(sub).chain(email) {
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
                    ]
                    .into(),
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
            .any(|g| g.actions.contains(&action) && key.starts_with(&g.prefix))
    }

    /// The prefixes to list so that a listing under `prefix` returns
    /// exactly the keys the principal may list: `prefix` itself when a grant
    /// covers it, otherwise the granted prefixes that extend it. Empty when
    /// nothing under `prefix` may be listed.
    pub fn list_scopes(&self, prefix: &str) -> Vec<String> {
        if self.allows(Action::List, prefix) {
            return vec![prefix.to_owned()];
        }
        let mut scopes: Vec<String> = self
            .grants
            .iter()
            .filter(|g| g.actions.contains(&Action::List) && g.prefix.starts_with(prefix))
            .map(|g| g.prefix.clone())
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
            "subjects": {"u-1": ["app"], "ops@example.com": ["fast"]}
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
        assert_eq!(
            p.token_holder_roles("u-1", Some("ops@example.com"), &["user".into()]),
            vec!["app", "fast", "reader"]
        );
        assert!(p
            .token_holder_roles("u-2", None, &["nobody".into()])
            .is_empty());
        // The most generous quota of the roles applies.
        let a = p.access(&["reader".into(), "fast".into()]);
        assert_eq!(a.quota.map(|q| q.limit), Some(1000));
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
                }],
                quota: None,
            },
        );
        assert!(p.validate().unwrap_err().contains("whole cluster"));
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
