//! Organization handlers: parse, make one service call, answer JSON. Every
//! permission decision is the service's (`AuthService::authorize`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, Client, Page, ValidJson, Who};
use super::routes::{ok, session_response, Mode};
use super::{now, ApiError, App};
use crate::model::{InvitationView, MemberView, OrgView};
use crate::service::{OrgInput, RoleInput};

type Reply = Result<Json<Value>, ApiError>;

fn created(data: Value) -> Response {
    (StatusCode::CREATED, ok(data)).into_response()
}

pub(crate) async fn create(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<OrgInput>,
) -> Result<Response, ApiError> {
    let org = app.auth.create_org(&p, b, &c, now()).await?;
    Ok(created(
        json!({"organization": OrgView::new(&org, Some(crate::service::policy::OWNER))}),
    ))
}

pub(crate) async fn list(State(app): State<App>, Auth(p): Auth, q: Page) -> Reply {
    let orgs = app.auth.my_orgs(&p, q.cursor.as_deref(), q.limit).await?;
    let next = q.next(&orgs, |(o, _)| o.id.clone());
    let views: Vec<_> = orgs
        .iter()
        .map(|(o, role)| OrgView::new(o, Some(role)))
        .collect();
    Ok(ok(json!({"organizations": views, "nextCursor": next})))
}

/// `GET /auth/organizations`: the caller's organizations, marking the one
/// the session acts in.
pub(crate) async fn mine(State(app): State<App>, Auth(p): Auth, q: Page) -> Reply {
    let orgs = app.auth.my_orgs(&p, q.cursor.as_deref(), q.limit).await?;
    let next = q.next(&orgs, |(o, _)| o.id.clone());
    let current = p.session.org_id.as_deref();
    let views: Vec<_> = orgs
        .iter()
        .map(|(o, role)| {
            let mut v = json!(OrgView::new(o, Some(role)));
            v["current"] = json!(current == Some(o.id.as_str()));
            v
        })
        .collect();
    Ok(ok(
        json!({"organizations": views, "currentOrgId": current, "nextCursor": next}),
    ))
}

pub(crate) async fn get(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let (org, role) = app.auth.get_org(&who, &id, &c, now()).await?;
    Ok(ok(json!({"organization": OrgView::new(&org, Some(&role))})))
}

pub(crate) async fn update(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<OrgInput>,
) -> Reply {
    let org = app.auth.update_org(&who, &id, b, &c, now()).await?;
    Ok(ok(json!({"organization": OrgView::new(&org, None)})))
}

/// The original Truxe's settings body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    settings: serde_json::Map<String, Value>,
}

/// `PUT /organizations/{id}/settings`: the original's answer
/// (`settings`, `updatedAt`) beside ours (`data.organization`).
pub(crate) async fn settings(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<SettingsBody>,
) -> Reply {
    let org = app
        .auth
        .update_org_settings(&who, &id, Value::Object(b.settings), &c, now())
        .await?;
    Ok(Json(json!({
        "success": true,
        "settings": org.metadata["settings"],
        "updatedAt": crate::model::rfc3339(org.updated_at),
        "data": {"organization": OrgView::new(&org, None)},
    })))
}

pub(crate) async fn delete(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    app.auth.delete_org(&who, &id, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

pub(crate) async fn hierarchy(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let h = app.auth.hierarchy(&who, &id, &c, now()).await?;
    let brief =
        |o: &crate::model::Organization| json!({"id": o.id, "name": o.name, "slug": o.slug});
    Ok(ok(json!({
        "organization": OrgView::new(&h.org, None),
        "parent": h.ancestors.first().map(brief),
        "ancestors": h.ancestors.iter().map(brief).collect::<Vec<_>>(),
        "children": h.children.iter().map(brief).collect::<Vec<_>>(),
    })))
}

pub(crate) async fn members(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    q: Page,
) -> Reply {
    let list = app
        .auth
        .members(&who, &id, q.cursor.as_deref(), q.limit, &c, now())
        .await?;
    let next = q.next(&list, |(m, _)| m.user_id.clone());
    let views: Vec<_> = list.iter().map(|(m, e)| MemberView::new(m, e)).collect();
    Ok(ok(json!({"members": views, "nextCursor": next})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    role: String,
}

pub(crate) async fn set_member(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path((id, user_id)): Path<(String, String)>,
    ValidJson(b): ValidJson<RoleBody>,
) -> Reply {
    let m = app
        .auth
        .set_member_role(&who, &id, &user_id, &b.role, &c, now())
        .await?;
    Ok(ok(json!({"member": {"userId": m.user_id, "role": m.role}})))
}

pub(crate) async fn remove_member(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path((id, user_id)): Path<(String, String)>,
) -> Reply {
    app.auth
        .remove_member(&who, &id, &user_id, &c, now())
        .await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteBody {
    email: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    crate::service::policy::MEMBER.to_owned()
}

pub(crate) async fn invite(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<InviteBody>,
) -> Result<Response, ApiError> {
    let t = now();
    let inv = app.auth.invite(&who, &id, &b.email, &b.role, &c, t).await?;
    Ok(created(json!({"invitation": InvitationView::new(&inv, t)})))
}

pub(crate) async fn invitations(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let t = now();
    let list = app.auth.invitations(&who, &id, &c, t).await?;
    let views: Vec<_> = list.iter().map(|i| InvitationView::new(i, t)).collect();
    Ok(ok(json!({"invitations": views})))
}

pub(crate) async fn revoke_invitation(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path((id, inv)): Path<(String, String)>,
) -> Reply {
    app.auth
        .revoke_invitation(&who, &id, &inv, &c, now())
        .await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptBody {
    token: String,
}

pub(crate) async fn accept(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    ValidJson(b): ValidJson<AcceptBody>,
) -> Reply {
    let (org, role) = app.auth.accept_invitation(&p, &b.token, &c, now()).await?;
    Ok(ok(
        json!({"organization": OrgView::new(&org, Some(&role)), "role": role}),
    ))
}

fn role_view(def: &crate::service::policy::RoleDef, builtin: bool, effective: &[String]) -> Value {
    json!({
        "name": def.name,
        "description": def.description,
        "builtin": builtin,
        "permissions": def.permissions,
        "inherits": def.inherits,
        "effectivePermissions": effective,
    })
}

pub(crate) async fn roles(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
) -> Reply {
    let list = app.auth.roles(&who, &id, &c, now()).await?;
    let views: Vec<_> = list.iter().map(|(d, b, e)| role_view(d, *b, e)).collect();
    Ok(ok(json!({"roles": views})))
}

pub(crate) async fn create_role(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<RoleInput>,
) -> Result<Response, ApiError> {
    let def = app.auth.put_role(&who, &id, b, None, &c, now()).await?;
    Ok(created(json!({"role": role_view(&def, false, &[])})))
}

pub(crate) async fn update_role(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path((id, name)): Path<(String, String)>,
    ValidJson(b): ValidJson<RoleInput>,
) -> Reply {
    let def = app
        .auth
        .put_role(&who, &id, b, Some(&name), &c, now())
        .await?;
    Ok(ok(json!({"role": role_view(&def, false, &[])})))
}

pub(crate) async fn delete_role(
    State(app): State<App>,
    Who(who): Who,
    Client(c): Client,
    Path((id, name)): Path<(String, String)>,
) -> Reply {
    app.auth.delete_role(&who, &id, &name, &c, now()).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SwitchBody {
    #[serde(rename = "orgId", alias = "org_id")]
    org_id: Option<String>,
}

/// `POST /auth/switch-org {orgId}`: tokens acting in that organization
/// (`null` leaves every organization).
pub(crate) async fn switch(
    State(app): State<App>,
    Auth(p): Auth,
    Client(c): Client,
    Mode(cookie): Mode,
    ValidJson(b): ValidJson<SwitchBody>,
) -> Result<Response, ApiError> {
    let (tokens, claims) = app
        .auth
        .switch_org(&p, b.org_id.as_deref(), &c, now())
        .await?;
    Ok(session_response(
        &app,
        cookie,
        StatusCode::OK,
        json!({"organization": claims}),
        tokens,
    ))
}
