//! The admin console: server-rendered pages over the admin service, for
//! system administrators signed in with two factors within the last
//! hours (`service::console`). Users (search, block, unlock, sign out,
//! delete, sessions), organizations (members, roles, webhooks and their
//! deliveries, retried from here), applications (OAuth clients), signing
//! keys and the audit log. Every request is audited as `admin_console` with its route,
//! status and administrator, as the admin API audits its own.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use secure::audit::Outcome;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::extract::Client;
use super::oidc::{
    brand, browser_for_page, browser_sign_in, csrf_token, failure, genuine, not_genuine, redirect,
    sign_in_page, with_browser, Flow,
};
use super::pages::{self, alert, field, hidden, named_field, para};
use super::{now, App};
use crate::model::rfc3339;
use crate::repo::{AuditFilter, UserFilter};
use crate::service::console::ConsoleAccess;
use crate::service::oidc::ClientInput;
use crate::service::{
    escape as esc, AuthError, Caller, ClientInfo, EndpointInput, OrgInput, Principal, RoleInput,
};

/// The administrator a console response was for, for the audit layer.
#[derive(Clone)]
struct Actor(String);

const SECTIONS: &[(&str, &str)] = &[
    ("/admin/console", "Users"),
    ("/admin/console/organizations", "Organizations"),
    ("/admin/console/clients", "Applications"),
    ("/admin/console/keys", "Signing keys"),
    ("/admin/console/audit", "Audit log"),
];

/// An admitted request: the administrator and this browser's form token.
pub(crate) struct Admitted {
    p: Principal,
    csrf: String,
}

impl Admitted {
    /// A console page, marked as this administrator's for the audit.
    fn page(
        &self,
        app: &App,
        status: StatusCode,
        section: &str,
        title: &str,
        body: &str,
    ) -> Response {
        let links: String = SECTIONS
            .iter()
            .map(|(href, name)| {
                let current = if *href == section {
                    r#" aria-current="page""#
                } else {
                    ""
                };
                format!(r#"<a href="{href}"{current}>{name}</a>"#)
            })
            .collect();
        let nav = format!(
            r#"<nav aria-label="Console">{links}<a href="/account">Your account</a></nav><p class="muted">Signed in as {}.</p>"#,
            esc(&self.p.user.email)
        );
        let mut res = pages::console(brand(app), status, title, &nav, body);
        res.extensions_mut().insert(Actor(self.p.user.id.clone()));
        res
    }

    /// A form posting to `action` with one button (and `extra` fields).
    fn button(&self, action: &str, label: &str, extra: &str) -> String {
        format!(
            r#"<form method="post" action="{}">{}{extra}<button type="submit" class="secondary">{}</button></form>"#,
            esc(action),
            hidden("csrf", &self.csrf),
            esc(label)
        )
    }

    /// What went wrong with an action, on a page of its own.
    fn problem(&self, app: &App, e: AuthError, back: &str) -> Response {
        let status = match &e {
            AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuthError::NotFound(_) => StatusCode::NOT_FOUND,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::Conflict { .. } => StatusCode::CONFLICT,
            _ => return failure(app, e),
        };
        let body = format!(
            r#"{}<p><a href="{}">Back</a></p>"#,
            alert(&e.to_string()),
            esc(back)
        );
        self.page(app, status, back, "Not done", &body)
    }
}

/// The administrator of this request, or the page to show instead: the
/// console's sign-in (again, with two factors), or why not.
async fn admit(app: &App, headers: &HeaderMap) -> Result<Admitted, Response> {
    let (browser, fresh) = browser_for_page(headers);
    let t = now();
    let again = |problem: Option<&str>, email: Option<&str>| {
        let status = if problem.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let page = sign_in_page(app, &Flow::Console, &browser, status, problem, email);
        with_browser(app, page, &browser, fresh)
    };
    let Some(who) = browser_sign_in(app, headers, t).await else {
        return Err(again(None, None));
    };
    match app.auth.console_access(&who, t).await {
        Ok(ConsoleAccess::Granted(p)) if !fresh => Ok(Admitted {
            p: *p,
            csrf: csrf_token(app, &browser),
        }),
        // Signed in, but this browser has no form anchor yet: sign in
        // again here, which sets one.
        Ok(ConsoleAccess::Granted(_)) => Err(again(None, Some(&who.user.email))),
        Ok(ConsoleAccess::NotAdmin) => Err(pages::error(
            brand(app),
            StatusCode::FORBIDDEN,
            "The console is for system administrators.",
        )),
        Ok(ConsoleAccess::NeedsSecondFactor { has_factor: true }) => Err(again(
            Some("The console needs a sign-in with two-step verification: sign in again."),
            Some(&who.user.email),
        )),
        Ok(ConsoleAccess::NeedsSecondFactor { has_factor: false }) => {
            let body = format!(
                "{}{}",
                alert("The console needs two-step verification, and your account has none yet."),
                para("Set up an authenticator app (POST /auth/mfa/setup) or add a passkey on your account page, then sign in here again.")
            ) + r#"<p><a href="/account">Your account</a></p>"#;
            Err(pages::page(
                brand(app),
                StatusCode::FORBIDDEN,
                "Two-step verification needed",
                &body,
                None,
            ))
        }
        Ok(ConsoleAccess::Stale) => Err(again(
            Some("Your console sign-in is older than eight hours: sign in again."),
            Some(&who.user.email),
        )),
        Err(e) => Err(failure(app, e)),
    }
}

/// A console page's administrator, admitted as [`admit`] does; the
/// rejection is the page to show instead.
impl FromRequestParts<App> for Admitted {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        admit(app, &parts.headers).await
    }
}

/// A console form: it carries the browser's CSRF token.
trait ConsoleInput: DeserializeOwned + Send {
    fn csrf(&self) -> Option<&str>;
}

/// An admitted form post and its fields: the form's CSRF token must be
/// this browser's, then the administrator admitted as [`admit`] does.
pub(crate) struct AdminForm<F>(Admitted, F);

impl<F: ConsoleInput> FromRequest<App> for AdminForm<F> {
    type Rejection = Response;
    async fn from_request(req: Request, app: &App) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Form(f) = Form::<F>::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        genuine(app, &headers, f.csrf()).ok_or_else(|| not_genuine(app))?;
        Ok(AdminForm(admit(app, &headers).await?, f))
    }
}

/// Audits every console request: `admin_console` with method, route and
/// status, and the administrator when one was admitted.
pub(crate) async fn audit(
    State(app): State<App>,
    Client(ctx): Client,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let actor = res.extensions().get::<Actor>().cloned();
    let outcome = match (&actor, res.status().as_u16()) {
        (Some(_), s) if s < 400 => Outcome::Success,
        (Some(_), _) => Outcome::Failure,
        (None, _) => Outcome::Denied,
    };
    let mut e = app
        .auth
        .event("admin_console", outcome, &ctx, now())
        .details(
            serde_json::json!({"method": method, "route": route, "status": res.status().as_u16()}),
        );
    if let Some(Actor(a)) = actor {
        e = e.actor(&a);
    }
    app.auth.record(e).await;
    res
}

/// `?q=&status=` of the users page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct UserQuery {
    q: Option<String>,
    status: Option<String>,
}

/// `GET /admin/console`: users, searched by address and status.
pub(crate) async fn users(
    State(app): State<App>,
    a: Admitted,
    q: Result<Query<UserQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let query = q.q.clone().filter(|s| !s.trim().is_empty());
    let status = q
        .status
        .clone()
        .filter(|s| s == "active" || s == "disabled");
    let filter = UserFilter {
        query: query.clone(),
        status: status.clone(),
        after: None,
        limit: 100,
    };
    let list = match app.auth.admin_users(&a.p, filter).await {
        Ok(l) => l,
        Err(e) => return a.problem(&app, e, "/admin/console"),
    };
    let selected = |v: &str| {
        if status.as_deref() == Some(v) {
            " selected"
        } else {
            ""
        }
    };
    let form = format!(
        r#"<form class="filter" method="get" action="/admin/console" role="search"><div><label for="q">Email contains</label><input id="q" name="q" type="search" value="{q}"></div><div><label for="status">Status</label><select id="status" name="status"><option value="">any</option><option value="active"{a}>active</option><option value="disabled"{d}>disabled</option></select></div><button type="submit">Search</button></form>"#,
        q = esc(query.as_deref().unwrap_or("")),
        a = selected("active"),
        d = selected("disabled"),
    );
    let rows: String = list
        .iter()
        .map(|u| {
            let locked = if u.locked_until.is_some_and(|l| l > now()) { " (locked)" } else { "" };
            format!(
                r#"<tr><td><a href="/admin/console/users/{id}">{email}</a></td><td>{status}{locked}</td><td>{mfa}</td><td>{admin}</td><td>{created}</td></tr>"#,
                id = esc(&u.id),
                email = esc(&u.email),
                status = esc(&u.status),
                mfa = if u.mfa_enabled { "on" } else { "off" },
                admin = if u.is_admin { "yes" } else { "" },
                created = rfc3339(u.created_at),
            )
        })
        .collect();
    let body = format!(
        r#"{form}<table><caption class="muted">{n} users{more}</caption><thead><tr><th scope="col">Email</th><th scope="col">Status</th><th scope="col">Two-step</th><th scope="col">Admin</th><th scope="col">Created</th></tr></thead><tbody>{rows}</tbody></table>"#,
        n = list.len(),
        more = if list.len() == 100 {
            " (the first 100; narrow the search)"
        } else {
            ""
        },
    );
    a.page(&app, StatusCode::OK, "/admin/console", "Users", &body)
}

/// `GET /admin/console/users/{id}`: one user, their sessions,
/// organizations and linked accounts, with what can be done.
pub(crate) async fn user(State(app): State<App>, a: Admitted, Path(id): Path<String>) -> Response {
    let d = match app.auth.admin_user(&a.p, &id, now()).await {
        Ok(d) => d,
        Err(e) => return a.problem(&app, e, "/admin/console"),
    };
    let u = &d.user;
    let here = format!("/admin/console/users/{}", u.id);
    let act = |what: &str, label: &str| a.button(&format!("{here}/{what}"), label, "");
    let locked = u.locked_until.filter(|l| *l > now());
    let mut actions = String::new();
    actions.push_str(&if u.status == "disabled" {
        act("unblock", "Unblock")
    } else {
        act("block", "Block (ends every session)")
    });
    if locked.is_some() {
        actions.push_str(&act("unlock", "Unlock"));
    }
    actions.push_str(&act("logout", "Sign out everywhere"));
    let delete = format!(
        r#"<form method="post" action="{here}/delete">{csrf}<label><input type="checkbox" name="confirm" value="yes" required> Delete {email} and everything of theirs, for good</label><button type="submit" class="secondary">Delete the account</button></form>"#,
        here = esc(&here),
        csrf = hidden("csrf", &a.csrf),
        email = esc(&u.email),
    );
    let sessions: String = d
        .sessions
        .iter()
        .map(|s| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(s
                    .client_id
                    .as_deref()
                    .unwrap_or_else(|| s.user_agent.as_deref().unwrap_or("a browser or app"))),
                esc(s.ip.as_deref().unwrap_or("")),
                rfc3339(s.created_at),
                rfc3339(s.last_used_at),
                a.button(
                    &format!("/admin/console/sessions/{}/end", s.id),
                    "End",
                    &hidden("back", &here)
                ),
            )
        })
        .collect();
    let orgs: String = d
        .organizations
        .iter()
        .map(|(o, role)| {
            format!(
                "<li>{} <span class=\"muted\">({})</span></li>",
                esc(&o.name),
                esc(role)
            )
        })
        .collect();
    let linked: String = d
        .identities
        .iter()
        .map(|i| {
            format!(
                "<li>{} <span class=\"muted\">{}</span></li>",
                esc(&i.provider),
                esc(&i.email)
            )
        })
        .collect();
    let facts = format!(
        "<table><tbody><tr><th scope=\"row\">Id</th><td><code>{id}</code></td></tr><tr><th scope=\"row\">Status</th><td>{status}{locked}</td></tr><tr><th scope=\"row\">Email verified</th><td>{verified}</td></tr><tr><th scope=\"row\">Two-step</th><td>{mfa}</td></tr><tr><th scope=\"row\">Administrator</th><td>{admin}</td></tr><tr><th scope=\"row\">Created</th><td>{created}</td></tr></tbody></table>",
        id = esc(&u.id),
        status = esc(&u.status),
        locked = locked.map(|l| format!(" · locked until {}", rfc3339(l))).unwrap_or_default(),
        verified = if u.email_verified { "yes" } else { "no" },
        mfa = if u.mfa_enabled { "on" } else { "off" },
        admin = if u.is_admin { "yes" } else { "no" },
        created = rfc3339(u.created_at),
    );
    let none = || para("None.");
    let body = format!(
        r#"{facts}<div class="actions">{actions}</div><h2>Sessions</h2>{sessions}<h2>Organizations</h2>{orgs}<h2>Linked accounts</h2>{linked}<h2>Delete</h2>{delete}"#,
        sessions = if sessions.is_empty() {
            none()
        } else {
            format!(
                r#"<table><thead><tr><th scope="col">Client</th><th scope="col">Address</th><th scope="col">Since</th><th scope="col">Last used</th><th scope="col"></th></tr></thead><tbody>{sessions}</tbody></table>"#
            )
        },
        orgs = if orgs.is_empty() {
            none()
        } else {
            format!("<ul>{orgs}</ul>")
        },
        linked = if linked.is_empty() {
            none()
        } else {
            format!("<ul>{linked}</ul>")
        },
    );
    a.page(&app, StatusCode::OK, "/admin/console", &u.email, &body)
}

/// A console form: its token and what it carries.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsoleForm {
    csrf: Option<String>,
    confirm: Option<String>,
    back: Option<String>,
    name: Option<String>,
    redirect_uris: Option<String>,
    public: Option<String>,
}

impl ConsoleInput for ConsoleForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /admin/console/users/{id}/{action}`: block, unblock, unlock,
/// logout (every session) or delete (with `confirm=yes`).
pub(crate) async fn user_action(
    State(app): State<App>,
    Client(c): Client,
    Path((id, action)): Path<(String, String)>,
    AdminForm(a, f): AdminForm<ConsoleForm>,
) -> Response {
    let t = now();
    let here = format!("/admin/console/users/{id}");
    let auth = &app.auth;
    let done = match action.as_str() {
        "block" => auth
            .admin_set_blocked(&a.p, &id, true, &c, t)
            .await
            .map(drop),
        "unblock" => auth
            .admin_set_blocked(&a.p, &id, false, &c, t)
            .await
            .map(drop),
        "unlock" => auth.unlock(&a.p, &id, &c, t).await,
        "logout" => auth.admin_logout(&a.p, &id, &c, t).await.map(drop),
        "delete" if f.confirm.as_deref() == Some("yes") => {
            return match auth.admin_delete_user(&a.p, &id, &c, t).await {
                Ok(()) => a.mark(redirect("/admin/console", StatusCode::SEE_OTHER)),
                Err(e) => a.problem(&app, e, &here),
            };
        }
        "delete" => Err(AuthError::Invalid(
            "tick the box to confirm the deletion".into(),
        )),
        _ => Err(AuthError::NotFound("no such action".into())),
    };
    match done {
        Ok(()) => a.mark(redirect(&here, StatusCode::SEE_OTHER)),
        Err(e) => a.problem(&app, e, &here),
    }
}

impl Admitted {
    /// Marks a response (a redirect after an action) as this administrator's.
    fn mark(&self, mut res: Response) -> Response {
        res.extensions_mut().insert(Actor(self.p.user.id.clone()));
        res
    }
}

/// A page to go back to: a console path, else the users page.
fn back_to(back: Option<&str>) -> &str {
    back.filter(|b| b.starts_with("/admin/console") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or("/admin/console")
}

/// `POST /admin/console/sessions/{id}/end`.
pub(crate) async fn end_session(
    State(app): State<App>,
    Client(c): Client,
    Path(id): Path<String>,
    AdminForm(a, f): AdminForm<ConsoleForm>,
) -> Response {
    let back = back_to(f.back.as_deref());
    match app.auth.admin_end_session(&a.p, &id, &c, now()).await {
        Ok(()) => a.mark(redirect(back, StatusCode::SEE_OTHER)),
        Err(e) => a.problem(&app, e, back),
    }
}

/// `?q=` of the organizations page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct OrgQuery {
    q: Option<String>,
}

/// `GET /admin/console/organizations`: organizations by name or slug.
pub(crate) async fn organizations(
    State(app): State<App>,
    a: Admitted,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let query = q.q.filter(|s| !s.trim().is_empty());
    let here = "/admin/console/organizations";
    let list = match app.auth.admin_orgs(&a.p, query.as_deref()).await {
        Ok(l) => l,
        Err(e) => return a.problem(&app, e, here),
    };
    let rows: String = list
        .iter()
        .map(|o| {
            format!(
                r#"<tr><td><a href="/admin/console/organizations/{id}">{name}</a></td><td><code>{slug}</code></td><td>{parent}</td><td>{created}</td></tr>"#,
                id = esc(&o.id),
                name = esc(&o.name),
                slug = esc(&o.slug),
                parent = o.parent_id.as_deref().map(esc).unwrap_or_default(),
                created = rfc3339(o.created_at),
            )
        })
        .collect();
    let body = format!(
        r#"<form class="filter" method="get" action="{here}" role="search"><div><label for="q">Name or slug contains</label><input id="q" name="q" type="search" value="{q}"></div><button type="submit">Search</button></form><table><caption class="muted">{n} organizations</caption><thead><tr><th scope="col">Name</th><th scope="col">Slug</th><th scope="col">Parent</th><th scope="col">Created</th></tr></thead><tbody>{rows}</tbody></table>"#,
        q = esc(query.as_deref().unwrap_or("")),
        n = list.len(),
    );
    a.page(&app, StatusCode::OK, here, "Organizations", &body)
}

/// `GET /admin/console/organizations/{id}`: the organization, its
/// members, roles, webhooks and newest deliveries, each with what can be
/// changed.
pub(crate) async fn organization(
    State(app): State<App>,
    a: Admitted,
    Path(id): Path<String>,
) -> Response {
    organization_page(&app, &a, &id, None).await
}

async fn organization_page(app: &App, a: &Admitted, id: &str, shown: Option<String>) -> Response {
    let section = "/admin/console/organizations";
    let o = match app.auth.admin_org(&a.p, id).await {
        Ok(o) => o,
        Err(e) => return a.problem(app, e, section),
    };
    let here = format!("{section}/{}", o.org.id);
    let act = |what: &str| format!("{here}/{what}");
    let none = || para("None.");
    let table = |head: &str, rows: String| {
        if rows.is_empty() {
            none()
        } else {
            format!("<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        }
    };
    let role_names: Vec<&str> = crate::service::policy::BUILTIN
        .iter()
        .copied()
        .chain(o.roles.iter().map(|r| r.name.as_str()))
        .collect();
    let members: String = o
        .members
        .iter()
        .map(|(m, email)| {
            let options: String = role_names
                .iter()
                .map(|r| {
                    let sel = if *r == m.role { " selected" } else { "" };
                    format!(r#"<option value="{r}"{sel}>{r}</option>"#, r = esc(r))
                })
                .collect();
            let who = hidden("user_id", &m.user_id);
            format!(
                r#"<tr><td><a href="/admin/console/users/{id}">{email}</a></td><td><form method="post" action="{change}">{csrf}{who}<label class="muted" for="role-{id}">Role</label><select id="role-{id}" name="role">{options}</select><button type="submit" class="secondary">Change</button></form></td><td>{since}</td><td>{remove}</td></tr>"#,
                id = esc(&m.user_id),
                email = esc(email),
                change = esc(&act("member-role")),
                csrf = hidden("csrf", &a.csrf),
                since = rfc3339(m.created_at),
                remove = a.button(&act("member-remove"), "Remove", &who),
            )
        })
        .collect();
    let roles: String = o
        .roles
        .iter()
        .map(|r| {
            format!(
                r#"<tr><td>{name}</td><td><form method="post" action="{save}">{csrf}{existing}<label class="muted" for="perm-{name}">Permissions</label><input type="text" id="perm-{name}" name="permissions" value="{perms}"><label class="muted" for="inh-{name}">Inherits</label><input type="text" id="inh-{name}" name="inherits" value="{inherits}"><button type="submit" class="secondary">Save</button></form></td><td>{delete}</td></tr>"#,
                name = esc(&r.name),
                save = esc(&act("role-save")),
                csrf = hidden("csrf", &a.csrf),
                existing = hidden("existing", &r.name),
                perms = esc(&r.permissions.join(" ")),
                inherits = esc(&r.inherits.join(" ")),
                delete = a.button(&act("role-delete"), "Delete", &hidden("name", &r.name)),
            )
        })
        .collect();
    let new_role = format!(
        r#"<form method="post" action="{save}">{csrf}{name}{perms}<label for="inherits">Inherits (built-in or own roles, space-separated)</label><input type="text" id="inherits" name="inherits"><button type="submit" class="secondary">Create the role</button></form>"#,
        save = esc(&act("role-save")),
        csrf = hidden("csrf", &a.csrf),
        name = field("name", "New role's name", "text", "off", ""),
        perms = field(
            "permissions",
            "Permissions (space-separated, e.g. members:read webhooks:*)",
            "text",
            "off",
            ""
        ),
    );
    let endpoints: String = o
        .endpoints
        .iter()
        .map(|e| {
            let which = hidden("endpoint_id", &e.id);
            let toggle = if e.enabled {
                a.button(&act("endpoint-disable"), "Turn off", &which)
            } else {
                a.button(&act("endpoint-enable"), "Turn on", &which)
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{toggle}{}</td></tr>",
                esc(&e.url),
                esc(&e.events.join(", ")),
                if e.enabled { "on" } else { "off" },
                rfc3339(e.created_at),
                a.button(&act("endpoint-delete"), "Delete", &which),
            )
        })
        .collect();
    let new_endpoint = format!(
        r#"<form method="post" action="{add}">{csrf}{url}{events}<button type="submit" class="secondary">Add the endpoint</button></form>"#,
        add = esc(&act("endpoint-add")),
        csrf = hidden("csrf", &a.csrf),
        url = field("url", "Destination URL", "url", "off", ""),
        events = field(
            "events",
            "Events (space-separated, * for all)",
            "text",
            "off",
            r#"value="*""#
        ),
    );
    let deliveries: String = o
        .deliveries
        .iter()
        .map(|d| {
            let retry = if d.status == "dead" || d.status == "retrying" {
                a.button(&format!("/admin/console/deliveries/{}/retry", d.id), "Retry", &hidden("back", &here))
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{retry}</td></tr>",
                rfc3339(d.created_at),
                esc(&d.event),
                esc(&d.status),
                d.total_attempts,
                d.last_status_code.map(|c| c.to_string()).unwrap_or_default(),
                esc(d.last_error.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let rename = format!(
        r#"<form method="post" action="{update}">{csrf}{name}{slug}<button type="submit" class="secondary">Save</button></form>"#,
        update = esc(&act("update")),
        csrf = hidden("csrf", &a.csrf),
        name = named_field(
            "org-name",
            "name",
            "Name",
            "text",
            "off",
            &format!(r#"value="{}""#, esc(&o.org.name))
        ),
        slug = named_field(
            "org-slug",
            "slug",
            "Slug",
            "text",
            "off",
            &format!(r#"value="{}""#, esc(&o.org.slug))
        ),
    );
    let delete = format!(
        r#"<form method="post" action="{delete}">{csrf}<label><input type="checkbox" name="confirm" value="yes" required> Delete {name} with its memberships, roles and webhooks, for good</label><button type="submit" class="secondary">Delete the organization</button></form>"#,
        delete = esc(&act("delete")),
        csrf = hidden("csrf", &a.csrf),
        name = esc(&o.org.name),
    );
    let body = format!(
        "{shown}<p class=\"muted\"><code>{id}</code> · slug <code>{slug}</code> · created {created}</p>{rename}<h2>Members</h2>{members}<h2>Roles of its own</h2>{roles}<p class=\"muted\">Besides the built-in owner, admin, member and viewer.</p>{new_role}<h2>Webhooks</h2>{endpoints}{new_endpoint}<h2>Newest deliveries</h2>{deliveries}<h2>Delete</h2>{delete}",
        shown = shown.unwrap_or_default(),
        id = esc(&o.org.id),
        slug = esc(&o.org.slug),
        created = rfc3339(o.org.created_at),
        members = table(r#"<th scope="col">Member</th><th scope="col">Role</th><th scope="col">Since</th><th scope="col"></th>"#, members),
        roles = table(r#"<th scope="col">Role</th><th scope="col">Permissions and inherited roles</th><th scope="col"></th>"#, roles),
        endpoints = table(r#"<th scope="col">URL</th><th scope="col">Events</th><th scope="col">Enabled</th><th scope="col">Created</th><th scope="col"></th>"#, endpoints),
        deliveries = table(r#"<th scope="col">When</th><th scope="col">Event</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Last answer</th><th scope="col">Last error</th><th scope="col"></th>"#, deliveries),
    );
    a.page(app, StatusCode::OK, section, &o.org.name, &body)
}

/// A form of the organization page.
#[derive(Debug, Deserialize)]
pub(crate) struct OrgForm {
    csrf: Option<String>,
    confirm: Option<String>,
    name: Option<String>,
    slug: Option<String>,
    user_id: Option<String>,
    role: Option<String>,
    /// The role a role form edits (absent: a new role).
    existing: Option<String>,
    permissions: Option<String>,
    inherits: Option<String>,
    endpoint_id: Option<String>,
    url: Option<String>,
    events: Option<String>,
}

impl ConsoleInput for OrgForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// Space- or comma-separated words.
fn words(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split([' ', ',', '\n', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /admin/console/organizations/{id}/{action}`: changes the
/// organization through the services its members' API uses (the same
/// checks, audit events and webhooks), as a system administrator.
pub(crate) async fn organization_action(
    State(app): State<App>,
    Client(c): Client,
    Path((id, action)): Path<(String, String)>,
    AdminForm(a, f): AdminForm<OrgForm>,
) -> Response {
    let t = now();
    let here = format!("/admin/console/organizations/{id}");
    let (auth, caller) = (&app.auth, &Caller::Admin(a.p.clone()));
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let done = match action.as_str() {
        "update" => {
            let input = OrgInput {
                name: f.name.clone(),
                slug: f.slug.clone(),
                ..OrgInput::default()
            };
            auth.update_org(caller, &id, input, &c, t).await.map(drop)
        }
        "delete" if f.confirm.as_deref() == Some("yes") => {
            return match auth.delete_org(caller, &id, &c, t).await {
                Ok(()) => a.mark(redirect(
                    "/admin/console/organizations",
                    StatusCode::SEE_OTHER,
                )),
                Err(e) => a.problem(&app, e, &here),
            };
        }
        "delete" => Err(AuthError::Invalid(
            "tick the box to confirm the deletion".into(),
        )),
        "member-role" => auth
            .set_member_role(caller, &id, &field(&f.user_id), &field(&f.role), &c, t)
            .await
            .map(drop),
        "member-remove" => {
            auth.remove_member(caller, &id, &field(&f.user_id), &c, t)
                .await
        }
        "role-save" => {
            let input = RoleInput {
                name: f.existing.clone().or_else(|| f.name.clone()),
                description: None,
                permissions: words(f.permissions.as_deref()),
                inherits: words(f.inherits.as_deref()),
            };
            auth.put_role(caller, &id, input, f.existing.as_deref(), &c, t)
                .await
                .map(drop)
        }
        "role-delete" => auth.delete_role(caller, &id, &field(&f.name), &c, t).await,
        "endpoint-add" => {
            let input = EndpointInput {
                org_id: Some(id.clone()),
                url: f.url.clone(),
                events: Some(words(f.events.as_deref())),
                ..EndpointInput::default()
            };
            return match auth.create_endpoint(caller, input, &c, t).await {
                Ok((ep, secret)) => {
                    let shown = secret_shown(&ep.url, secret.expose());
                    a.mark(organization_page(&app, &a, &id, Some(shown)).await)
                }
                Err(e) => a.problem(&app, e, &here),
            };
        }
        "endpoint-enable" | "endpoint-disable" => {
            let input = EndpointInput {
                enabled: Some(action == "endpoint-enable"),
                ..EndpointInput::default()
            };
            auth.update_endpoint(caller, &field(&f.endpoint_id), input, &c, t)
                .await
                .map(drop)
        }
        "endpoint-delete" => {
            auth.delete_endpoint(caller, &field(&f.endpoint_id), &c, t)
                .await
        }
        _ => Err(AuthError::NotFound("no such action".into())),
    };
    match done {
        Ok(()) => a.mark(redirect(&here, StatusCode::SEE_OTHER)),
        Err(e) => a.problem(&app, e, &here),
    }
}

/// `POST /admin/console/deliveries/{id}/retry`.
pub(crate) async fn retry_delivery(
    State(app): State<App>,
    Client(c): Client,
    Path(id): Path<String>,
    AdminForm(a, f): AdminForm<ConsoleForm>,
) -> Response {
    let back = back_to(f.back.as_deref());
    match app.auth.admin_retry_delivery(&a.p, &id, &c, now()).await {
        Ok(_) => a.mark(redirect(back, StatusCode::SEE_OTHER)),
        Err(e) => a.problem(&app, e, back),
    }
}

/// `GET /admin/console/clients`: the applications that sign users in
/// through Truxe, and a form for a new one.
pub(crate) async fn clients(State(app): State<App>, a: Admitted, Client(c): Client) -> Response {
    clients_page(&app, &a, &c, None).await
}

async fn clients_page(app: &App, a: &Admitted, c: &ClientInfo, shown: Option<String>) -> Response {
    let list = match app.auth.list_clients(&a.p, None, c, now()).await {
        Ok(l) => l,
        Err(e) => return a.problem(app, e, "/admin/console/clients"),
    };
    let rows: String = list
        .iter()
        .map(|c| {
            let path = format!("/admin/console/clients/{}", c.id);
            let secret = if c.secret_hash.is_some() {
                a.button(&format!("{path}/secret"), "New secret", "")
            } else {
                String::new()
            };
            format!(
                "<tr><td>{name}</td><td><code>{id}</code></td><td>{kind}</td><td>{uris}</td><td>{created}</td><td>{secret}{delete}</td></tr>",
                name = esc(&c.name),
                id = esc(&c.id),
                kind = match c.auth_method() {
                    "none" => "public (PKCE)",
                    "private_key_jwt" => "signs with its keys",
                    _ => "confidential",
                },
                uris = c.redirect_uris.iter().map(|u| esc(u)).collect::<Vec<_>>().join("<br>"),
                created = rfc3339(c.created_at),
                delete = a.button(&format!("{path}/delete"), "Delete", r#"<input type="hidden" name="confirm" value="yes">"#),
            )
        })
        .collect();
    let create = format!(
        r#"<h2>New application</h2><form method="post" action="/admin/console/clients">{csrf}{name}<label for="redirect_uris">Redirect URIs, one per line (https, or http on loopback)</label><textarea id="redirect_uris" name="redirect_uris" rows="3" required></textarea><label><input type="checkbox" name="public" value="yes"> Public client (a browser or mobile app: no secret, PKCE)</label><button type="submit">Register</button></form>"#,
        csrf = hidden("csrf", &a.csrf),
        name = field(
            "name",
            "Name shown to users",
            "text",
            "off",
            r#"maxlength="100""#
        ),
    );
    let body = format!(
        r#"{shown}<table><thead><tr><th scope="col">Name</th><th scope="col">Client id</th><th scope="col">Type</th><th scope="col">Redirect URIs</th><th scope="col">Created</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table>{create}"#,
        shown = shown.unwrap_or_default(),
    );
    a.page(
        app,
        StatusCode::OK,
        "/admin/console/clients",
        "Applications",
        &body,
    )
}

/// A secret shown once: of a client, or of a webhook endpoint (`of`).
fn secret_shown(of: &str, secret: &str) -> String {
    format!(
        r#"<div class="error" role="alert"><p>The secret of <code>{}</code>, shown this once; store it now:</p><p><code>{}</code></p></div>"#,
        esc(of),
        esc(secret)
    )
}

/// `POST /admin/console/clients`: registers one; its secret shown once.
pub(crate) async fn create_client(
    State(app): State<App>,
    Client(c): Client,
    AdminForm(a, f): AdminForm<ConsoleForm>,
) -> Response {
    let uris: Vec<String> = f
        .redirect_uris
        .as_deref()
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let input = ClientInput {
        name: f.name.clone(),
        redirect_uris: Some(uris),
        post_logout_redirect_uris: None,
        grant_types: None,
        scopes: None,
        public: Some(f.public.as_deref() == Some("yes")),
        access_token_ttl: None,
        refresh_token_ttl: None,
        org_id: None,
        jwks: None,
    };
    match app.auth.create_client(&a.p, input, &c, now()).await {
        Ok((client, secret)) => {
            let shown = match secret {
                Some(s) => secret_shown(&client.id, s.expose()),
                None => para(&format!("Registered {} (public: no secret).", client.id)),
            };
            clients_page(&app, &a, &c, Some(shown)).await
        }
        Err(e) => a.problem(&app, e, "/admin/console/clients"),
    }
}

/// `POST /admin/console/clients/{id}/{action}`: `delete` or `secret` (a
/// new one, shown once; the old one stops working).
pub(crate) async fn client_action(
    State(app): State<App>,
    Client(c): Client,
    Path((id, action)): Path<(String, String)>,
    AdminForm(a, _): AdminForm<ConsoleForm>,
) -> Response {
    let back = "/admin/console/clients";
    match action.as_str() {
        "delete" => match app.auth.delete_client(&a.p, &id, &c, now()).await {
            Ok(()) => a.mark(redirect(back, StatusCode::SEE_OTHER)),
            Err(e) => a.problem(&app, e, back),
        },
        "secret" => match app
            .auth
            .regenerate_client_secret(&a.p, &id, &c, now())
            .await
        {
            Ok((client, secret)) => {
                clients_page(
                    &app,
                    &a,
                    &c,
                    Some(secret_shown(&client.id, secret.expose())),
                )
                .await
            }
            Err(e) => a.problem(&app, e, back),
        },
        _ => a.problem(&app, AuthError::NotFound("no such action".into()), back),
    }
}

/// `GET /admin/console/keys`: the token-signing keys.
pub(crate) async fn keys(State(app): State<App>, a: Admitted) -> Response {
    let list = match app.auth.signing_keys(&a.p) {
        Ok(l) => l,
        Err(e) => return a.problem(&app, e, "/admin/console/keys"),
    };
    let rows: String = list
        .iter()
        .map(|k| {
            let state = format!("{:?}", k.state).to_lowercase();
            let retire = if state == "retired" {
                String::new()
            } else {
                a.button(&format!("/admin/console/keys/{}/retire", k.kid), "Retire now", "")
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{retire}</td></tr>",
                esc(&k.kid),
                esc(&k.alg),
                esc(&state),
                rfc3339(k.created_at as i64),
                k.retiring_since.map(|s| rfc3339(s as i64)).unwrap_or_default(),
            )
        })
        .collect();
    let body = format!(
        r#"{intro}<table><thead><tr><th scope="col">Key id</th><th scope="col">Algorithm</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Retiring since</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table><div class="actions">{rotate}</div>"#,
        intro = para("Rotating starts signing with a new key; the old one stays published until the tokens it signed expire. Retiring a key refuses its tokens at once."),
        rotate = a.button("/admin/console/keys/rotate", "Rotate now", ""),
    );
    a.page(
        &app,
        StatusCode::OK,
        "/admin/console/keys",
        "Signing keys",
        &body,
    )
}

/// `POST /admin/console/keys/rotate`.
pub(crate) async fn rotate_key(
    State(app): State<App>,
    Client(c): Client,
    AdminForm(a, _): AdminForm<ConsoleForm>,
) -> Response {
    match app.auth.rotate_signing_key(&a.p, &c, now()).await {
        Ok(_) => a.mark(redirect("/admin/console/keys", StatusCode::SEE_OTHER)),
        Err(e) => a.problem(&app, e, "/admin/console/keys"),
    }
}

/// `POST /admin/console/keys/{kid}/retire`.
pub(crate) async fn retire_key(
    State(app): State<App>,
    Client(c): Client,
    Path(kid): Path<String>,
    AdminForm(a, _): AdminForm<ConsoleForm>,
) -> Response {
    match app.auth.retire_signing_key(&a.p, &kid, &c, now()).await {
        Ok(()) => a.mark(redirect("/admin/console/keys", StatusCode::SEE_OTHER)),
        Err(e) => a.problem(&app, e, "/admin/console/keys"),
    }
}

/// `?action=&actor=&outcome=` of the audit page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    outcome: Option<String>,
}

/// `GET /admin/console/audit`: the newest events, filtered.
pub(crate) async fn audit_log(
    State(app): State<App>,
    a: Admitted,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let some = |v: &Option<String>| {
        v.clone()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let filter = AuditFilter {
        action: some(&q.action),
        actor: some(&q.actor),
        outcome: some(&q.outcome)
            .filter(|o| ["success", "failure", "denied"].contains(&o.as_str())),
        before: None,
        limit: 200,
    };
    let form = format!(
        r#"<form class="filter" method="get" action="/admin/console/audit" role="search"><div><label for="action">Action</label><input id="action" name="action" type="text" value="{action}" placeholder="login"></div><div><label for="actor">Actor (user id)</label><input id="actor" name="actor" type="text" value="{actor}"></div><div><label for="outcome">Outcome</label><input id="outcome" name="outcome" type="text" value="{outcome}" placeholder="failure"></div><button type="submit">Filter</button></form>"#,
        action = esc(filter.action.as_deref().unwrap_or("")),
        actor = esc(filter.actor.as_deref().unwrap_or("")),
        outcome = esc(filter.outcome.as_deref().unwrap_or("")),
    );
    let events = match app.auth.audit_events(&a.p, filter).await {
        Ok(e) => e,
        Err(e) => return a.problem(&app, e, "/admin/console/audit"),
    };
    let rows: String = events
        .iter()
        .map(|(_, e)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                rfc3339(e.at_ms / 1000),
                esc(&e.action),
                e.outcome.as_str(),
                esc(e.actor.as_deref().unwrap_or("")),
                esc(e.target.as_deref().unwrap_or("")),
                esc(e.ip.as_deref().unwrap_or("")),
                esc(&e.details.to_string()),
            )
        })
        .collect();
    let body = format!(
        r#"{form}<table><caption class="muted">{n} newest events</caption><thead><tr><th scope="col">When</th><th scope="col">Action</th><th scope="col">Outcome</th><th scope="col">Actor</th><th scope="col">Target</th><th scope="col">Address</th><th scope="col">Details</th></tr></thead><tbody>{rows}</tbody></table>"#,
        n = events.len(),
    );
    a.page(
        &app,
        StatusCode::OK,
        "/admin/console/audit",
        "Audit log",
        &body,
    )
}
