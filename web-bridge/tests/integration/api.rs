//! The JSON API and the WebSockets without a browser: bad input gets clear JSON errors,
//! foreign origins are refused, sessions end, and the bridge rides out core going away.

use crate::support;

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
    // A client of its own: the bridge answers 413 without reading the body and closes that
    // connection, which a pooled client could otherwise reuse for the next request.
    let answer = reqwest::Client::new()
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

    // Tasks: a bad cron expression, zone or field is refused in words; nothing is added.
    for (body, says) in [
        (
            serde_json::json!({"name": "t", "cron": "61 * * * *", "command": "true", "all": true}),
            "invalid cron expression",
        ),
        (
            serde_json::json!({"name": "t", "cron": "@daily", "timezone": "Nowhere/Else", "command": "true", "all": true}),
            "unknown time zone",
        ),
        (
            serde_json::json!({"name": "t", "cron": "@daily", "all": true}),
            "give one of",
        ),
        (
            serde_json::json!({"name": "t", "cron": "@daily", "command": "true"}),
            "needs targets",
        ),
        (
            serde_json::json!({"name": "t", "cron": "@daily", "command": "true", "all": true, "catch_up": "all"}),
            "catch-up",
        ),
    ] {
        let answer = http
            .post(format!("{url}/api/v1/tasks"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(answer).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_argument"),
            "{body}: {message}"
        );
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, code, message) = error_of(
        http.get(format!("{url}/api/v1/cron-preview?cron=%2A+%2A+%2A"))
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
    assert!(message.contains("five fields"), "{message}");
    let tasks: serde_json::Value = http
        .get(format!("{url}/api/v1/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks, serde_json::json!([]), "nothing was added");

    // Deploys: bad bodies say what is wrong; nothing starts.
    for (body, status_code, says) in [
        (
            serde_json::json!({"version": "1.0", "all": true, "strategy": "fast"}),
            400,
            "strategy",
        ),
        (
            serde_json::json!({"version": "1.0", "all": true, "strategy": "rolling", "batch": "lots"}),
            400,
            "batch",
        ),
        (
            serde_json::json!({"version": "1.0", "all": true, "max_failures": "150%"}),
            400,
            "max_failures",
        ),
        (
            serde_json::json!({"version": "1.0", "all": true, "offline": "maybe"}),
            400,
            "offline",
        ),
        (
            serde_json::json!({"version": "1.0"}),
            400,
            "no nodes selected",
        ),
        (
            serde_json::json!({"version": "1.0", "all": true, "watchdog_s": 0}),
            400,
            "--watchdog",
        ),
        (
            serde_json::json!({"version": "1.0", "all": true, "speed": 1}),
            400,
            "speed",
        ),
        (
            serde_json::json!({"version": "1.0", "all": true}),
            404,
            "upload it first",
        ),
    ] {
        let answer = http
            .post(format!("{url}/api/v1/deploys"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, message) = error_of(answer).await;
        assert_eq!(status, status_code, "{body}: {message}");
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, _, message) = error_of(
        http.post(format!("{url}/api/v1/deploys/1/explode"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{message}");
    let (status, _, message) = error_of(
        http.get(format!("{url}/api/v1/deploys/7"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("no deploy 7"), "{message}");
    let deploys: serde_json::Value = http
        .get(format!("{url}/api/v1/deploys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deploys, serde_json::json!([]), "nothing was started");

    // A wrong method is named.
    let answer = http
        .put(format!("{url}/api/v1/nodes"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(answer).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    assert!(message.contains("PUT"), "{message}");

    // A page cannot disable, demote or delete the bridge it comes through.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/users/web/enabled",
            serde_json::json!({"enabled": false}),
        ),
        (
            "POST",
            "/api/v1/users/web/role",
            serde_json::json!({"role": "viewer"}),
        ),
        ("DELETE", "/api/v1/users/web", serde_json::json!({})),
    ] {
        let request = match method {
            "POST" => http.post(format!("{url}{path}")).json(&body),
            _ => http.delete(format!("{url}{path}")),
        };
        let (status, code, message) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "conflict"),
            "{path}: {message}"
        );
        assert!(message.contains("tether CLI"), "{message}");
    }
    let me = http.get(format!("{url}/api/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), 200, "the bridge still works");

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

/// The next JSON message on a socket that satisfies `wanted`.
async fn next_json<S>(
    socket: &mut S,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    use futures_util::StreamExt as _;
    tokio::time::timeout(support::PATIENCE, async {
        loop {
            let message = socket.next().await.expect("the socket open").unwrap();
            let value: serde_json::Value =
                serde_json::from_str(message.to_text().unwrap_or("null")).unwrap_or_default();
            if wanted(&value) {
                return value;
            }
        }
    })
    .await
    .expect("the message")
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
    use futures_util::SinkExt as _;
    socket
        .send(tungstenite::Message::Text(
            r#"{"watch": {"overview": true}}"#.into(),
        ))
        .await
        .unwrap();
    let overview = next_json(&mut socket, |v| v["type"] == "overview").await;
    assert_eq!(overview["data"]["nodes"]["total"], 0);

    // Watching a node that does not exist: told so, and the socket stays for the next watch.
    socket
        .send(tungstenite::Message::Text(
            r#"{"watch": {"node": "no-such-node"}}"#.into(),
        ))
        .await
        .unwrap();
    let refused = next_json(&mut socket, |v| v["type"] == "error").await;
    assert_eq!(refused["code"], "not_found", "{refused}");
    socket
        .send(tungstenite::Message::Text(
            r#"{"watch": {"nodes": {"limit": 5}}}"#.into(),
        ))
        .await
        .unwrap();
    let nodes = next_json(&mut socket, |v| v["type"] == "nodes").await;
    assert_eq!(nodes["data"]["limit"], 5);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_per_session_and_message_sizes_are_limited() {
    let mut stack = Stack::start(|_| {}).await;
    stack.start_bridge(|c| c.max_sockets_per_session = 2).await;
    let cookie = session_cookie(&stack).await;
    let ws_url = stack.url.replace("http://", "ws://") + "/api/v1/live";
    let open = || {
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(&ws_url).unwrap();
        request
            .headers_mut()
            .insert("origin", stack.url.parse().unwrap());
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let (first, _) = open().await.unwrap();
    let (mut second, _) = open().await.unwrap();
    match open().await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a third socket must be refused, got {other:?}"),
    }
    // One closes: another may open.
    drop(first);
    eventually("a socket freed", || async { open().await.ok() }).await;

    // A message over the live socket's limit ends the socket.
    use futures_util::{SinkExt as _, StreamExt as _};
    let huge = format!("{{\"watch\": {{\"node\": \"{}\"}}}}", "x".repeat(64 * 1024));
    let _ = second.send(tungstenite::Message::Text(huge.into())).await;
    let ended = tokio::time::timeout(support::PATIENCE, async {
        loop {
            match second.next().await {
                None | Some(Err(_)) | Some(Ok(tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "an oversized message closes the socket");
    stack.shutdown().await;
}

/// The bridge as shipped: the binary, its flags, and logs that never carry a password, a
/// session token or a cookie, even at the most verbose level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_logs_no_secrets() {
    let stack = Stack::start(|_| {}).await;
    let identity = stack.dir.path().join("web.identity");
    stack.bridge_identity().save(&identity).unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let log = stack.dir.path().join("bridge.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tether-bridge"))
        .args(["--core", &stack.core_addr.to_string(), "--identity"])
        .arg(&identity)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "json"])
        .env("TETHER_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    eventually("the bridge binary connected", || async {
        let answer = reqwest::get(format!("{url}/health")).await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    let answer = reqwest::Client::new()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let set = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let token = cookie.split_once('=').unwrap().1.to_string();
    let plain = reqwest::Client::new();
    for path in ["/api/v1/me", "/api/v1/nodes", "/api/v1/overview"] {
        let answer = plain
            .get(format!("{url}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let _ = plain
        .post(format!("{url}/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("web bridge listening"), "{text}");
    // --log-format json: one object per line, with level, time and message.
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .collect();
    let listening = records
        .iter()
        .find(|r| r["message"] == "web bridge listening")
        .expect("the listening line as JSON");
    assert_eq!(listening["level"], "INFO");
    assert!(listening["timestamp"].is_string(), "{listening}");
    assert!(!text.contains(&token), "the session token is in the log");
    assert!(!text.contains(PASSWORD), "the password is in the log");
    assert!(
        !text.to_lowercase().contains("cookie:"),
        "a cookie header is in the log"
    );
    stack.shutdown().await;
}

#[test]
fn help_explains_the_flags() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tether-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--core",
        "--identity",
        "--listen",
        "--tls-cert",
        "--tls-key",
        "--allowed-origin",
    ] {
        assert!(text.contains(flag), "{flag} in --help");
    }
    // Every address without a known origin is refused at start, in words.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tether-bridge"))
        .args(["--identity", "/nonexistent", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("/nonexistent"),
        "a missing identity file is named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_needs_a_known_origin() {
    let stack = Stack::start(|_| {}).await;
    let mut config = tether_web_bridge::BridgeConfig::new(stack.bridge_identity().clone());
    config.core = Some(stack.core_addr.to_string());
    config.listen = "0.0.0.0:0".parse().unwrap();
    let refused = tether_web_bridge::Bridge::start(config.clone())
        .await
        .expect_err("no origin known");
    assert!(
        refused.to_string().contains("--allowed-origin"),
        "{refused}"
    );
    config.allowed_origins = vec!["not a url".into()];
    let refused = tether_web_bridge::Bridge::start(config.clone())
        .await
        .expect_err("a bad origin");
    assert!(refused.to_string().contains("not a url"), "{refused}");
    config.allowed_origins = vec!["https://tether.example.com".into()];
    let bridge = tether_web_bridge::Bridge::start(config).await.unwrap();
    // Browsers at that origin may change things; the bridge's own loopback origin is not known.
    let url = format!("http://127.0.0.1:{}", bridge.local_addr().port());
    let answer = reqwest::Client::new()
        .post(format!("{url}/api/v1/auth/logout"))
        .header("origin", "https://tether.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    bridge.shutdown().await;
    stack.shutdown().await;
}

/// Over TLS (rustls, the workspace's provider) the cookie is `Secure` and `__Host-`, as on
/// loopback; a certificate that does not load is refused at start, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_with_a_secure_cookie() {
    let stack = Stack::start(|_| {}).await;
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = stack.dir.path().join("bridge-cert.pem");
    let key = stack.dir.path().join("bridge-key.pem");
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();

    let mut config = tether_web_bridge::BridgeConfig::new(stack.bridge_identity().clone());
    config.core = Some(stack.core_addr.to_string());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.tls = Some(tether_web_bridge::Tls {
        cert: key.clone(),
        key: key.clone(),
    });
    let refused = tether_web_bridge::Bridge::start(config.clone())
        .await
        .expect_err("a key is not a certificate");
    assert!(refused.to_string().contains("bridge-key.pem"), "{refused}");

    config.tls = Some(tether_web_bridge::Tls { cert, key });
    let bridge = tether_web_bridge::Bridge::start(config).await.unwrap();
    assert!(bridge.url().starts_with("https://"), "{}", bridge.url());
    let port = bridge.local_addr().port();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(issued.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", bridge.local_addr())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}");
    eventually("the HTTPS bridge connected to core", || async {
        let answer = https.get(format!("{url}/health")).send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    let answer = https
        .post(format!("{url}/api/v1/auth/login"))
        .header("origin", &url)
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-tether_session="), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
    bridge.shutdown().await;
    stack.shutdown().await;
}

/// The browser's address in core's latest record of oscar's login.
async fn last_login_addr(admin: &tether_client::AdminClient) -> String {
    let answer = admin
        .request(&tether_wire::admin::AdminRequest::Audit(
            tether_wire::users::AuditQuery {
                user: Some("oscar".into()),
                action: Some("sessions.login".into()),
                limit: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    answer
        .into_iter()
        .find_map(|r| match r {
            tether_wire::admin::AdminResponse::AuditRecords(mut records) => records.pop(),
            _ => None,
        })
        .and_then(|record| record.entry.client_addr)
        .unwrap()
}

/// The browser's address reaches core's audit log: the TCP peer's, or behind a trusted proxy
/// the one it forwards (never what an untrusted peer claims).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_address_is_the_peer_or_what_a_trusted_proxy_says() {
    let mut stack = Stack::start(|_| {}).await;
    let login_from = |url: String, claimed: &'static str| async move {
        let answer = reqwest::Client::new()
            .post(format!("{url}/api/v1/auth/login"))
            .header("x-forwarded-for", claimed)
            .header("user-agent", "tether-test")
            .json(&serde_json::json!({"username": "oscar", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    };
    // Not trusted: the claim is ignored.
    login_from(stack.url.clone(), "203.0.113.7").await;
    assert_eq!(last_login_addr(&stack.admin).await, "127.0.0.1");
    // Trusted: the last address the proxy saw, not what the browser put first.
    stack
        .start_bridge(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()])
        .await;
    login_from(stack.url.clone(), "198.51.100.1, 203.0.113.7").await;
    assert_eq!(last_login_addr(&stack.admin).await, "203.0.113.7");
    stack.shutdown().await;
}

async fn me_status(stack: &Stack, http: &reqwest::Client) -> u16 {
    http.get(format!("{}/api/v1/me", stack.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_change_with_the_current_one_and_admins_reset_others() {
    let stack = Stack::start(|_| {}).await;
    let url = &stack.url;
    let vera = stack.http();
    stack.login(&vera, "vera").await;
    let change = |body: serde_json::Value| {
        let http = vera.clone();
        let url = format!("{url}/api/v1/users/vera/password");
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let fresh = "a fresh password for vera";

    // Without the current password, with a wrong one, or too short: refused, nothing changed.
    let (status, code, message) =
        error_of(change(serde_json::json!({"password": fresh})).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_argument"),
        "{message}"
    );
    assert!(message.contains("current password"), "{message}");
    let (status, _, message) =
        error_of(change(serde_json::json!({"password": "short", "current": PASSWORD})).await).await;
    assert_eq!(status, 400, "{message}");
    let (status, _, message) =
        error_of(change(serde_json::json!({"password": fresh, "current": "not it at all"})).await)
            .await;
    assert!(status == 401 || status == 403, "{status} {message}");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(me_status(&stack, &vera).await, 200, "still logged in");
    assert_eq!(
        stack.login_status(&stack.http(), "vera", PASSWORD).await,
        200
    );

    // Another user's: only admins.
    let answer = vera
        .post(format!("{url}/api/v1/users/oscar/password"))
        .json(&serde_json::json!({"password": fresh}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(answer).await;
    assert_eq!((status, code.as_str()), (403, "permission_denied"));

    // With the current one: changed, and every session of vera's ends.
    // (The wrong guess above throttles further tries for a moment, as logins are.)
    let answer = eventually("the change past the throttle", || async {
        let answer = change(serde_json::json!({"password": fresh, "current": PASSWORD})).await;
        (answer.status() != 429).then_some(answer)
    })
    .await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["user"]["name"], "vera");
    assert!(
        body["password"].is_null(),
        "a chosen password is not echoed"
    );
    assert_eq!(me_status(&stack, &vera).await, 401, "the session ended");
    assert_eq!(
        stack.login_status(&stack.http(), "vera", PASSWORD).await,
        401
    );
    assert_eq!(stack.login_status(&vera, "vera", fresh).await, 200);

    // An admin resets it: a generated one, shown once, that works; vera is logged out again.
    let alice = stack.http();
    stack.login(&alice, "alice").await;
    let answer = alice
        .post(format!("{url}/api/v1/users/vera/password"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let generated = body["password"]
        .as_str()
        .expect("a generated password")
        .to_string();
    assert!(generated.len() >= 12);
    assert_eq!(me_status(&stack, &vera).await, 401);
    assert_eq!(
        stack.login_status(&stack.http(), "vera", &generated).await,
        200
    );
    assert_eq!(stack.login_status(&stack.http(), "vera", fresh).await, 401);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_metrics_history_for_its_charts() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("hist-01");
    let vera = stack.http();
    stack.login(&vera, "vera").await;
    let url = format!("{}/api/v1/nodes/hist-01/metrics", stack.url);
    let body: serde_json::Value = eventually("heartbeats in the history", || async {
        let answer = vera
            .get(&url)
            .query(&[("range", "10m"), ("step", "5s"), ("metrics", "cpu,mem")])
            .send()
            .await
            .ok()?;
        if answer.status() != 200 {
            return None;
        }
        let body: serde_json::Value = answer.json().await.ok()?;
        let beats: u64 = body["samples"]
            .as_array()?
            .iter()
            .filter_map(|n| n.as_u64())
            .sum();
        (beats >= 2).then_some(body)
    })
    .await;
    assert_eq!(body["hostname"], "hist-01");
    assert_eq!(body["step_ms"], 5000);
    assert_eq!(body["resolution"], "raw");
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["metric"], "cpu");
    assert!(
        series[1]["avg"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.is_number())
    );

    // Bad input: clear 400s, and an unknown node a 404.
    for (query, says) in [
        (vec![("range", "soon")], "range"),
        (
            vec![("range", "1h"), ("metrics", "cpu,ram")],
            "unknown metric",
        ),
        (vec![("range", "1h"), ("step", "0s")], "step"),
        (vec![("range", "0s")], "range"),
        (vec![], "range"),
    ] {
        let answer = vera.get(&url).query(&query).send().await.unwrap();
        let (status, code, message) = error_of(answer).await;
        assert_eq!(status, 400, "{query:?}: {code} {message}");
        assert!(message.contains(says), "{query:?}: {message}");
    }
    let answer = vera
        .get(format!(
            "{}/api/v1/nodes/nowhere/metrics?range=1h",
            stack.url
        ))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(answer).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    stack.shutdown().await;
}
