//! Users (admins): list, add, role, enable, log out, delete; passwords (admins, and users their own).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::users::{NewUser, Secret, UserView};

use super::{ApiError, AppState, Enabled, User, first, gather, json_body, ok};

/// `GET /api/v1/users`.
pub(crate) async fn list(State(state): State<AppState>, user: User) -> Result<Response, ApiError> {
    let answer = state.ask(&user, &AdminRequest::UserList).await?;
    Ok(ok(gather(answer, |r| match r {
        AdminResponse::Users(users) => Some(users),
        _ => None,
    })?))
}

fn one(answer: Vec<AdminResponse>) -> Result<UserView, ApiError> {
    first(answer, |r| match r {
        AdminResponse::User(user) => Some(user),
        _ => None,
    })
}

fn role(text: &str) -> Result<Role, ApiError> {
    let role: Role = text
        .to_ascii_lowercase()
        .parse()
        .map_err(ApiError::bad_request)?;
    if role == Role::Bridge {
        return Err(ApiError::bad_request(
            "a bridge is a service with a certificate (tether-core admin issue NAME --role \
             bridge); it cannot be made from a page",
        ));
    }
    Ok(role)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Add {
    name: String,
    role: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /api/v1/users`: without a password, one is generated and shown in this answer only.
pub(crate) async fn add(
    State(state): State<AppState>,
    user: User,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let add: Add = json_body(body)?;
    let role = role(&add.role)?;
    let given = add.password.filter(|p| !p.is_empty());
    let generated = given.is_none();
    let password = given.unwrap_or_else(tether_client::generate_password);
    let request = AdminRequest::UserAdd(NewUser {
        name: add.name,
        role,
        email: add.email.filter(|e| !e.trim().is_empty()),
        password: Some(Secret::new(password.clone())),
    });
    let created = one(state.ask(&user, &request).await?)?;
    Ok(ok(serde_json::json!({
        "user": created,
        "password": generated.then_some(password),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRole {
    role: String,
}

/// `POST /api/v1/users/{name}/role`.
pub(crate) async fn role_of(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let SetRole { role: text } = json_body(body)?;
    let request = AdminRequest::UserRole {
        name,
        role: role(&text)?,
    };
    Ok(ok(one(state.ask(&user, &request).await?)?))
}

/// `POST /api/v1/users/{name}/enabled`.
pub(crate) async fn enabled(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Enabled { enabled } = json_body(body)?;
    let request = AdminRequest::UserEnable { name, enabled };
    Ok(ok(one(state.ask(&user, &request).await?)?))
}

/// `POST /api/v1/users/{name}/logout`: ends every login session of the user.
pub(crate) async fn logout(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::UserLogout {
        name,
        session: None,
    };
    let ended = first(state.ask(&user, &request).await?, |r| match r {
        AdminResponse::LoggedOut { sessions } => Some(sessions),
        _ => None,
    })?;
    Ok(ok(serde_json::json!({ "sessions": ended })))
}

/// `DELETE /api/v1/users/{name}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let request = AdminRequest::UserDelete { name };
    Ok(ok(one(state.ask(&user, &request).await?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Passwd {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current: Option<String>,
}

/// `POST /api/v1/users/{name}/password` with `{password?, current?}`: users changing their own
/// give the current one (core insists); an admin resetting another's may leave `password` out
/// to have one generated, shown in this answer only. The user's login sessions end either way.
pub(crate) async fn password(
    State(state): State<AppState>,
    user: User,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Passwd { password, current } = json_body(body)?;
    let given = password.filter(|p| !p.is_empty());
    let generated = given.is_none();
    let password = given.unwrap_or_else(tether_client::generate_password);
    let request = AdminRequest::UserPasswd {
        name,
        password: Secret::new(password.clone()),
        current: current.filter(|c| !c.is_empty()).map(Secret::new),
    };
    let changed = one(state.ask(&user, &request).await?)?;
    Ok(ok(serde_json::json!({
        "user": changed,
        "password": generated.then_some(password),
    })))
}
