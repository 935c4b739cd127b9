//! The bridge's one QUIC connection to core, made again whenever it drops (core restarted, the
//! network went away): requests meanwhile are answered 503 `core_unreachable`, and live pages
//! are told `reconnecting`, then resume by themselves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_certs::identity::AdminIdentity;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Whether the bridge is connected to core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connected: requests go through.
    Connected,
    /// Not connected: trying again.
    Reconnecting,
}

impl LinkState {
    /// `connected` or `reconnecting`, as pages and `/health` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connected => "connected",
            LinkState::Reconnecting => "reconnecting",
        }
    }
}

/// The connection, as handlers see it.
#[derive(Debug)]
pub(crate) struct CoreLink {
    current: Mutex<Option<Arc<AdminClient>>>,
    state: watch::Sender<LinkState>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Waits between attempts: from 250 ms, doubling, at most 5 s.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(5);

impl CoreLink {
    /// Starts connecting (and reconnecting) in the background until `stop`.
    pub(crate) fn spawn(
        identity: AdminIdentity,
        core: Option<String>,
        stop: CancellationToken,
    ) -> Arc<CoreLink> {
        let (state, _) = watch::channel(LinkState::Reconnecting);
        let link = Arc::new(CoreLink {
            current: Mutex::new(None),
            state,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(link.clone(), identity, core, stop));
        *link.task.lock().expect("not poisoned") = Some(task);
        link
    }

    /// The connection, if there is one now.
    pub(crate) fn client(&self) -> Option<Arc<AdminClient>> {
        self.current.lock().expect("not poisoned").clone()
    }

    pub(crate) fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Follows the state (live pages say "reconnecting").
    pub(crate) fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    /// Closes the connection (the reconnecting task has been told to stop).
    pub(crate) async fn close(&self) {
        let task = self.task.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let client = self.current.lock().expect("not poisoned").take();
        if let Some(client) = client.and_then(|c| Arc::try_unwrap(c).ok()) {
            client.close().await;
        }
    }

    fn set(&self, client: Option<Arc<AdminClient>>) {
        let state = if client.is_some() {
            LinkState::Connected
        } else {
            LinkState::Reconnecting
        };
        *self.current.lock().expect("not poisoned") = client;
        self.state.send_replace(state);
    }
}

async fn run(
    link: Arc<CoreLink>,
    identity: AdminIdentity,
    core: Option<String>,
    stop: CancellationToken,
) {
    let mut wait = FIRST_RETRY;
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            attempt = connect(&identity, core.as_deref()) => attempt,
        };
        match attempt {
            Ok(client) => {
                info!("connected to core");
                wait = FIRST_RETRY;
                failures = 0;
                let client = Arc::new(client);
                link.set(Some(client.clone()));
                let reason = tokio::select! {
                    () = stop.cancelled() => return,
                    reason = client.closed() => reason,
                };
                link.set(None);
                warn!(%reason, "lost the connection to core; reconnecting");
            }
            Err(reason) => {
                failures += 1;
                // Said once, then every 20th attempt (about every 100 s): core may be down for
                // long, and the log should not fill with the same line.
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(%reason, attempts = failures, "cannot reach core; retrying");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(LAST_RETRY);
    }
}

/// Connects and checks that the identity is a bridge's: with any other role every login
/// would be refused, which is better said once here.
async fn connect(identity: &AdminIdentity, core: Option<&str>) -> Result<AdminClient, String> {
    let client = AdminClient::connect(identity, core)
        .await
        .map_err(|e| e.to_string())?;
    let answer = client
        .request(&AdminRequest::Ping)
        .await
        .map_err(|e| e.to_string())?;
    match answer.first() {
        Some(AdminResponse::Pong { role, admin, .. }) if *role != Role::Bridge => {
            client.close().await;
            Err(format!(
                "the bridge's identity is user {admin:?} with role {role}; the bridge needs an \
                 identity of role bridge: tether-core admin issue NAME --role bridge --out FILE"
            ))
        }
        _ => Ok(client),
    }
}
