//! The JSON API under `/api/v1` and the WebSockets, one module per resource as core's admin
//! API has them. Each handler turns a browser request into one admin request, sends it to core
//! inside the user's session ([`AppState::ask`]) and turns the answer into JSON; core decides
//! whether the user may (the bridge never does) and records it in the audit log.

mod alerts;
mod audit;
mod auth;
mod enroll;
mod exec;
mod live;
mod metrics;
mod nodes;
mod releases;
mod sessions;
mod tasks;
mod tty;
mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tether_client::{AdminClient, ClientError};
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::users::{ClientInfo, MAX_USER_AGENT_BYTES, Secret};

use crate::config::Settings;
use crate::link::CoreLink;

/// The largest JSON body the API reads, bytes.
const MAX_BODY: usize = 64 * 1024;

/// What handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub link: Arc<CoreLink>,
    pub settings: Arc<Settings>,
    /// Open WebSockets per login session, keyed by the token's SHA-256 (never the token).
    sockets: Arc<Mutex<HashMap<[u8; 32], usize>>>,
}

impl AppState {
    pub(crate) fn new(link: Arc<CoreLink>, settings: Arc<Settings>) -> Self {
        Self {
            link,
            settings,
            sockets: Arc::default(),
        }
    }

    /// The connection to core, or 503 while there is none.
    pub(crate) fn client(&self) -> Result<Arc<AdminClient>, ApiError> {
        self.link.client().ok_or_else(ApiError::unreachable)
    }

    /// Sends `request` as `user` and collects the answer.
    pub(crate) async fn ask(
        &self,
        user: &User,
        request: &AdminRequest,
    ) -> Result<Vec<AdminResponse>, ApiError> {
        let client = self.client()?;
        Ok(client.request(&user.wrap(request)).await?)
    }

    /// Counts one more WebSocket for the session, or refuses past the limit; the returned guard
    /// counts it off when dropped.
    pub(crate) fn open_socket(&self, user: &User) -> Result<SocketGuard, ApiError> {
        let key: [u8; 32] = Sha256::digest(user.token.expose().as_bytes()).into();
        let mut sockets = self.sockets.lock().expect("not poisoned");
        let open = sockets.entry(key).or_default();
        if *open >= self.settings.max_sockets_per_session {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
                format!(
                    "this session already has {} live connections open (the limit); close \
                     some tabs",
                    *open
                ),
            ));
        }
        *open += 1;
        Ok(SocketGuard {
            sockets: self.sockets.clone(),
            key,
        })
    }
}

/// One open WebSocket, counted against its session.
#[derive(Debug)]
pub(crate) struct SocketGuard {
    sockets: Arc<Mutex<HashMap<[u8; 32], usize>>>,
    key: [u8; 32],
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut sockets = self.sockets.lock().expect("not poisoned");
        if let Some(open) = sockets.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                sockets.remove(&self.key);
            }
        }
    }
}

/// The routes.
pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/overview", get(nodes::overview))
        .route("/fleet/metrics", get(metrics::fleet))
        .route("/nodes", get(nodes::list))
        .route("/groups", get(nodes::groups))
        .route("/nodes/{id}", get(nodes::show).delete(nodes::delete))
        .route("/nodes/{id}/labels", post(nodes::labels))
        .route("/nodes/{id}/maintenance", post(nodes::maintenance))
        .route("/nodes/{id}/allowed-users", post(nodes::allowed_users))
        .route("/nodes/{id}/metrics", get(metrics::history))
        .route("/nodes/{id}/executions", get(exec::of_node))
        .route("/nodes/{id}/sessions", get(sessions::of_node))
        .route("/applications", get(enroll::list))
        .route("/applications/{id}/approve", post(enroll::approve))
        .route("/applications/{id}/reject", post(enroll::reject))
        .route("/executions", get(exec::history))
        .route("/executions/{id}", get(exec::show))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::show))
        .route("/sessions/{id}/kill", post(sessions::kill))
        .route("/sessions/{id}/recording", get(sessions::recording))
        .route("/users", get(users::list).post(users::add))
        .route("/users/{name}", axum::routing::delete(users::delete))
        .route("/users/{name}/role", post(users::role_of))
        .route("/users/{name}/enabled", post(users::enabled))
        .route("/users/{name}/logout", post(users::logout))
        .route("/users/{name}/password", post(users::password))
        .route("/audit", get(audit::list))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::show))
        .route("/alerts/{id}/ack", post(alerts::ack))
        .route("/alert-rules", get(alerts::rules).post(alerts::add_rule))
        .route(
            "/alert-rules/{name}",
            axum::routing::delete(alerts::delete_rule),
        )
        .route("/alert-rules/{name}/enabled", post(alerts::enable_rule))
        .route("/alert-channels", get(alerts::channels))
        .route("/tasks", get(tasks::list).post(tasks::add))
        .route("/tasks/{name}", get(tasks::show).delete(tasks::delete))
        .route("/tasks/{name}/enabled", post(tasks::enable))
        .route("/tasks/{name}/run", post(tasks::run))
        .route("/tasks/{name}/runs", get(tasks::runs))
        .route("/cron-preview", get(tasks::preview))
        .route("/releases", get(releases::list))
        .route(
            "/releases/{version}",
            axum::routing::delete(releases::delete),
        )
        .route("/deploys", get(releases::deploys).post(releases::deploy))
        .route("/deploys/{id}", get(releases::status))
        .route("/deploys/{id}/{action}", post(releases::control))
        .route("/live", get(live::socket))
        .route("/exec", get(exec::socket))
        .route("/tty", get(tty::socket))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method);
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health))
        .merge(crate::assets::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::security::check_origin,
        ))
        .layer(axum::middleware::from_fn(crate::security::headers))
        .with_state(state)
}

async fn unknown_route(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such route: {}", uri.path()),
    )
}

async fn wrong_method(
    method: axum::http::Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

/// `GET /health`: 200 while connected to core, 503 while reconnecting.
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let link = state.link.state();
    let status = match link {
        crate::LinkState::Connected => StatusCode::OK,
        crate::LinkState::Reconnecting => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "degraded" },
        "core": link.as_str(),
    });
    (status, axum::Json(body)).into_response()
}

/// An error as browsers get it: a status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub(crate) fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub(crate) fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "not logged in; log in first",
        )
    }

    pub(crate) fn unreachable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "core_unreachable",
            "the bridge cannot reach core right now and is reconnecting; try again in a moment",
        )
    }

    pub(crate) fn unexpected() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "unexpected_answer",
            "core answered with something the bridge did not expect (different versions?)",
        )
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Core { code, message } => {
                let status = match code {
                    ErrorCode::NOT_FOUND | ErrorCode::UNKNOWN_NODE => StatusCode::NOT_FOUND,
                    ErrorCode::PERMISSION_DENIED | ErrorCode::FORBIDDEN => StatusCode::FORBIDDEN,
                    ErrorCode::LOGIN_FAILED
                    | ErrorCode::SESSION_EXPIRED
                    | ErrorCode::CREDENTIALS_REVOKED => StatusCode::UNAUTHORIZED,
                    ErrorCode::RATE_LIMITED | ErrorCode::LIMIT_REACHED => {
                        StatusCode::TOO_MANY_REQUESTS
                    }
                    ErrorCode::CONFLICT => StatusCode::CONFLICT,
                    ErrorCode::INVALID_ARGUMENT
                    | ErrorCode::AMBIGUOUS
                    | ErrorCode::INVALID_REQUEST
                    | ErrorCode::MALFORMED => StatusCode::BAD_REQUEST,
                    ErrorCode::NODE_UNAVAILABLE | ErrorCode::SHUTTING_DOWN => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    _ => StatusCode::BAD_GATEWAY,
                };
                let name = match code {
                    // One word for the page: log in again.
                    ErrorCode::SESSION_EXPIRED | ErrorCode::CREDENTIALS_REVOKED => {
                        "unauthenticated"
                    }
                    other => other.name(),
                };
                ApiError::new(status, name, message)
            }
            ClientError::Transport(_) | ClientError::Connect { .. } => ApiError::unreachable(),
            other => ApiError::new(StatusCode::BAD_GATEWAY, "bridge_error", other.to_string()),
        }
    }
}

/// The logged-in user a request comes from: core's session token from the cookie, and the
/// browser as the bridge sees it. Without a cookie: 401.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub token: Secret,
    pub client: ClientInfo,
}

impl User {
    /// `request` as this user.
    pub(crate) fn wrap(&self, request: &AdminRequest) -> AdminRequest {
        AdminRequest::as_user(self.token.clone(), self.client.clone(), request)
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = session_cookie(parts, state.settings.cookie_name)
            .ok_or_else(ApiError::unauthenticated)?;
        Ok(User {
            token: Secret::new(token),
            client: client_info(parts, &state.settings),
        })
    }
}

/// The session cookie's value, if the request carries one.
pub(crate) fn session_cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_string())
}

/// The browser's address and user agent. The address is the TCP peer's, unless the peer is a
/// trusted reverse proxy (`--trusted-proxy`): then the last address in `X-Forwarded-For` that
/// is not itself a trusted proxy (what a proxy appends cannot be forged by the browser; what
/// the browser sent comes before it).
pub(crate) fn client_info(parts: &Parts, settings: &Settings) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let forwarded = || {
        parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .find(|ip| !settings.trusted_proxies.contains(ip))
    };
    let addr = match peer {
        Some(ip) if settings.trusted_proxies.contains(&ip) => forwarded().or(Some(ip)),
        other => other,
    }
    .map(|ip| ip.to_string());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT_BYTES);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_string()
        });
    ClientInfo { addr, user_agent }
}

/// A query string read into `T`, or a 400 in JSON that says what is wrong with it.
#[derive(Debug)]
pub(crate) struct QueryOf<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(QueryOf(value))
    }
}

/// A JSON body, or a 400/413 that says what is wrong with it.
pub(crate) fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                format!("the request body is over {MAX_BODY} bytes"),
            )
        } else {
            ApiError::new(status, "bad_body", rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the request body is not the JSON expected: {e}"),
        )
    })
}

/// A list's `limit` parameter: `default` when absent, refused outside 1 to `max`.
pub(crate) fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = given.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: 1 to {max}"
        )));
    }
    Ok(limit)
}

/// Upgrades to a WebSocket counted against its session while it lasts (`guard`, from
/// [`AppState::open_socket`]), with messages of at most `max_message` bytes, and runs `serve` on
/// it.
pub(crate) fn upgrade_counted<F, Fut>(
    guard: SocketGuard,
    upgrade: axum::extract::ws::WebSocketUpgrade,
    max_message: usize,
    serve: F,
) -> Response
where
    F: FnOnce(axum::extract::ws::WebSocket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            serve(socket).await;
            drop(guard);
        })
}

/// JSON with status 200.
pub(crate) fn ok<T: Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

/// The first answer, picked out by `pick`; anything else is unexpected.
pub(crate) fn first<T>(
    responses: Vec<AdminResponse>,
    pick: impl FnOnce(AdminResponse) -> Option<T>,
) -> Result<T, ApiError> {
    responses
        .into_iter()
        .next()
        .and_then(pick)
        .ok_or_else(ApiError::unexpected)
}

/// The body of every `POST .../enabled`: `{"enabled": bool}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Enabled {
    pub(crate) enabled: bool,
}

/// Every item of a list answer that came in chunks.
pub(crate) fn gather<T>(
    responses: Vec<AdminResponse>,
    pick: impl Fn(AdminResponse) -> Option<Vec<T>>,
) -> Result<Vec<T>, ApiError> {
    let mut items = Vec::new();
    for response in responses {
        items.extend(pick(response).ok_or_else(ApiError::unexpected)?);
    }
    Ok(items)
}
