//! Logging in and out, and who am I. The session cookie holds core's session token (HttpOnly,
//! so no script reads it; SameSite=Strict, so no other site's page sends it); core keeps only
//! its hash.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::users::Secret;

use super::{ApiError, AppState, User, client_info, first, json_body, ok, session_cookie};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: String,
    password: String,
}

/// The client's parts, for the login (which has no session yet).
pub(crate) struct Browser(Parts);

impl FromRequestParts<AppState> for Browser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(Browser(parts.clone()))
    }
}

/// `POST /api/v1/auth/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    Browser(parts): Browser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let login: Login = json_body(body)?;
    if login.username.is_empty() || login.password.is_empty() {
        return Err(ApiError::bad_request("give a user name and a password"));
    }
    let client = state.client()?;
    let request = AdminRequest::Login {
        user: login.username,
        password: Secret::new(login.password),
        client: client_info(&parts, &state.settings),
    };
    let answer = client.request(&request).await?;
    let (token, session) = first(answer, |r| match r {
        AdminResponse::LoggedIn { token, session } => Some((token, session)),
        _ => None,
    })?;
    let user = User {
        token,
        client: client_info(&parts, &state.settings),
    };
    let me = whoami(&state, &user).await?;
    let cookie = cookie::Cookie::build((state.settings.cookie_name, user.token.expose()))
        .path("/")
        .http_only(true)
        .secure(state.settings.cookie_secure)
        .same_site(cookie::SameSite::Strict)
        .build();
    let mut response = ok(serde_json::json!({
        "user": {"name": me["name"], "role": me["role"]},
        "session": session.id,
        "permissions": me["permissions"],
    }));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie.to_string()).map_err(|_| ApiError::unexpected())?,
    );
    Ok(response)
}

/// `POST /api/v1/auth/logout`: ends the session in core and clears the cookie; without a
/// session it only clears the cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    Browser(parts): Browser,
) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&parts, state.settings.cookie_name) {
        let client = state.client()?;
        let request = AdminRequest::Logout {
            token: Secret::new(token),
        };
        match client.request(&request).await {
            // Already over: the cookie goes anyway.
            Ok(_) | Err(tether_client::ClientError::Core { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let clear = cookie::Cookie::build((state.settings.cookie_name, ""))
        .path("/")
        .http_only(true)
        .secure(state.settings.cookie_secure)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear.to_string()).map_err(|_| ApiError::unexpected())?,
    );
    Ok(response)
}

/// `GET /api/v1/me`.
pub(crate) async fn me(State(state): State<AppState>, user: User) -> Result<Response, ApiError> {
    Ok(ok(whoami(&state, &user).await?))
}

async fn whoami(state: &AppState, user: &User) -> Result<serde_json::Value, ApiError> {
    let answer = state.ask(user, &AdminRequest::Ping).await?;
    first(answer, |r| match r {
        AdminResponse::Pong {
            admin,
            role,
            permissions,
            ..
        } => Some(serde_json::json!({
            "name": admin,
            "role": role,
            "permissions": permissions,
        })),
        _ => None,
    })
}
