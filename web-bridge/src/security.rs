//! What every answer carries (a content security policy without inline scripts, frame denial,
//! no sniffing, no referrer) and what every state-changing request and WebSocket upgrade must
//! show: an allowed `Origin`. Cookies ride along on cross-site requests and WebSockets ignore
//! the same-origin policy, so the origin is the bridge's defence against cross-site requests.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, AppState};
use crate::config::normalize_origin;

/// The pages' policy: scripts only from the bridge (asciinema-player compiles its bundled
/// WebAssembly: `'wasm-unsafe-eval'`, which allows no JavaScript `eval`), styles from the
/// bridge and the ones xterm.js injects, connections only back to the bridge.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' \
     'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src \
     'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Adds the security headers to every answer.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    response
}

/// Refuses state-changing requests and WebSocket upgrades from an origin the bridge does not
/// know (403 `bad_origin`). A request without `Origin` comes from no browser page (browsers
/// send it on every POST and every WebSocket), so it cannot be a cross-site request.
pub(crate) async fn check_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let upgrade = request.headers().contains_key(header::UPGRADE);
    if (changes || upgrade)
        && let Err(error) = origin_allowed(&state.settings.origins, request.headers())
    {
        return error.into_response();
    }
    next.run(request).await
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let text = origin.to_str().unwrap_or("");
    match normalize_origin(text) {
        Some(origin) if allowed.contains(&origin) => Ok(()),
        _ => Err(ApiError::forbidden(
            "bad_origin",
            format!(
                "requests from origin {text:?} are not accepted; if this is the address \
                 browsers use for the bridge, start it with --allowed-origin {text}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_origins_may_change_things() {
        let allowed = vec!["http://127.0.0.1:8080".to_string()];
        let mut headers = HeaderMap::new();
        assert!(
            origin_allowed(&allowed, &headers).is_ok(),
            "no Origin: not a browser page"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(origin_allowed(&allowed, &headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(origin_allowed(&allowed, &headers).is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(origin_allowed(&allowed, &headers).is_err());
    }
}
