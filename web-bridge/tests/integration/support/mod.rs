//! A whole Tether on loopback for the bridge's tests: a real core (redb in a temp dir, QUIC on
//! 127.0.0.1:0), real agents in this process, the bridge on 127.0.0.1:0, users with passwords,
//! and a real Chromium driven over WebDriver (chromedriver, fantoccini).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tether_certs::identity::AdminIdentity;
use tether_client::AdminClient;
use tether_core::Core;
use tether_core::config::CoreConfig;
use tether_web_bridge::{Bridge, BridgeConfig};
use tether_wire::admin::{AdminRequest, Role};
use tether_wire::token::JoinToken;
use tether_wire::users::{NewUser, Secret};

/// How long anything may take before a test gives up (generous: CI machines are shared).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `check` until it gives a value.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Core, agents, the bridge.
pub struct Stack {
    pub core: Option<Core>,
    pub core_addr: SocketAddr,
    pub bridge: Option<Bridge>,
    pub url: String,
    pub admin: AdminClient,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    bridge_identity: AdminIdentity,
}

/// An agent running in this process.
pub struct Node {
    pub hostname: String,
    pub cancel: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), tether_node::NodeError>>,
}

impl Node {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(PATIENCE, self.task).await;
    }
}

impl Stack {
    /// Core (1 s heartbeats, offline after 3 s; `tweak` for more), users `alice` (admin),
    /// `oscar` (operator) and `vera` (viewer) with [`PASSWORD`], a bridge user, and the bridge.
    pub async fn start(tweak: impl FnOnce(&mut CoreConfig)) -> Stack {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut config = CoreConfig::with_data_dir(dir.path().join("core"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.heartbeat_interval = Duration::from_secs(1);
        config.offline_after = Duration::from_secs(3);
        config.hello_timeout = Duration::from_secs(2);
        config.last_seen_flush = Duration::from_secs(1);
        config.history_flush = Duration::from_millis(200);
        // Tests log in again and again from one address.
        config.login_delay = Duration::from_millis(10);
        tweak(&mut config);
        let core = Core::start(config).await.expect("core starts");
        let core_addr = core.local_addr();
        let identity = AdminIdentity::load(&dir.path().join("core/admin.identity")).unwrap();
        let admin = AdminClient::connect(&identity, Some(&core_addr.to_string()))
            .await
            .unwrap();
        for (name, role) in [
            ("alice", Role::Admin),
            ("oscar", Role::Operator),
            ("vera", Role::Viewer),
        ] {
            add_user(&admin, name, role, Some(PASSWORD)).await;
        }
        add_user(&admin, "web", Role::Bridge, None).await;
        let (bridge_identity, _) = admin
            .issue_identity(&identity, "web", Duration::from_secs(86_400))
            .await
            .unwrap();
        let mut stack = Stack {
            core: Some(core),
            core_addr,
            bridge: None,
            url: String::new(),
            admin,
            dir,
            nodes: Vec::new(),
            bridge_identity,
        };
        stack.start_bridge(|_| {}).await;
        stack
    }

    /// (Re)starts the bridge, tweaked.
    pub async fn start_bridge(&mut self, tweak: impl FnOnce(&mut BridgeConfig)) {
        if let Some(bridge) = self.bridge.take() {
            bridge.shutdown().await;
        }
        let mut config = BridgeConfig::new(self.bridge_identity.clone());
        config.core = Some(self.core_addr.to_string());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.watch_interval = Duration::from_millis(500);
        tweak(&mut config);
        let bridge = Bridge::start(config).await.expect("bridge starts");
        self.url = bridge.url().trim_end_matches('/').to_string();
        self.bridge = Some(bridge);
        let health = format!("{}/health", self.url);
        eventually("the bridge connected to core", || async {
            let answer = reqwest::get(&health).await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
    }

    /// The bridge's identity (role bridge).
    pub fn bridge_identity(&self) -> &AdminIdentity {
        &self.bridge_identity
    }

    pub fn token(&self) -> JoinToken {
        let mut token = self.core.as_ref().unwrap().data_dir().join_token().unwrap();
        token.core_addr = self.core_addr.to_string();
        token
    }

    /// Starts an agent named `hostname` (it enrolls; whether it is approved at once is core's
    /// setting).
    pub fn add_node(&mut self, hostname: &str) -> usize {
        let state = self.dir.path().join(format!("node-{hostname}"));
        let mut config = tether_node::NodeConfig::with_state_dir(state.clone());
        config.core_addr = Some(self.core_addr.to_string());
        config.token = Some(self.token());
        config.hostname = Some(hostname.to_string());
        config.reconnect_max = Duration::from_secs(1);
        config.machine_id_file = Some(state.join("machine-id"));
        // A shell that reads no profile: this machine's may do anything (pyenv's rehash waits
        // on a lock a killed shell can leave behind), and the tests need only a shell.
        config.shell = Some("/bin/bash --noprofile --norc".to_string());
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("machine-id"), uuid_text(hostname)).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(tether_node::run(config, cancel.clone().cancelled_owned()));
        self.nodes.push(Node {
            hostname: hostname.to_string(),
            cancel,
            task,
        });
        self.nodes.len() - 1
    }

    pub async fn shutdown(mut self) {
        if let Some(bridge) = self.bridge.take() {
            bridge.shutdown().await;
        }
        for node in self.nodes.drain(..) {
            node.stop().await;
        }
        if let Some(core) = self.core.take() {
            core.shutdown().await;
        }
    }

    /// An HTTP client with its own cookie jar, as one browser.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap()
    }

    /// Logs `user` in through the API; the client keeps the cookie.
    pub async fn login(&self, http: &reqwest::Client, user: &str) {
        assert_eq!(
            self.login_status(http, user, PASSWORD).await,
            200,
            "{user} logs in"
        );
    }

    /// Logs in with `password`; the answer's status, once past core's throttle, which answers
    /// 429 for a moment after a failed login from the same address (as a test's bad requests).
    pub async fn login_status(&self, http: &reqwest::Client, user: &str, password: &str) -> u16 {
        eventually("a login past the throttle", || async {
            let status = http
                .post(format!("{}/api/v1/auth/login", self.url))
                .json(&serde_json::json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (status != 429).then_some(status)
        })
        .await
    }
}

/// A stable machine id per test host, so two agents in one process count as two machines.
fn uuid_text(seed: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(seed.as_bytes());
    hex(&hash[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn add_user(admin: &AdminClient, name: &str, role: Role, password: Option<&str>) {
    admin
        .request(&AdminRequest::UserAdd(NewUser {
            name: name.to_string(),
            role,
            email: None,
            password: password.map(Secret::new),
        }))
        .await
        .unwrap();
}

/// A Chromium driven over WebDriver; quits on drop.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where Debian's packages put them (`.ci/run` installs `chromium` and `chromium-driver`).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium with a fresh profile. With
    /// `TETHER_REQUIRE_CHROMIUM` set (`.ci/run` sets it) a missing Chromium fails the test;
    /// elsewhere the test is skipped with a note.
    pub async fn start() -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            if std::env::var_os("TETHER_REQUIRE_CHROMIUM").is_some() {
                panic!("{CHROMEDRIVER} or {CHROMIUM} is missing: install chromium chromium-driver");
            }
            eprintln!(
                "SKIPPED: {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium \
                 chromium-driver)"
            );
            return None;
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        // Its own process group, so that Chromium and its renderers go with it even when a
        // test fails before it could close the session.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver answers", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                fantoccini::ClientBuilder::new(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                )
                .capabilities(caps)
                .connect(&url)
                .await
                .ok()
            }
        })
        .await;
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Saves a screenshot as `target/web-shots/NAME.png` (look at them).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-shots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Logs in through the login form.
    pub async fn login(&self, url: &str, user: &str, password: &str) {
        self.client.goto(&format!("{url}/#/login")).await.unwrap();
        self.submit_login(user, password).await;
    }

    /// Fills in and sends the login form the page shows (wherever the page was going).
    pub async fn submit_login(&self, user: &str, password: &str) {
        use fantoccini::Locator;
        let form = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("form#login"))
            .await
            .unwrap();
        let name = form
            .find(Locator::Css("input[name=username]"))
            .await
            .unwrap();
        name.clear().await.unwrap();
        name.send_keys(user).await.unwrap();
        let pass = form
            .find(Locator::Css("input[name=password]"))
            .await
            .unwrap();
        pass.clear().await.unwrap();
        pass.send_keys(password).await.unwrap();
        form.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Logs `user` in with [`PASSWORD`] and waits until the header names them.
    pub async fn log_in_as(&self, url: &str, user: &str) {
        self.login(url, user, PASSWORD).await;
        self.wait_text("#whoami", &format!("{user} logged in"), |t| {
            t.contains(user)
        })
        .await;
    }

    /// Opens `url` in the tab.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Types `text` into the element matching `css`, once it exists.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Clicks the element matching `css`, once it exists.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// The text of the first element matching `css`, once it exists.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the element matching `css` has text satisfying `check`.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        eventually(what, || async {
            let element = self.client.find(fantoccini::Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            check(&text).then_some(text)
        })
        .await
    }

    /// Whether an element matching `css` exists now.
    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Ends the session politely; dropping then ends the processes.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started (the group is the driver's pid).
        if let Some(group) = rustix::process::Pid::from_raw(self.driver.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
