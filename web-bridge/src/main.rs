//! `tether-bridge`: the web bridge as a service. See the crate's docs and `docs/web.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tether_certs::identity::AdminIdentity;
use tether_web_bridge::{Bridge, BridgeConfig, Tls};

/// Serves Tether's web pages and API, and forwards what users do to core over QUIC, as them.
///
/// Its identity has the role `bridge` (make one with `tether-core admin issue NAME --role bridge
/// --out FILE`, or `tether user add NAME --role bridge` and `tether user cert NAME`): it can
/// only log users in by password and act within their sessions; core checks and audits every
/// request as the user.
#[derive(Debug, Parser)]
#[command(name = "tether-bridge", version)]
struct Args {
    /// Core's QUIC address, HOST:PORT [default: the one in the identity file].
    #[arg(long, env = "TETHER_CORE", value_name = "HOST:PORT")]
    core: Option<String>,
    /// The bridge's identity file (role bridge).
    #[arg(long, env = "TETHER_BRIDGE_IDENTITY", value_name = "FILE")]
    identity: PathBuf,
    /// Where browsers connect. Plain HTTP is meant for loopback (or behind a TLS reverse proxy).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Certificate chain (PEM) for HTTPS; with --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for HTTPS; with --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// An origin pages may come from besides the bridge's own address, as the browser's
    /// address bar shows it (https://tether.example.com): the address behind a reverse proxy.
    /// Repeat for several. State-changing requests and WebSockets from other origins are
    /// refused.
    #[arg(long = "allowed-origin", value_name = "URL")]
    allowed_origins: Vec<String>,
    /// How often live pages are refreshed.
    #[arg(long, default_value = "2s", value_parser = tether_wire::units::parse_duration, value_name = "DURATION")]
    refresh: Duration,
    /// WebSockets (live pages, terminals, command runs) one login session may hold open.
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_sockets_per_session: usize,
    /// A reverse proxy's address whose X-Forwarded-For header names the browser (repeat for
    /// several). Without it the browser's address is the TCP peer's, and behind a proxy every
    /// browser shares the proxy's address in login throttling and the audit log.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// How the bridge logs on stderr: text, or json (one object per line). TETHER_LOG filters
    /// (default info).
    #[arg(long, default_value = "text", value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tether_log::init(args.log_format.parse().unwrap_or_default());
    let identity = AdminIdentity::load(&args.identity)
        .with_context(|| format!("reading the identity {}", args.identity.display()))?;
    let mut config = BridgeConfig::new(identity);
    config.core = args.core;
    config.listen = args.listen;
    config.tls = args
        .tls_cert
        .zip(args.tls_key)
        .map(|(cert, key)| Tls { cert, key });
    config.allowed_origins = args.allowed_origins;
    config.watch_interval = args.refresh;
    config.max_sockets_per_session = args.max_sockets_per_session;
    config.trusted_proxies = args.trusted_proxies;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let bridge = Bridge::start(config).await?;
        eprintln!("tether-bridge: serving {}", bridge.url());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("stopping…");
        bridge.shutdown().await;
        Ok(())
    })
}
