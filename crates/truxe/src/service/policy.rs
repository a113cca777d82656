//! Organization roles and permissions: the one place that decides what a
//! role allows. Services ask [`RoleSet::allows`] and [`RoleSet::covers`];
//! no handler compares role names or permission strings itself.
//!
//! A permission is `resource:action`. `resource:*` grants every action on
//! the resource and `*` grants everything. A role is a set of permissions
//! plus the roles it inherits. Four roles are built in; an organization may
//! define more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Permissions Truxe itself checks. Custom roles may hold others too:
/// applications read them from the token's `permissions` claim.
pub mod perm {
    /// See the organization.
    pub const ORG_READ: &str = "organization:read";
    /// Rename it, change its metadata or parent.
    pub const ORG_UPDATE: &str = "organization:update";
    /// Delete it.
    pub const ORG_DELETE: &str = "organization:delete";
    /// List members.
    pub const MEMBERS_READ: &str = "members:read";
    /// Invite people (and see or revoke invitations).
    pub const MEMBERS_INVITE: &str = "members:invite";
    /// Change a member's role.
    pub const MEMBERS_UPDATE: &str = "members:update";
    /// Remove a member.
    pub const MEMBERS_REMOVE: &str = "members:remove";
    /// List roles.
    pub const ROLES_READ: &str = "roles:read";
    /// Create, change and delete custom roles.
    pub const ROLES_MANAGE: &str = "roles:manage";
    /// See service accounts and their keys.
    pub const SERVICE_ACCOUNTS_READ: &str = "service_accounts:read";
    /// Create, change and delete service accounts and keys.
    pub const SERVICE_ACCOUNTS_MANAGE: &str = "service_accounts:manage";
    /// See webhook endpoints and deliveries.
    pub const WEBHOOKS_READ: &str = "webhooks:read";
    /// Create, change, test and delete endpoints; retry deliveries.
    pub const WEBHOOKS_MANAGE: &str = "webhooks:manage";
    /// See the organization's OAuth clients (applications) and their use.
    pub const OAUTH_CLIENTS_READ: &str = "oauth_clients:read";
    /// Register, change and delete them; new secrets.
    pub const OAUTH_CLIENTS_MANAGE: &str = "oauth_clients:manage";
}

/// Built-in role names.
pub const OWNER: &str = "owner";
/// Manages the organization, except deleting it and owners.
pub const ADMIN: &str = "admin";
/// Uses the organization.
pub const MEMBER: &str = "member";
/// Reads only.
pub const VIEWER: &str = "viewer";

/// How deep inheritance may go (and how long an ancestor chain may be).
pub const MAX_DEPTH: usize = 16;
/// Custom roles one organization may define.
pub const MAX_CUSTOM_ROLES: usize = 100;

/// A role definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    /// Name, unique in its organization.
    pub name: String,
    /// What it says it is for.
    pub description: String,
    /// Permissions held directly.
    pub permissions: Vec<String>,
    /// Roles whose permissions it also holds.
    pub inherits: Vec<String>,
}

fn builtin(name: &str) -> Option<RoleDef> {
    let def = |permissions: &[&str], inherits: &[&str], description: &str| RoleDef {
        name: name.to_owned(),
        description: description.to_owned(),
        permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
        inherits: inherits.iter().map(|s| (*s).to_owned()).collect(),
    };
    Some(match name {
        VIEWER => def(
            &[perm::ORG_READ, perm::MEMBERS_READ, perm::ROLES_READ],
            &[],
            "read-only access",
        ),
        MEMBER => def(
            &[perm::WEBHOOKS_READ, perm::SERVICE_ACCOUNTS_READ],
            &[VIEWER],
            "uses the organization",
        ),
        ADMIN => def(
            &[
                perm::ORG_UPDATE,
                "members:*",
                perm::ROLES_MANAGE,
                "webhooks:*",
                "service_accounts:*",
                "oauth_clients:*",
                "audit:read",
            ],
            &[MEMBER],
            "manages the organization, except owners and deletion",
        ),
        OWNER => def(&["*"], &[ADMIN], "full control"),
        _ => return None,
    })
}

/// The built-in role names, most powerful first.
pub const BUILTIN: [&str; 4] = [OWNER, ADMIN, MEMBER, VIEWER];

/// Whether `p` is a well-formed permission: `*`, `resource:*` or
/// `resource:action` of lower-case letters, digits, `_`, `-` and `.`.
pub fn valid_permission(p: &str) -> bool {
    let part = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
    };
    p == "*"
        || p.split_once(':')
            .is_some_and(|(r, a)| part(r) && (a == "*" || part(a)))
}

/// Whether a custom role may be called `name`.
pub fn valid_role_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether holding `held` grants `wanted`.
fn grants(held: &str, wanted: &str) -> bool {
    held == "*"
        || held == wanted
        || held
            .strip_suffix(":*")
            .is_some_and(|r| wanted.split_once(':').is_some_and(|(wr, _)| wr == r))
}

/// Whether a held set grants `wanted`.
pub fn set_allows(held: &BTreeSet<String>, wanted: &str) -> bool {
    held.iter().any(|h| grants(h, wanted))
}

/// Whether a held set grants every one of `wanted`.
pub fn set_covers(held: &BTreeSet<String>, wanted: &BTreeSet<String>) -> bool {
    wanted.iter().all(|w| set_allows(held, w))
}

/// The permissions of `asked` that `ceiling` grants: what a key holds
/// under its account, however either was changed since.
pub fn narrow(asked: &[String], ceiling: &[String]) -> BTreeSet<String> {
    let ceiling: BTreeSet<String> = ceiling.iter().cloned().collect();
    asked
        .iter()
        .filter(|p| set_allows(&ceiling, p))
        .cloned()
        .collect()
}

/// Why a role definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Unknown role.
    #[error("no role named `{0}` in this organization")]
    UnknownRole(String),
    /// The definition is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Inheritance would loop.
    #[error("role `{0}` would inherit from itself")]
    Cycle(String),
}

/// A role's permissions with its ancestors', and the length of its
/// longest ancestor chain; or why it does not resolve.
type Resolved = Result<(Arc<BTreeSet<String>>, usize), PolicyError>;

/// The roles of one organization: the built-in four plus its custom roles,
/// each resolved once when the set is made (every role is visited once,
/// however many paths lead to it, so nested roles cost no more than flat
/// ones).
#[derive(Debug, Clone)]
pub struct RoleSet {
    custom: BTreeMap<String, RoleDef>,
    resolved: BTreeMap<String, Resolved>,
}

impl Default for RoleSet {
    fn default() -> Self {
        RoleSet::new([])
    }
}

impl RoleSet {
    /// The built-in roles plus `custom`, resolved.
    pub fn new(custom: impl IntoIterator<Item = RoleDef>) -> Self {
        let custom: BTreeMap<String, RoleDef> =
            custom.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut set = RoleSet {
            custom,
            resolved: BTreeMap::new(),
        };
        let names: Vec<String> = BUILTIN
            .iter()
            .map(|n| (*n).to_owned())
            .chain(set.custom.keys().cloned())
            .collect();
        let mut memo = BTreeMap::new();
        for name in &names {
            // Each outcome, success or error, lands in `memo`.
            let _ = set.resolve(name, &mut Vec::new(), &mut memo);
        }
        set.resolved = memo;
        set
    }

    /// Resolves `role` into `memo` (depth first; `path` is the chain that
    /// led here, to tell a cycle).
    fn resolve(
        &self,
        role: &str,
        path: &mut Vec<String>,
        memo: &mut BTreeMap<String, Resolved>,
    ) -> Resolved {
        if let Some(done) = memo.get(role) {
            return done.clone();
        }
        if path.iter().any(|p| p == role) {
            return Err(PolicyError::Cycle(role.to_owned()));
        }
        let deeper =
            || PolicyError::Invalid(format!("inheritance is deeper than {MAX_DEPTH} roles"));
        if path.len() >= MAX_DEPTH {
            return Err(deeper());
        }
        let Some(def) = self.get(role) else {
            return Err(PolicyError::UnknownRole(role.to_owned()));
        };
        path.push(role.to_owned());
        let mut held: BTreeSet<String> = def.permissions.iter().cloned().collect();
        let mut depth = 1;
        let mut outcome = Ok(());
        for parent in &def.inherits {
            match self.resolve(parent, path, memo) {
                Ok((perms, d)) => {
                    held.extend(perms.iter().cloned());
                    depth = depth.max(d + 1);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        path.pop();
        let result = match outcome {
            Err(e) => Err(e),
            Ok(()) if depth > MAX_DEPTH => Err(deeper()),
            Ok(()) => Ok((Arc::new(held), depth)),
        };
        memo.insert(role.to_owned(), result.clone());
        result
    }

    /// A role by name.
    pub fn get(&self, name: &str) -> Option<RoleDef> {
        builtin(name).or_else(|| self.custom.get(name).cloned())
    }

    /// Every role, built-in first.
    pub fn all(&self) -> Vec<(RoleDef, bool)> {
        BUILTIN
            .iter()
            .filter_map(|n| builtin(n).map(|r| (r, true)))
            .chain(self.custom.values().map(|r| (r.clone(), false)))
            .collect()
    }

    /// Every permission `role` holds, inherited ones included.
    pub fn effective(&self, role: &str) -> Result<BTreeSet<String>, PolicyError> {
        match self.resolved.get(role) {
            Some(r) => r.clone().map(|(held, _)| (*held).clone()),
            None => Err(PolicyError::UnknownRole(role.to_owned())),
        }
    }

    /// Whether `role` grants `wanted`. Unknown roles grant nothing.
    pub fn allows(&self, role: &str, wanted: &str) -> bool {
        self.effective(role)
            .is_ok_and(|held| held.iter().any(|h| grants(h, wanted)))
    }

    /// Whether `holder` has every permission of `other`: the rule against
    /// escalation. Nobody grants, changes or removes a role stronger than
    /// their own, so only owners touch owners.
    pub fn covers(&self, holder: &str, other: &str) -> bool {
        self.effective(other)
            .is_ok_and(|wanted| self.covers_all(holder, &wanted))
    }

    /// Whether `holder` (resolved in this set) grants every one of `wanted`.
    pub fn covers_all(&self, holder: &str, wanted: &BTreeSet<String>) -> bool {
        self.effective(holder)
            .is_ok_and(|held| set_covers(&held, wanted))
    }

    /// This set with `def` added or replaced.
    pub fn with(&self, def: RoleDef) -> RoleSet {
        let mut custom = self.custom.clone();
        custom.insert(def.name.clone(), def);
        RoleSet::new(custom.into_values())
    }

    /// Checks a new or changed custom role against this set: a free,
    /// well-formed name, valid permissions, known parents and no cycle.
    pub fn validate(&self, def: &RoleDef) -> Result<(), PolicyError> {
        if builtin(&def.name).is_some() {
            return Err(PolicyError::Invalid(format!(
                "`{}` is a built-in role",
                def.name
            )));
        }
        if !valid_role_name(&def.name) {
            return Err(PolicyError::Invalid(
                "role names are 1 to 40 characters: a lower-case letter, then letters, digits, `_` or `-`".into(),
            ));
        }
        if def.description.chars().count() > 200 {
            return Err(PolicyError::Invalid(
                "description is at most 200 characters".into(),
            ));
        }
        if !self.custom.contains_key(&def.name) && self.custom.len() >= MAX_CUSTOM_ROLES {
            return Err(PolicyError::Invalid(format!(
                "an organization defines at most {MAX_CUSTOM_ROLES} custom roles; delete one first"
            )));
        }
        if def.permissions.len() > 100 || def.inherits.len() > 10 {
            return Err(PolicyError::Invalid(
                "a role holds at most 100 permissions and inherits at most 10 roles".into(),
            ));
        }
        if let Some(bad) = def.permissions.iter().find(|p| !valid_permission(p)) {
            return Err(PolicyError::Invalid(format!(
                "`{bad}` is not a permission (`resource:action`, `resource:*` or `*`)"
            )));
        }
        let next = self.with(def.clone());
        // Every role that could reach the changed one must still resolve.
        for name in next.custom.keys() {
            next.effective(name)?;
        }
        Ok(())
    }

    /// Roles that inherit `name` directly.
    pub fn heirs(&self, name: &str) -> Vec<String> {
        self.custom
            .values()
            .filter(|r| r.inherits.iter().any(|i| i == name))
            .map(|r| r.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, perms: &[&str], inherits: &[&str]) -> RoleDef {
        RoleDef {
            name: name.into(),
            description: String::new(),
            permissions: perms.iter().map(|s| (*s).into()).collect(),
            inherits: inherits.iter().map(|s| (*s).into()).collect(),
        }
    }

    #[test]
    fn builtin_roles_nest() {
        let set = RoleSet::default();
        assert!(set.allows(VIEWER, perm::MEMBERS_READ));
        assert!(!set.allows(VIEWER, perm::MEMBERS_INVITE));
        assert!(set.allows(MEMBER, perm::ORG_READ), "inherited from viewer");
        assert!(
            set.allows(ADMIN, perm::MEMBERS_REMOVE),
            "members:* covers it"
        );
        assert!(!set.allows(ADMIN, perm::ORG_DELETE));
        assert!(set.allows(OWNER, perm::ORG_DELETE));
        assert!(set.allows(OWNER, "anything:at_all"));
        assert!(!set.allows("nobody", perm::ORG_READ));
    }

    #[test]
    fn escalation_is_refused() {
        let set = RoleSet::default();
        assert!(set.covers(OWNER, OWNER));
        assert!(set.covers(ADMIN, ADMIN));
        assert!(set.covers(ADMIN, MEMBER));
        assert!(
            !set.covers(ADMIN, OWNER),
            "admins cannot make or touch owners"
        );
        assert!(!set.covers(MEMBER, ADMIN));
        let set = RoleSet::new([role("billing", &["billing:*"], &[MEMBER])]);
        assert!(set.covers(OWNER, "billing"));
        assert!(!set.covers(ADMIN, "billing"), "admins lack billing:*");
    }

    #[test]
    fn custom_roles_inherit_and_cycles_are_refused() {
        let set = RoleSet::new([
            role("auditor", &["audit:read"], &[VIEWER]),
            role("lead", &["reports:write"], &["auditor"]),
        ]);
        assert!(set.allows("lead", "audit:read"));
        assert!(set.allows("lead", perm::ORG_READ));
        assert!(!set.allows("lead", perm::ORG_UPDATE));
        assert_eq!(set.heirs("auditor"), vec!["lead".to_owned()]);
        // auditor → lead → auditor
        let looped = role("auditor", &["audit:read"], &["lead"]);
        assert!(matches!(set.validate(&looped), Err(PolicyError::Cycle(_))));
        assert!(matches!(
            set.validate(&role("x", &[], &["ghost"])),
            Err(PolicyError::UnknownRole(_))
        ));
        assert!(set.validate(&role("owner", &[], &[])).is_err());
        assert!(set.validate(&role("Bad Name", &[], &[])).is_err());
        assert!(set.validate(&role("ok", &["nocolon"], &[])).is_err());
        assert!(set
            .validate(&role("ok", &["a:b", "c:*", "*"], &[ADMIN]))
            .is_ok());
    }

    #[test]
    fn nested_roles_resolve_once_each_and_are_capped() {
        // 12 layers of 8, each role inheriting the whole layer below:
        // 8^12 paths, 96 roles.
        let mut defs = Vec::new();
        for layer in 0..12 {
            for i in 0..8 {
                let below: Vec<String> = if layer == 0 {
                    vec![]
                } else {
                    (0..8).map(|j| format!("l{}r{j}", layer - 1)).collect()
                };
                let below: Vec<&str> = below.iter().map(String::as_str).collect();
                defs.push(role(
                    &format!("l{layer}r{i}"),
                    &[&format!("p{layer}:x{i}")],
                    &below,
                ));
            }
        }
        let set = RoleSet::new(defs.clone());
        assert_eq!(set.effective("l11r0").map(|p| p.len()), Ok(89));
        assert!(set.allows("l11r3", "p0:x7"));
        // Capped: the 101st custom role, and chains deeper than MAX_DEPTH.
        let mut more = defs.clone();
        more.extend((0..4).map(|i| role(&format!("extra{i}"), &["a:b"], &[])));
        let full = RoleSet::new(more);
        let e = full.validate(&role("onemore", &["a:b"], &[]));
        assert!(
            matches!(&e, Err(PolicyError::Invalid(m)) if m.contains("at most 100")),
            "{e:?}"
        );
        assert!(
            full.validate(&role("extra0", &["a:c"], &[])).is_ok(),
            "changing one is fine"
        );
        let chain: Vec<RoleDef> = (0..MAX_DEPTH)
            .map(|i| {
                let parent = if i == 0 {
                    vec![]
                } else {
                    vec![format!("c{}", i - 1)]
                };
                let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
                role(&format!("c{i}"), &[], &parent)
            })
            .collect();
        let set = RoleSet::new(chain);
        assert!(set.effective(&format!("c{}", MAX_DEPTH - 1)).is_ok());
        let e = set.validate(&role("too-deep", &[], &[&format!("c{}", MAX_DEPTH - 1)]));
        assert!(
            matches!(&e, Err(PolicyError::Invalid(m)) if m.contains("deeper")),
            "{e:?}"
        );
    }

    #[test]
    fn permission_syntax() {
        for good in ["*", "a:b", "orders:*", "x.y:read-all", "r_1:a_2"] {
            assert!(valid_permission(good), "{good}");
        }
        for bad in [
            "", ":", "a:", ":b", "A:b", "a:b:c", "a b:c", "*:read", "é:x",
        ] {
            assert!(!valid_permission(bad), "{bad}");
        }
        assert!(grants("members:*", "members:invite"));
        assert!(!grants("members:*", "membersx:invite"));
        assert!(!grants("members:read", "members:*"));
    }

    #[test]
    fn keys_are_narrowed_to_their_account() {
        let asked: Vec<String> = ["members:read", "orders:write", "audit:read"]
            .iter()
            .map(|s| (*s).into())
            .collect();
        let ceiling = vec!["members:*".to_owned(), "audit:read".to_owned()];
        let got: Vec<String> = narrow(&asked, &ceiling).into_iter().collect();
        assert_eq!(got, ["audit:read", "members:read"]);
        assert!(narrow(&asked, &[]).is_empty());
        assert_eq!(narrow(&asked, &["*".to_owned()]).len(), 3);
    }
}
