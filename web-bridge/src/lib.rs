//! # tether-web-bridge
//!
//! The browser side of Tether: `tether-bridge` serves the pages (embedded at compile time from
//! `assets/`), a small JSON API under `/api/v1` and WebSockets for live figures, command output
//! and terminals, and turns each into admin requests to core over QUIC (through
//! [`tether_client`]). Its own identity has the role `bridge`, which can do nothing alone: it
//! logs users in by password and forwards every other request inside the user's session
//! (`AsUser`), naming the browser's address and user agent, so core authorizes and audits each
//! as that user. See `docs/web.md` for the API and the pages.
//!
//! What it must never do: link the store or the server (it depends on `tether-client`,
//! `tether-wire` and `tether-certs` only), keep state that matters across a restart (the
//! session cookie holds core's session token; nothing else is remembered), decide who may do
//! what (core does; the pages only leave out buttons core would refuse), or write a cookie, a
//! token or a password into a log line.

mod api;
mod assets;
mod config;
mod link;
mod security;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{BridgeConfig, Tls};
pub use link::LinkState;

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration does not make sense (an origin that is not a URL, plain HTTP on a
    /// public address without an allowed origin, ...).
    #[error("{0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The TLS certificate or key could not be read.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running bridge.
#[derive(Debug)]
pub struct Bridge {
    local_addr: SocketAddr,
    url: String,
    stop: CancellationToken,
    server: JoinHandle<()>,
    link: Arc<link::CoreLink>,
}

impl Bridge {
    /// Starts serving on `config.listen` and connecting to core (in the background, again and
    /// again while core is away: requests meanwhile get 503 `core_unreachable`).
    pub async fn start(config: BridgeConfig) -> Result<Bridge, BridgeError> {
        let listen_error = |e: std::io::Error| BridgeError::Listen {
            addr: config.listen,
            reason: e.to_string(),
        };
        let std_listener = std::net::TcpListener::bind(config.listen).map_err(listen_error)?;
        std_listener.set_nonblocking(true).map_err(listen_error)?;
        let local_addr = std_listener.local_addr().map_err(listen_error)?;
        // The origins follow from the address actually bound (a port 0 becomes a real one).
        let settings = config::Settings::new(&config, local_addr)?;
        let stop = CancellationToken::new();
        let link =
            link::CoreLink::spawn(config.identity.clone(), config.core.clone(), stop.clone());
        let state = api::AppState::new(link.clone(), settings);
        let router = api::router(state);
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{local_addr}/");
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let server = match &config.tls {
            Some(tls) => {
                let rustls = config::tls_config(tls)?;
                let server = axum_server::from_tcp_rustls(
                    std_listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls)),
                )
                .map_err(listen_error)?
                .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        warn!(error = %e, "the bridge's HTTPS server stopped");
                    }
                })
            }
            None => {
                let server = axum_server::from_tcp(std_listener)
                    .map_err(listen_error)?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        warn!(error = %e, "the bridge's HTTP server stopped");
                    }
                })
            }
        };
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                handle.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
            });
        }
        info!(%url, "web bridge listening");
        Ok(Bridge {
            local_addr,
            url,
            stop,
            server,
            link,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL a browser on this machine opens (`http://127.0.0.1:8080/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether it is connected to core now.
    pub fn link_state(&self) -> LinkState {
        self.link.state()
    }

    /// Stops serving (open WebSockets close) and disconnects from core.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.server.await;
        self.link.close().await;
    }
}
