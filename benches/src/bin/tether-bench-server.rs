//! `tether-bench-server`: the server side of side-by-side measurements. It runs either the real
//! core (in process, auto-approve) or a bare quinn server that accepts connections and only
//! reads datagrams, and prints once a second what it has taken in, so that a script can compare
//! the two under the same load from `tether-loadgen` (`--bare` for the bare server).
//!
//! Every line on stdout is one JSON object: seconds since start, heartbeats (core: accepted;
//! bare: datagrams read), connections, CPU seconds used by the whole process, resident KiB.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use quinn::crypto::rustls::QuicServerConfig;
use tether_benches::cpu_seconds;
use tether_certs::ca::CoreCa;
use tether_core::config::CoreConfig;
use tether_wire::control::JoinSecret;
use tether_wire::token::JoinToken;

/// Reads one of the server's counters.
type Counter = Box<dyn Fn() -> u64>;

/// What to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The real core: enrollment, authentication, heartbeat handling, the store.
    Core,
    /// quinn alone, with core's transport settings: accept, read datagrams, count them.
    Bare,
    /// quinn alone with its default transport settings.
    BareDefault,
}

/// Serve core or a bare quinn server for a benchmark, printing counters every second.
#[derive(Debug, Parser)]
#[command(name = "tether-bench-server", version, about)]
struct Cli {
    /// What to serve.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Data directory (core: its data; bare: nothing is kept).
    #[arg(long)]
    data: PathBuf,
    /// Write the join token here once listening (bare: a token with a throwaway secret, which
    /// carries the fingerprint clients pin).
    #[arg(long)]
    token_file: PathBuf,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tether_benches::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let (heartbeats, connections): (Counter, Counter) = match cli.mode {
            Mode::Core => {
                let mut config = CoreConfig::with_data_dir(cli.data.clone());
                // The token carries the listening address, so port 0 is resolved first.
                config.listen = match cli.listen.port() {
                    0 => std::net::UdpSocket::bind(cli.listen)?.local_addr()?,
                    _ => cli.listen,
                };
                config.auto_approve = true;
                config.max_pending_applications = 1_000_000;
                let core = Arc::new(tether_core::Core::start(config).await?);
                let token = core.data_dir().join_token()?;
                write_token(&cli.token_file, &token)?;
                let (a, b) = (core.clone(), core);
                (
                    Box::new(move || a.heartbeats_received()),
                    Box::new(move || b.connected_nodes() as u64),
                )
            }
            Mode::Bare | Mode::BareDefault => {
                let counters = Arc::new(BareCounters::default());
                bare_server(&cli, counters.clone()).await?;
                let (a, b) = (counters.clone(), counters);
                (
                    Box::new(move || a.datagrams.load(Ordering::Relaxed)),
                    Box::new(move || b.connections.load(Ordering::Relaxed)),
                )
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
            println!(
                "{}",
                serde_json::json!({
                    "elapsed_s": started.elapsed().as_secs_f64(),
                    "heartbeats": heartbeats(),
                    "connections": connections(),
                    "cpu_s": cpu_seconds(),
                    "rss_kib": rss_kib(),
                })
            );
        }
    })
}

fn write_token(path: &std::path::Path, token: &JoinToken) -> anyhow::Result<()> {
    tether_certs::files::write_private_file(path, token.encode().as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[derive(Debug, Default)]
struct BareCounters {
    datagrams: AtomicU64,
    connections: AtomicU64,
}

/// A quinn server with core's TLS (same certificates, ALPNs) that reads datagrams and nothing
/// else.
async fn bare_server(cli: &Cli, counters: Arc<BareCounters>) -> anyhow::Result<()> {
    let ca = CoreCa::generate("bench")?;
    let tls = tether_certs::tls::server_config(ca.cert_der(), ca.issue_server(&[])?)?;
    let mut server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(Arc::new(tls))?));
    let core_config = CoreConfig::with_data_dir(cli.data.clone());
    if cli.mode == Mode::Bare {
        server.transport_config(Arc::new(tether_core::server::transport_config(
            &core_config,
        )?));
    }
    let socket = tether_core::udp::bind_logged(cli.listen, core_config.udp_buffer)?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    let addr = endpoint.local_addr()?;
    let token = JoinToken {
        core_addr: addr.to_string(),
        ca_fingerprint: ca.fingerprint(),
        secret: JoinSecret::from([0; 32]),
    };
    write_token(&cli.token_file, &token)?;
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            // Accepted before spawning, as core does: the task then holds only `Connecting`.
            let Ok(connecting) = incoming.accept() else {
                continue;
            };
            let counters = counters.clone();
            tokio::spawn(async move {
                let Ok(connection) = connecting.await else {
                    return;
                };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                while connection.read_datagram().await.is_ok() {
                    counters.datagrams.fetch_add(1, Ordering::Relaxed);
                }
                counters.connections.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    Ok(())
}
