//! `tether-enroll-rate`: how many enrollments a second core accepts with auto-approve.
//!
//! Each enrollment is what a new machine does: a QUIC connection of its own, a signed `Enroll`,
//! and core's answer (RSA verify, nonce stored, node written through the batching writer, the
//! agent secret encrypted to the node's key). The node's own RSA work (signing, decrypting the
//! secret) is not what is measured, so the requests are signed before the clock starts and the
//! secret is not decrypted; otherwise one client process on the same machine would be the limit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use tether_benches::sim;
use tether_certs::node_key::NodeKey;
use tether_wire::NodeId;
use tether_wire::control::EnrollRequest;
use tether_wire::token::JoinToken;

/// Enroll COUNT new nodes as fast as core accepts them (core must run with --auto-approve), and
/// print the rate as JSON on stdout.
#[derive(Debug, Parser)]
#[command(name = "tether-enroll-rate", version, about)]
struct Cli {
    /// Core's address, HOST:PORT (default: the token's).
    #[arg(long)]
    core: Option<String>,
    /// Join token (`tether-core key show`).
    #[arg(long, env = "TETHER_TOKEN", hide_env_values = true)]
    token: String,
    /// Enrollments to make (each a new node id). All are stamped once, before signing: signing
    /// and sending them must fit in core's clock window (`max_clock_skew`, 120 s), or the last
    /// are refused for clock skew (tens of thousands fit).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// UDP endpoints to spread the connections over.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Where the simulated nodes' RSA key is cached (shared with tether-loadgen).
    #[arg(long, default_value = "tether-loadgen-state")]
    state_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let token = JoinToken::parse(&cli.token).context("--token")?;
    let key = tether_benches::loadgen::load_or_create_key(&cli.state_dir)?;
    let core_text = cli.core.clone().unwrap_or_else(|| token.core_addr.clone());

    // Sign everything first, on every CPU: RSA signing is the node's cost, not core's.
    let signing = Instant::now();
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .try_into()?;
    let requests = sign_all(&token, &key, cli.count, now_secs);
    eprintln!(
        "tether-enroll-rate: {} requests signed in {:.1}s",
        requests.len(),
        signing.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let core: SocketAddr = tokio::net::lookup_host(&core_text)
            .await
            .with_context(|| format!("resolving {core_text}"))?
            .next()
            .with_context(|| format!("{core_text} has no address"))?;
        let endpoints = (0..cli.endpoints.max(1))
            .map(|_| sim::client_endpoint(&token))
            .collect::<Result<Vec<_>, _>>()?;
        let queue = Arc::new(Mutex::new(requests));
        let failures = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..cli.concurrency.max(1) {
            let endpoint = endpoints[worker % endpoints.len()].clone();
            let (queue, failures) = (queue.clone(), failures.clone());
            workers.spawn(async move {
                let mut approved = 0u64;
                loop {
                    let next = queue.lock().expect("not poisoned").pop();
                    let Some(request) = next else { break };
                    match sim::enroll_only(&endpoint, core, request).await {
                        Ok(()) => approved += 1,
                        Err(e) => {
                            *failures
                                .lock()
                                .expect("not poisoned")
                                .entry(e.to_string())
                                .or_default() += 1;
                        }
                    }
                }
                approved
            });
        }
        let approved: u64 = workers.join_all().await.into_iter().sum();
        let elapsed = started.elapsed().as_secs_f64();
        for endpoint in &endpoints {
            endpoint.wait_idle().await;
        }
        let report = serde_json::json!({
            "count": cli.count,
            "approved": approved,
            "failures": *failures.lock().expect("not poisoned"),
            "elapsed_s": elapsed,
            "approved_per_s": approved as f64 / elapsed,
            "concurrency": cli.concurrency,
        });
        println!("{report}");
        anyhow::Ok(())
    })
}

fn sign_all(token: &JoinToken, key: &NodeKey, count: usize, now_secs: i64) -> Vec<EnrollRequest> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine = per_thread.min(count.saturating_sub(t * per_thread));
                scope.spawn(move || {
                    (0..mine)
                        .map(|_| sim::enroll_request(token, key, NodeId::random(), now_secs))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}
