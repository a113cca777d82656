//! `truxe import truxe-v1`: moves the users, organizations and webhooks of
//! an original (Node) Truxe database into this one.
//!
//! Every row keeps its id, so a token subject, a webhook id or an
//! organization id an application stored still names the same thing.
//! Nothing present is overwritten: a second run, or a run after an
//! interruption, copies only what is missing (idempotent and resumable).
//! A row that cannot be carried faithfully is left out with its reason
//! rather than carried weaker: a user whose TOTP secret does not open is
//! not imported without its second factor.

use std::collections::{HashMap, HashSet};

use secure::legacy::V1Cipher;
use secure::{token, totp, Secret};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::org::{check_name, check_slug};
use super::policy::{RoleDef, ADMIN, MEMBER, OWNER, VIEWER};
use super::webhooks::check_events;
use super::{AuthError, AuthService};
use crate::model::{Membership, OAuthIdentity, Organization, User, WebhookEndpoint};
use crate::oauth::ProviderTokens;
use crate::repo::truxe_v1::{
    self as v1, Table, V1Endpoint, V1Identity, V1Membership, V1Org, V1Role, V1Source, V1User,
    V1UserRole,
};
use crate::repo::{Imported, RepoError};

/// Problems listed one by one in a report; beyond this they are counted.
const LISTED: usize = 200;

/// One kind of row: what was found and what became of it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct KindReport {
    /// `users`, `organizations`, …
    pub kind: &'static str,
    /// Rows in the source (none if the source lacks the table).
    pub found: u64,
    /// Copied now (in a dry run: would be).
    pub imported: u64,
    /// Already here from an earlier run.
    pub present: u64,
    /// Left out, each with its reason in `problems`.
    pub skipped: u64,
}

/// A row left out, or carried with something missing.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Kind of row.
    pub kind: &'static str,
    /// Its id in the source.
    pub id: String,
    /// `skipped` or `partial`.
    pub outcome: &'static str,
    /// Why.
    pub reason: String,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// Per kind, in the order imported.
    pub kinds: Vec<KindReport>,
    /// The first problems.
    pub problems: Vec<Problem>,
    /// Problems beyond those listed.
    pub more_problems: u64,
}

impl ImportReport {
    /// Rows left out in all.
    pub fn skipped(&self) -> u64 {
        self.kinds.iter().map(|k| k.skipped).sum()
    }
}

/// How far an import is, for progress output.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Kind being copied.
    pub kind: &'static str,
    /// Rows of it handled.
    pub done: u64,
    /// Rows of it in the source.
    pub total: u64,
}

/// Options of an import.
pub struct ImportOptions {
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// The original's `MFA_ENCRYPTION_KEY`, to open its TOTP secrets.
    pub v1_mfa_key: Option<Secret<String>>,
}

/// One run: the source, the options and the report being written.
struct Run<'a> {
    auth: &'a AuthService,
    src: &'a V1Source,
    opts: &'a ImportOptions,
    report: ImportReport,
    progress: &'a (dyn Fn(Progress) + Sync),
    now: i64,
    /// Users and organizations here after this run (or, dry, that would
    /// be), by id: what memberships, links and endpoints may refer to.
    users: HashSet<String>,
    orgs: HashSet<String>,
    /// Custom roles here, by organization.
    roles: HashMap<String, Vec<RoleDef>>,
    /// Roles of the source by id: (organization, name).
    role_names: HashMap<String, (String, String)>,
    /// Memberships here, with their role.
    members: HashMap<(String, String), String>,
}

/// Unix seconds of a source time, or `now` if it had none.
fn secs(t: Option<f64>, now: i64) -> i64 {
    t.map_or(now, |t| t as i64)
}

impl AuthService {
    /// Copies what `src` holds that this database lacks; see the module
    /// documentation. `progress` is called as rows are handled.
    pub async fn import_truxe_v1(
        &self,
        src: &V1Source,
        opts: &ImportOptions,
        progress: &(dyn Fn(Progress) + Sync),
        now: i64,
    ) -> Result<ImportReport, AuthError> {
        let mut run = Run {
            auth: self,
            src,
            opts,
            report: ImportReport {
                dry_run: opts.dry_run,
                ..ImportReport::default()
            },
            progress,
            now,
            users: HashSet::new(),
            orgs: HashSet::new(),
            roles: HashMap::new(),
            role_names: HashMap::new(),
            members: HashMap::new(),
        };
        run.users().await?;
        run.orgs().await?;
        run.roles().await?;
        run.memberships().await?;
        run.user_roles().await?;
        run.identities().await?;
        run.endpoints().await?;
        Ok(run.report)
    }
}

impl Run<'_> {
    /// Starts the report of `t`; `None` if the source lacks the table.
    async fn begin(&mut self, kind: &'static str, t: &Table) -> Result<Option<u64>, AuthError> {
        let total = if self.src.has(t.name).await? {
            Some(self.src.count(t).await?.max(0) as u64)
        } else {
            None
        };
        self.report.kinds.push(KindReport {
            kind,
            found: total.unwrap_or(0),
            ..KindReport::default()
        });
        Ok(total)
    }

    fn kind(&mut self) -> &mut KindReport {
        // `begin` pushed one before any row is counted.
        let last = self.report.kinds.len().saturating_sub(1);
        &mut self.report.kinds[last]
    }

    fn problem(&mut self, id: &str, outcome: &'static str, reason: String) {
        let kind = self.kind().kind;
        if outcome == "skipped" {
            self.kind().skipped += 1;
        }
        if self.report.problems.len() < LISTED {
            self.report.problems.push(Problem {
                kind,
                id: id.to_owned(),
                outcome,
                reason,
            });
        } else {
            self.report.more_problems += 1;
        }
    }

    fn skip(&mut self, id: &str, reason: impl Into<String>) {
        self.problem(id, "skipped", reason.into());
    }

    /// Counts what writing (or, dry, finding) one row gave.
    fn count(&mut self, id: &str, what: Imported, taken: &str) {
        match what {
            Imported::New => self.kind().imported += 1,
            Imported::Present => self.kind().present += 1,
            Imported::Taken => self.skip(id, taken.to_owned()),
        }
    }

    /// The next page of `p`'s table (progress reported for the rows
    /// before it), or `None` at the end.
    async fn next<T: DeserializeOwned>(
        &mut self,
        p: &mut Pager,
    ) -> Result<Option<Vec<T>>, AuthError> {
        if p.done > 0 {
            let kind = self.kind().kind;
            (self.progress)(Progress {
                kind,
                done: p.done,
                total: p.total,
            });
        }
        let page: Vec<(String, T)> = self.src.page(p.table, &p.after).await?;
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        p.after = last.clone();
        p.done += page.len() as u64;
        Ok(Some(page.into_iter().map(|(_, row)| row).collect()))
    }
}

/// Where reading one table has got to.
struct Pager {
    table: &'static Table,
    after: String,
    done: u64,
    total: u64,
}

impl Pager {
    fn new(table: &'static Table, total: u64) -> Self {
        Self {
            table,
            after: String::new(),
            done: 0,
            total,
        }
    }
}

/// The original's built-in membership roles, which are Truxe's too.
const BUILT_IN: [&str; 4] = [OWNER, ADMIN, MEMBER, VIEWER];

impl Run<'_> {
    async fn users(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("users", &v1::USERS).await? else {
            return Ok(());
        };
        let secrets = self.src.totp_secrets().await?;
        let cipher = self
            .opts
            .v1_mfa_key
            .as_ref()
            .map(|k| V1Cipher::new(k.expose()));
        let mut p = Pager::new(&v1::USERS, total);
        while let Some(page) = self.next::<V1User>(&mut p).await? {
            for u in page {
                let totp = secrets.get(&u.id).map(String::as_str);
                self.user(u, totp, cipher.as_ref()).await?;
            }
        }
        Ok(())
    }

    async fn user(
        &mut self,
        u: V1User,
        sealed_totp: Option<&str>,
        cipher: Option<&V1Cipher>,
    ) -> Result<(), AuthError> {
        let Ok(email) = super::auth::normalize_email(&u.email) else {
            self.skip(&u.id, "the email address is not valid");
            return Ok(());
        };
        let store = &self.auth.store;
        let found = match store.user_by_id(&u.id).await? {
            Some(_) => Some(Imported::Present),
            None => store.user_by_email(&email).await?.map(|_| Imported::Taken),
        };
        if found == Some(Imported::Present) {
            self.users.insert(u.id);
            self.kind().present += 1;
            return Ok(());
        }
        // Its second factor comes with it, or it does not come.
        let totp_secret = match (sealed_totp, cipher) {
            (None, _) => None,
            (Some(_), None) => {
                self.skip(&u.id, "has a TOTP secret, and no key was given to open it (--v1-mfa-key-file or TRUXE_V1_MFA_ENCRYPTION_KEY)");
                return Ok(());
            }
            (Some(sealed), Some(c)) => {
                let secret = c
                    .open(sealed)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|b32| totp::from_base32(b32.trim()).ok());
                let Some(secret) = secret else {
                    self.skip(&u.id, "its TOTP secret does not open with the key given; not imported without its second factor");
                    return Ok(());
                };
                Some(secret)
            }
        };
        if found == Some(Imported::Taken) {
            self.skip(&u.id, format!("{email} belongs to another account here"));
            return Ok(());
        }
        self.users.insert(u.id.clone());
        if self.opts.dry_run {
            self.kind().imported += 1;
            return Ok(());
        }
        let argon2 = u
            .password_hash
            .as_deref()
            .filter(|h| h.starts_with("$argon2"));
        let password_hash = match argon2 {
            Some(h) => h.to_owned(),
            None => {
                if u.password_hash.is_some() {
                    self.problem(&u.id, "partial", "its password hash is not Argon2, so its password does not carry: it must be reset".into());
                }
                self.auth.hasher.hash(token::generate("").plaintext).await?
            }
        };
        let mfa_secret = match &totp_secret {
            Some(s) => Some(self.auth.seal_secret(&u.id, s)?),
            None => None,
        };
        let now = self.now;
        let user = User {
            email,
            password_hash,
            email_verified: u.email_verified.unwrap_or(false),
            status: if u.status.as_deref() == Some("blocked") {
                "disabled"
            } else {
                "active"
            }
            .into(),
            is_admin: false,
            metadata: u
                .metadata
                .filter(|m| m.is_object())
                .unwrap_or_else(|| serde_json::json!({})),
            failed_logins: 0,
            failed_since: None,
            locked_until: u.locked_until.map(|t| t as i64).filter(|t| *t > now),
            mfa_enabled: mfa_secret.is_some(),
            mfa_secret,
            mfa_pending_secret: None,
            mfa_last_step: None,
            created_at: secs(u.created_at, now),
            updated_at: secs(u.updated_at, now),
            id: u.id,
        };
        let what = self.auth.store.import_user(&user).await?;
        if what == Imported::Taken {
            self.users.remove(&user.id);
        }
        self.count(
            &user.id,
            what,
            "its email address belongs to another account here",
        );
        Ok(())
    }

    async fn orgs(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("organizations", &v1::ORGS).await? else {
            return Ok(());
        };
        let mut all = Vec::new();
        let mut p = Pager::new(&v1::ORGS, total);
        while let Some(page) = self.next::<V1Org>(&mut p).await? {
            all.extend(page);
        }
        // Parents before children: passes until nothing more can go.
        let mut failed = HashSet::new();
        loop {
            let (ready, waiting): (Vec<V1Org>, Vec<V1Org>) = all.into_iter().partition(|o| {
                o.parent_org_id
                    .as_ref()
                    .is_none_or(|p| self.orgs.contains(p) || failed.contains(p))
            });
            if ready.is_empty() {
                for o in waiting {
                    self.skip(&o.id, "its parent organization is not in the source");
                }
                break;
            }
            for o in ready {
                let id = o.id.clone();
                if !self.org(o).await? {
                    failed.insert(id);
                }
            }
            all = waiting;
        }
        Ok(())
    }

    /// One organization; false if it was left out.
    async fn org(&mut self, o: V1Org) -> Result<bool, AuthError> {
        if let Some(parent) = o.parent_org_id.as_ref().filter(|p| !self.orgs.contains(*p)) {
            self.skip(&o.id, format!("its parent {parent} was not imported"));
            return Ok(false);
        }
        let (name, slug) = match (check_name(&o.name), check_slug(&o.slug.to_lowercase())) {
            (Ok(n), Ok(s)) => (n, s),
            (Err(e), _) | (_, Err(e)) => {
                self.skip(&o.id, e.to_string());
                return Ok(false);
            }
        };
        let settings = o
            .settings
            .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()));
        let org = Organization {
            id: o.id,
            name,
            slug,
            parent_id: o.parent_org_id,
            metadata: settings.map_or_else(
                || serde_json::json!({}),
                |s| serde_json::json!({"settings": s}),
            ),
            created_by: None,
            created_at: secs(o.created_at, self.now),
            updated_at: secs(o.updated_at, self.now),
        };
        let what = if self.opts.dry_run {
            match self.auth.store.org(&org.id).await? {
                Some(_) => Imported::Present,
                None => Imported::New,
            }
        } else {
            self.auth.store.import_org(&org).await?
        };
        self.count(
            &org.id,
            what,
            "its slug belongs to another organization here",
        );
        if what == Imported::Taken {
            return Ok(false);
        }
        self.orgs.insert(org.id);
        Ok(true)
    }

    async fn roles(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("roles", &v1::ROLES).await? else {
            return Ok(());
        };
        let mut all = Vec::new();
        let mut p = Pager::new(&v1::ROLES, total);
        while let Some(page) = self.next::<V1Role>(&mut p).await? {
            all.extend(page);
        }
        for r in &all {
            self.role_names
                .insert(r.id.clone(), (r.tenant_id.clone(), r.name.clone()));
        }
        // The built-in roles every tenant has are Truxe's built-ins too.
        all.retain(|r| !(r.is_system.unwrap_or(false) || BUILT_IN.contains(&r.name.as_str())));
        self.kind().found = all.len() as u64;
        // Inherited roles before the roles inheriting them.
        loop {
            let (ready, waiting): (Vec<V1Role>, Vec<V1Role>) = all.into_iter().partition(|r| {
                r.inherits_from.iter().flatten().all(|id| {
                    self.role_names.get(id).is_none_or(|(org, name)| {
                        BUILT_IN.contains(&name.as_str())
                            || self
                                .roles
                                .get(org)
                                .is_some_and(|rs| rs.iter().any(|d| &d.name == name))
                    })
                })
            });
            if ready.is_empty() {
                for r in waiting {
                    self.skip(&r.id, "a role it inherits was not imported");
                }
                break;
            }
            for r in ready {
                self.role(r).await?;
            }
            all = waiting;
        }
        Ok(())
    }

    async fn role(&mut self, r: V1Role) -> Result<(), AuthError> {
        if !self.orgs.contains(&r.tenant_id) {
            self.skip(&r.id, "its organization was not imported");
            return Ok(());
        }
        let permissions: Option<Vec<String>> =
            r.permissions.and_then(|p| serde_json::from_value(p).ok());
        let Some(permissions) = permissions else {
            self.skip(
                &r.id,
                "its permissions are not a list of `resource:action` names",
            );
            return Ok(());
        };
        let inherits = r
            .inherits_from
            .iter()
            .flatten()
            .filter_map(|id| self.role_names.get(id).map(|(_, n)| n.clone()))
            .collect();
        let def = RoleDef {
            name: r.name,
            description: r.description.unwrap_or_default(),
            permissions,
            inherits,
        };
        if !self.roles.contains_key(&r.tenant_id) {
            let here = self.auth.store.custom_roles(&r.tenant_id).await?;
            self.roles.insert(r.tenant_id.clone(), here);
        }
        let here = self.roles.entry(r.tenant_id.clone()).or_default();
        if here.iter().any(|d| d.name == def.name) {
            self.kind().present += 1;
            return Ok(());
        }
        let set = super::policy::RoleSet::new(here.iter().cloned());
        if let Err(e) = set.validate(&def) {
            self.skip(&r.id, e.to_string());
            return Ok(());
        }
        if !self.opts.dry_run {
            self.auth
                .store
                .put_role(&r.tenant_id, &def, self.now)
                .await?;
        }
        self.roles.entry(r.tenant_id).or_default().push(def);
        self.kind().imported += 1;
        Ok(())
    }

    async fn memberships(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("memberships", &v1::MEMBERSHIPS).await? else {
            return Ok(());
        };
        let mut p = Pager::new(&v1::MEMBERSHIPS, total);
        while let Some(page) = self.next::<V1Membership>(&mut p).await? {
            for m in page {
                self.membership(m).await?;
            }
        }
        Ok(())
    }

    async fn membership(&mut self, m: V1Membership) -> Result<(), AuthError> {
        let id = format!("{}/{}", m.org_id, m.user_id);
        let custom = |run: &Self| {
            run.roles
                .get(&m.org_id)
                .is_some_and(|rs| rs.iter().any(|d| d.name == m.role))
        };
        let why = if m.joined_at.is_none() {
            Some("a pending invitation, never accepted".to_owned())
        } else if !self.users.contains(&m.user_id) {
            Some("its user was not imported".to_owned())
        } else if !self.orgs.contains(&m.org_id) {
            Some("its organization was not imported".to_owned())
        } else if !BUILT_IN.contains(&m.role.as_str()) && !custom(self) {
            Some(format!("its role `{}` is not a role here", m.role))
        } else {
            None
        };
        if let Some(why) = why {
            self.skip(&id, why);
            return Ok(());
        }
        let key = (m.org_id.clone(), m.user_id.clone());
        let here = self.auth.store.membership(&m.org_id, &m.user_id).await?;
        if let Some(h) = here {
            self.members.insert(key, h.role);
            self.kind().present += 1;
            return Ok(());
        }
        let joined = secs(m.joined_at, self.now);
        let member = Membership {
            org_id: m.org_id,
            user_id: m.user_id,
            role: m.role.clone(),
            created_at: joined,
            updated_at: secs(m.updated_at, joined),
        };
        let what = if self.opts.dry_run {
            Imported::New
        } else {
            self.auth.store.import_membership(&member).await?
        };
        self.members.insert(key, m.role);
        self.count(&id, what, "");
        Ok(())
    }

    async fn user_roles(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("role assignments", &v1::USER_ROLES).await? else {
            return Ok(());
        };
        let mut p = Pager::new(&v1::USER_ROLES, total);
        while let Some(page) = self.next::<V1UserRole>(&mut p).await? {
            for a in page {
                self.user_role(a).await?;
            }
        }
        Ok(())
    }

    /// A role held in a tenant becomes the membership's role when the
    /// membership holds the plain `member` role; Truxe keeps one role per
    /// membership, so any other is reported, not merged.
    async fn user_role(&mut self, a: V1UserRole) -> Result<(), AuthError> {
        let id = format!("{}/{}/{}", a.tenant_id, a.user_id, a.role_id);
        let Some((_, name)) = self.role_names.get(&a.role_id).cloned() else {
            self.skip(&id, "its role is not in the source");
            return Ok(());
        };
        let key = (a.tenant_id.clone(), a.user_id.clone());
        let known = BUILT_IN.contains(&name.as_str())
            || self
                .roles
                .get(&a.tenant_id)
                .is_some_and(|rs| rs.iter().any(|d| d.name == name));
        let why = match self.members.get(&key) {
            _ if a.expires_at.is_some_and(|t| (t as i64) <= self.now) => Some("expired".to_owned()),
            _ if !known => Some(format!("the role `{name}` was not imported")),
            None => Some("its user is not a member of the organization here".to_owned()),
            Some(role) if *role == name => {
                self.kind().present += 1;
                return Ok(());
            }
            Some(role) if role != MEMBER => Some(format!(
                "the member holds `{role}` already; Truxe keeps one role per membership"
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            self.skip(&id, why);
            return Ok(());
        }
        if !self.opts.dry_run {
            self.auth
                .store
                .set_member_role(&a.tenant_id, &a.user_id, &name, self.now)
                .await?;
        }
        self.members.insert(key, name);
        self.kind().imported += 1;
        Ok(())
    }

    async fn identities(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("linked accounts", &v1::IDENTITIES).await? else {
            return Ok(());
        };
        let mut p = Pager::new(&v1::IDENTITIES, total);
        while let Some(page) = self.next::<V1Identity>(&mut p).await? {
            for i in page {
                self.identity(i).await?;
            }
        }
        Ok(())
    }

    async fn identity(&mut self, i: V1Identity) -> Result<(), AuthError> {
        if !self.users.contains(&i.user_id) {
            self.skip(&i.id, "its user was not imported");
            return Ok(());
        }
        let here = self.auth.store.identities(&i.user_id).await?;
        if here.iter().any(|h| h.id == i.id) {
            self.kind().present += 1;
            return Ok(());
        }
        if self.opts.dry_run {
            self.kind().imported += 1;
            return Ok(());
        }
        // The provider's tokens do not carry (the original sealed them
        // under another key); the next sign-in brings fresh ones.
        let none = ProviderTokens {
            access_token: String::new(),
            refresh_token: None,
            id_token: None,
            expires_at: None,
            scope: None,
        };
        let created = secs(i.created_at, self.now);
        let identity = OAuthIdentity {
            tokens_sealed: self.auth.seal_tokens(&i.id, &none)?,
            id: i.id,
            user_id: i.user_id,
            provider: i.provider.to_lowercase(),
            subject: i.provider_account_id,
            email: i.provider_email.unwrap_or_default().to_lowercase(),
            created_at: created,
            updated_at: secs(i.updated_at, created),
            last_login_at: secs(i.updated_at, created),
        };
        let what = match self.auth.store.create_identity(&identity).await {
            Ok(()) => Imported::New,
            Err(RepoError::Conflict) => Imported::Taken,
            Err(e) => return Err(e.into()),
        };
        self.count(
            &identity.id,
            what,
            "that provider account is linked to another user here",
        );
        Ok(())
    }

    async fn endpoints(&mut self) -> Result<(), AuthError> {
        let Some(total) = self.begin("webhook endpoints", &v1::ENDPOINTS).await? else {
            return Ok(());
        };
        let mut p = Pager::new(&v1::ENDPOINTS, total);
        while let Some(page) = self.next::<V1Endpoint>(&mut p).await? {
            for e in page {
                self.endpoint(e).await?;
            }
        }
        Ok(())
    }

    async fn endpoint(&mut self, e: V1Endpoint) -> Result<(), AuthError> {
        let Some(org_id) = e.org_id.clone().filter(|o| self.orgs.contains(o)) else {
            let why = match e.org_id {
                None => "it belongs to no organization; Truxe's endpoints belong to one",
                Some(_) => "its organization was not imported",
            };
            self.skip(&e.id, why);
            return Ok(());
        };
        if self.auth.store.endpoint(&e.id).await?.is_some() {
            self.kind().present += 1;
            return Ok(());
        }
        let checked = match check_events(&e.events) {
            Ok(events) => self.auth.checked_url(&e.url).await.map(|url| (events, url)),
            Err(_) if e.events.is_empty() => {
                Err(AuthError::Invalid("it subscribes to no events".into()))
            }
            Err(err) => Err(err),
        };
        let (events, url) = match checked {
            Ok(ok) => ok,
            Err(err) => {
                self.skip(&e.id, err.to_string());
                return Ok(());
            }
        };
        if !self.opts.dry_run {
            let created = secs(e.created_at, self.now);
            // The same secret, so receivers keep verifying signatures.
            let endpoint = WebhookEndpoint {
                secret_sealed: self
                    .auth
                    .seal_secret(&format!("webhook:{}", e.id), e.secret.as_bytes())?,
                id: e.id,
                org_id,
                url,
                description: e.name.unwrap_or_default(),
                events,
                previous_secret_sealed: None,
                previous_secret_until: None,
                enabled: e.is_active.unwrap_or(true),
                created_by: e.created_by,
                created_at: created,
                updated_at: secs(e.updated_at, created),
            };
            self.auth.store.create_endpoint(&endpoint).await?;
        }
        self.kind().imported += 1;
        Ok(())
    }
}
