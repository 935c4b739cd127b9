//! The JSON API and the WebSockets without a browser: bad input gets clear JSON errors,
//! foreign origins are refused, sessions end, and the bridge rides out core going away.

mod support;

use support::{PASSWORD, Stack, eventually};
use tokio_tungstenite::tungstenite;

async fn error_of(answer: reqwest::Response) -> (u16, String, String) {
    let status = answer.status().as_u16();
    let body: serde_json::Value = answer.json().await.expect("a JSON error body");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
        body["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let stack = Stack::start(|_| {}).await;
    let http = stack.http();
    let url = &stack.url;

    // Not logged in.
    let (status, code, _) = error_of(
        http.get(format!("{url}/api/v1/nodes"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));

    // Wrong password: 401, and nothing says whether the user exists.
    let answer = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "alice", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert!(answer.headers().get("set-cookie").is_none());
    let (status, code, _) = error_of(answer).await;
    assert_eq!((status, code.as_str()), (401, "login_failed"));

    // Malformed JSON, a wrong shape, an oversized body.
    for body in [
        "{\"username\": ",
        "[1, 2]",
        "{\"username\": \"a\", \"pw\": \"b\"}",
    ] {
        let answer = http
            .post(format!("{url}/api/v1/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(answer).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "bad_json"),
            "{body}: {message}"
        );
    }
    let huge = "x".repeat(200 * 1024);
    let answer = http
        .post(format!("{url}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(format!("{{\"username\": \"{huge}\", \"password\": \"p\"}}"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(answer).await;
    assert_eq!((status, code.as_str()), (413, "too_large"));

    // Unknown routes, in the API and outside it.
    for path in [
        "/api/v1/no-such-thing",
        "/no/such/page",
        "/assets/app/nope.js",
    ] {
        let (status, code, message) =
            error_of(http.get(format!("{url}{path}")).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
        assert!(
            message.contains(path.trim_start_matches("/assets")),
            "{message}"
        );
    }

    // Logged in: bad queries are refused in words.
    stack.login(&http, "alice").await;
    let (status, code, message) = error_of(
        http.get(format!("{url}/api/v1/nodes?limit=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_argument"),
        "{message}"
    );
    let (status, _, message) = error_of(
        http.get(format!("{url}/api/v1/nodes?sort=colour"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("colour"), "{message}");
    let (status, code, _) = error_of(
        http.get(format!("{url}/api/v1/nodes/0000dead"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    // After a logout the old cookie is worth nothing.
    let cookie = session_cookie(&stack).await;
    let me = format!("{url}/api/v1/me");
    let plain = reqwest::Client::new();
    let answer = plain
        .get(&me)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = plain
        .post(format!("{url}/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let cleared = answer.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let replayed = plain
        .get(&me)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(replayed).await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    stack.shutdown().await;
}

/// A fresh session of alice's, as the `Cookie` header that carries it.
async fn session_cookie(stack: &Stack) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", stack.url))
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let set = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_host_only_http_only_and_strict() {
    let stack = Stack::start(|_| {}).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", stack.url))
        .json(&serde_json::json!({"username": "vera", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-tether_session="), "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["user"]["name"], "vera");
    assert!(
        !body["permissions"]
            .as_array()
            .unwrap()
            .contains(&"enroll.decide".into()),
        "a viewer is not told it may decide applications"
    );
    // Every answer forbids framing and inline scripts.
    let page = reqwest::get(format!("{}/", stack.url)).await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    let scripts = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap();
    assert!(
        !scripts.contains("unsafe-inline") && !scripts.contains(" 'unsafe-eval'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_are_refused() {
    let stack = Stack::start(|_| {}).await;
    let http = stack.http();
    stack.login(&http, "alice").await;
    let cookie = session_cookie(&stack).await;
    let ws_url = stack.url.replace("http://", "ws://") + "/api/v1/live";

    // From another site: refused before the upgrade, though the cookie rides along.
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(&ws_url).unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin's WebSocket must be refused, got {other:?}"),
    }
    // A state-changing request from another site too.
    let answer = http
        .post(format!("{}/api/v1/auth/logout", stack.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(answer).await;
    assert_eq!((status, code.as_str()), (403, "bad_origin"));

    // From the bridge's own page: accepted, and live figures arrive.
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(&ws_url).unwrap();
    request
        .headers_mut()
        .insert("origin", stack.url.parse().unwrap());
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    use futures_util::{SinkExt as _, StreamExt as _};
    socket
        .send(tungstenite::Message::Text(
            r#"{"watch": {"overview": true}}"#.into(),
        ))
        .await
        .unwrap();
    let overview = tokio::time::timeout(support::PATIENCE, async {
        loop {
            let message = socket.next().await.expect("the socket open").unwrap();
            let value: serde_json::Value =
                serde_json::from_str(message.to_text().unwrap_or("null")).unwrap_or_default();
            if value["type"] == "overview" {
                return value;
            }
        }
    })
    .await
    .expect("the overview pushed");
    assert_eq!(overview["data"]["nodes"]["total"], 0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_rides_out_core_going_away() {
    let mut stack = Stack::start(|_| {}).await;
    let http = stack.http();
    stack.login(&http, "alice").await;
    let me = format!("{}/api/v1/me", stack.url);
    assert_eq!(http.get(&me).send().await.unwrap().status(), 200);

    let core = stack.core.take().unwrap();
    let data = core.data_dir().root().to_path_buf();
    core.shutdown().await;
    let (status, code, _) = eventually("core_unreachable", || async {
        let answer = http.get(&me).send().await.ok()?;
        (answer.status() == 503).then_some(())?;
        Some(error_of(answer).await)
    })
    .await;
    assert_eq!((status, code.as_str()), (503, "core_unreachable"));
    let health = reqwest::get(format!("{}/health", stack.url)).await.unwrap();
    assert_eq!(health.status(), 503);

    let mut config = tether_core::config::CoreConfig::with_data_dir(data);
    config.listen = stack.core_addr;
    stack.core = Some(
        tether_core::Core::start(config)
            .await
            .expect("core restarts"),
    );
    // The bridge reconnects by itself, and the session (kept by core) still counts.
    eventually("the session working again", || async {
        let answer = http.get(&me).send().await.ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;

    // A restarted bridge keeps nothing of its own, yet knows the browser: the cookie holds
    // core's session (cookies ignore ports, so the jar sends it to the new one too).
    stack.start_bridge(|_| {}).await;
    let me = format!("{}/api/v1/me", stack.url);
    let answer = http.get(&me).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["name"], "alice");
    stack.shutdown().await;
}
