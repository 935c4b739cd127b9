//! `tether-web-bench`: the web bridge measured from the outside, as browsers use it. Each
//! subcommand prints one JSON document on stdout; `benches/scripts/web-bench.sh` and
//! `web-fleet.sh` start core, nodes and the bridge and call it (see `docs/benchmarks.md`).
//!
//! - `tty-flood`: a command's output through the page's terminal (xterm.js in headless
//!   Chromium, with the page's flow control), timed inside the page; the bridge's RSS sampled
//!   meanwhile.
//! - `tty-latency`: single keystrokes given to xterm.js (`term.input`, which fires `onData` as a
//!   typed key does), each timed inside the page until xterm.js has parsed the echo.
//! - `first-rows`: how long the nodes page takes to show its first rows.
//! - `api`: `GET /api/v1/nodes` and `/api/v1/overview` as one client sees them.
//! - `watch`: the nodes page and the dashboard open in two windows for a while; the bridge's RSS,
//!   core's CPU and RSS and each page's JS heap sampled along the way.
//! - `sockets`: the bridge's RSS with N live sockets or terminals open (tokio-tungstenite
//!   clients, one login session each).
//!
//! Chromium is Debian's (`/usr/bin/chromium` driven by `/usr/bin/chromedriver`), as in the
//! bridge's browser tests.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

#[derive(Debug, Parser)]
#[command(name = "tether-web-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the bridge is and who logs in.
#[derive(Debug, Clone, Args)]
struct Target {
    /// The bridge's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// The user who logs in (by password).
    #[arg(long, default_value = "alice")]
    user: String,
    /// Their password.
    #[arg(long, env = "TETHER_WEB_PASSWORD", hide_env_values = true)]
    password: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Output of `head -c BYTES /dev/SOURCE | base64` through the page's terminal.
    TtyFlood {
        #[command(flatten)]
        target: Target,
        /// The node's id.
        #[arg(long)]
        node: String,
        /// Bytes read from the source (base64 makes about 1.35 times as many).
        #[arg(long, default_value_t = 50_000_000)]
        bytes: u64,
        /// urandom or zero.
        #[arg(long, default_value = "urandom")]
        source: String,
        /// Runs, in one terminal.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// The bridge's pid, to sample its RSS every 100 ms during each run.
        #[arg(long)]
        bridge_pid: Option<u32>,
    },
    /// Keystroke to echo inside the page.
    TtyLatency {
        #[command(flatten)]
        target: Target,
        /// The node's id.
        #[arg(long)]
        node: String,
        /// Timed keys.
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Untimed keys first.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Shortest pause between keys, ms.
        #[arg(long, default_value_t = 5)]
        gap_min_ms: u64,
        /// Longest pause between keys, ms.
        #[arg(long, default_value_t = 20)]
        gap_max_ms: u64,
    },
    /// Time to the nodes page's first rows: a fresh page load of #/nodes, and a move from the
    /// dashboard to #/nodes inside the loaded app.
    FirstRows {
        #[command(flatten)]
        target: Target,
        /// Runs of each kind.
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// `GET /api/v1/nodes` (sorted by hostname, by last seen, with a search) and
    /// `/api/v1/overview`, timed one after another on one kept-alive connection.
    Api {
        #[command(flatten)]
        target: Target,
        /// Requests of each kind.
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// The search text (part of some hostnames).
        #[arg(long, default_value = "sim-4242")]
        search: String,
    },
    /// The nodes page and the dashboard open with live updates for DURATION seconds.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Seconds to keep them open.
        #[arg(long, default_value_t = 600)]
        duration: u64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 30)]
        every: u64,
        /// Seconds of core's CPU measured first, with no page open.
        #[arg(long, default_value_t = 60)]
        baseline: u64,
        #[arg(long)]
        bridge_pid: u32,
        #[arg(long)]
        core_pid: u32,
    },
    /// The bridge's RSS with N sockets open, for each N in COUNTS.
    Sockets {
        #[command(flatten)]
        target: Target,
        /// live (each watches the overview and a page of 50 nodes) or tty (each a shell).
        #[arg(long, value_enum)]
        kind: Kind,
        /// The node's id (tty).
        #[arg(long)]
        node: Option<String>,
        /// Socket counts, ascending.
        #[arg(long, value_delimiter = ',', default_value = "0,10,50")]
        counts: Vec<usize>,
        /// Seconds to let things settle before each reading.
        #[arg(long, default_value_t = 10)]
        settle: u64,
        #[arg(long)]
        bridge_pid: u32,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Live,
    Tty,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tether_benches::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async move {
        match cli.command {
            Cmd::TtyFlood {
                target,
                node,
                bytes,
                source,
                runs,
                bridge_pid,
            } => tty_flood(&target, &node, bytes, &source, runs, bridge_pid).await,
            Cmd::TtyLatency {
                target,
                node,
                keys,
                warmup,
                gap_min_ms,
                gap_max_ms,
            } => tty_latency(&target, &node, keys, warmup, gap_min_ms, gap_max_ms).await,
            Cmd::FirstRows { target, runs } => first_rows(&target, runs).await,
            Cmd::Api {
                target,
                runs,
                search,
            } => api(&target, runs, &search).await,
            Cmd::Watch {
                target,
                duration,
                every,
                baseline,
                bridge_pid,
                core_pid,
            } => {
                watch(
                    &target,
                    Duration::from_secs(duration),
                    Duration::from_secs(every),
                    Duration::from_secs(baseline),
                    bridge_pid,
                    core_pid,
                )
                .await
            }
            Cmd::Sockets {
                target,
                kind,
                node,
                counts,
                settle,
                bridge_pid,
            } => {
                sockets(
                    &target,
                    kind,
                    node.as_deref(),
                    &counts,
                    Duration::from_secs(settle),
                    bridge_pid,
                )
                .await
            }
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

// ---- processes ---------------------------------------------------------------------------------

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// User and system CPU seconds PID has used.
fn proc_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields count from after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime: fields 14 and 15 of the line, the 12th and 13th after the name, in
    // clock ticks (USER_HZ, 100 on Linux).
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn spread(values: &[f64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({
        "min": sorted.first(),
        "median": percentile(&sorted, 50.0),
        "max": sorted.last(),
    })
}

// ---- the browser -------------------------------------------------------------------------------

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium over WebDriver, with a fresh profile; chromedriver ends on drop.
struct Browser {
    client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> anyhow::Result<Browser> {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        // A process group of its own, so that Chromium (chromedriver's child) ends with it even
        // when the session is not closed (an error): killing chromedriver alone orphans it.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
                    // performance.memory in bytes rather than coarse buckets; window.gc().
                    "--enable-precise-memory-info", "--js-flags=--expose-gc",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // Navigation returns at DOMContentLoaded, before the app's first requests answer.
        caps.insert("pageLoadStrategy".to_string(), json!("eager"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let attempt = fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            )
            .capabilities(caps.clone())
            .connect(&url)
            .await;
            match attempt {
                Ok(client) => break client,
                Err(error) if Instant::now() > deadline => {
                    bail!("chromedriver did not answer: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(Duration::from_secs(1800)),
                Some(Duration::from_secs(60)),
                None,
            ))
            .await?;
        Ok(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    async fn js_async(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute_async(script, args).await?)
    }

    /// Polls `script` (which returns something truthy when ready) every 50 ms.
    async fn until(&self, what: &str, script: &str, patience: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + patience;
        loop {
            let value = self.js(script, vec![]).await?;
            if !value.is_null() && value != json!(false) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs in through the login form and waits for the header to name the user.
    async fn login(&self, target: &Target) -> anyhow::Result<()> {
        use fantoccini::Locator;
        self.client.goto(&format!("{}/#/login", target.url)).await?;
        let form = self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("form#login"))
            .await?;
        let name = form.find(Locator::Css("input[name=username]")).await?;
        name.clear().await?;
        name.send_keys(&target.user).await?;
        let pass = form.find(Locator::Css("input[name=password]")).await?;
        pass.clear().await?;
        pass.send_keys(&target.password).await?;
        form.find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        let wanted = serde_json::to_string(&target.user)?;
        self.until(
            "the login",
            &format!(
                "const w = document.getElementById('whoami'); \
                 return !!w && w.textContent.includes({wanted});"
            ),
            Duration::from_secs(30),
        )
        .await?;
        Ok(())
    }

    /// Opens the page's terminal on `node` and waits until it is connected.
    async fn terminal(&self, target: &Target, node: &str) -> anyhow::Result<()> {
        self.client
            .goto(&format!("{}/#/terminal/{node}", target.url))
            .await?;
        self.until(
            "the terminal connected",
            "const s = document.getElementById('tty-status'); \
             return !!s && s.textContent.startsWith('connected') && !!window.term;",
            Duration::from_secs(30),
        )
        .await?;
        // The shell's first prompt.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends chromedriver's process group.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.driver);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.driver.wait();
    }
}

// ---- terminal throughput -----------------------------------------------------------------------

/// Installed once in the terminal page: counts the bytes given to `term.write` (and those not
/// yet parsed), the pause and resume frames the page sends, and notes when the marker line is
/// in xterm.js's buffer (checked in each write's callback, near the cursor).
const FLOOD_HOOKS: &str = r#"
const term = window.term;
if (!window.__bench) {
  const b = window.__bench = { bytes: 0, pending: 0, maxPending: 0, pauses: 0, resumes: 0,
                               marker: null, t0: 0, done: null, writes: 0 };
  const write = term.write.bind(term);
  const seen = () => {
    const buf = term.buffer.active;
    const y = buf.baseY + buf.cursorY;
    for (let i = Math.max(0, y - 3); i <= y; i++) {
      const line = buf.getLine(i);
      if (line && line.translateToString(true).trim() === b.marker) return true;
    }
    return false;
  };
  term.write = (data, cb) => {
    const n = data.length;
    b.bytes += n; b.writes += 1; b.pending += n;
    if (b.pending > b.maxPending) b.maxPending = b.pending;
    write(data, () => {
      b.pending -= n;
      if (b.marker && b.done === null && seen()) b.done = performance.now();
      if (cb) cb();
    });
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) {
    if (d instanceof Uint8Array && d.length === 1) {
      if (d[0] === 0x32) b.pauses += 1;
      if (d[0] === 0x33) b.resumes += 1;
    }
    return send.call(this, d);
  };
}
return true;
"#;

async fn tty_flood(
    target: &Target,
    node: &str,
    bytes: u64,
    source: &str,
    runs: u32,
    bridge_pid: Option<u32>,
) -> anyhow::Result<Value> {
    if !["urandom", "zero"].contains(&source) {
        bail!("--source is urandom or zero");
    }
    let browser = Browser::start().await?;
    browser.login(target).await?;
    browser.terminal(target, node).await?;
    browser.js(FLOOD_HOOKS, vec![]).await?;
    let mut results = Vec::new();
    for run in 1..=runs {
        let marker = format!("@@FLOOD-END-{run}@@");
        // The typed line shows the marker with quotes inside; only `echo`'s output matches.
        let command =
            format!("clear; head -c {bytes} /dev/{source} | base64; echo @@FLOOD''-END-{run}@@\r");
        let rss_before = bridge_pid.and_then(|pid| proc_kib(pid, "VmRSS"));
        browser
            .js(
                "const b = window.__bench; b.bytes = 0; b.writes = 0; b.maxPending = b.pending;
                 b.pauses = 0; b.resumes = 0; b.marker = arguments[0]; b.done = null;
                 b.t0 = performance.now(); window.term.input(arguments[1], true); return true;",
                vec![json!(marker), json!(command)],
            )
            .await?;
        let started = Instant::now();
        let mut rss_max = rss_before.unwrap_or(0);
        let mut rss_samples = Vec::new();
        let mut last_poll = Instant::now() - Duration::from_secs(1);
        let state = loop {
            if let Some(pid) = bridge_pid
                && let Some(rss) = proc_kib(pid, "VmRSS")
            {
                rss_max = rss_max.max(rss);
                rss_samples.push(rss);
            }
            if last_poll.elapsed() >= Duration::from_millis(500) {
                last_poll = Instant::now();
                let state = browser.js("return window.__bench;", vec![]).await?;
                if !state["done"].is_null() {
                    break state;
                }
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("run {run}: the marker never reached the terminal");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let seconds =
            (state["done"].as_f64().unwrap_or(0.0) - state["t0"].as_f64().unwrap_or(0.0)) / 1000.0;
        let written = state["bytes"].as_u64().unwrap_or(0);
        let heap = browser
            .js(
                "window.gc && window.gc(); return performance.memory.usedJSHeapSize;",
                vec![],
            )
            .await?;
        let rss_after = bridge_pid.and_then(|pid| proc_kib(pid, "VmRSS"));
        let result = json!({
            "run": run,
            "bytes_to_xterm": written,
            "writes": state["writes"],
            "seconds": seconds,
            "mb_per_s": written as f64 / seconds / 1e6,
            "pauses_sent": state["pauses"],
            "resumes_sent": state["resumes"],
            "max_unparsed_bytes": state["maxPending"],
            "bridge_rss_kib": {"before": rss_before, "max": rss_max, "after": rss_after,
                               "samples": rss_samples.len()},
            "js_heap_after_gc_bytes": heap,
        });
        eprintln!("tty-flood run {run}: {result}");
        results.push(result);
    }
    browser.close().await;
    let rates: Vec<f64> = results
        .iter()
        .filter_map(|r| r["mb_per_s"].as_f64())
        .collect();
    Ok(json!({
        "what": "web terminal flood: head -c BYTES /dev/SOURCE | base64 in xterm.js, headless Chromium",
        "bytes": bytes, "source": source,
        "mb_per_s": spread(&rates),
        "runs": results,
    }))
}

// ---- keystroke latency -------------------------------------------------------------------------

/// Types `keys + warmup` keys with `term.input` and times each until xterm.js has parsed the
/// next write (`onWriteParsed`); the remote side is `stty raw -echo; exec cat`, so that write is
/// the echo and nothing else.
const LATENCY: &str = r#"
const [keys, warmup, gapMin, gapMax] = arguments;
const done = arguments[arguments.length - 1];
const term = window.term;
const samples = [];
let waiting = null;
const sub = term.onWriteParsed(() => {
  if (waiting) { const w = waiting; waiting = null; w(performance.now()); }
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  for (let i = 0; i < warmup + keys; i++) {
    const echoed = new Promise((r) => { waiting = r; });
    const t0 = performance.now();
    term.input('x', true);
    const t1 = await Promise.race([echoed, sleep(5000).then(() => -1)]);
    if (t1 < 0) { sub.dispose(); done({ error: 'no echo after key ' + i }); return; }
    if (i >= warmup) samples.push((t1 - t0) * 1000);
    await sleep(gapMin + Math.random() * (gapMax - gapMin));
  }
  sub.dispose();
  done({ samples });
})();
"#;

async fn tty_latency(
    target: &Target,
    node: &str,
    keys: usize,
    warmup: usize,
    gap_min_ms: u64,
    gap_max_ms: u64,
) -> anyhow::Result<Value> {
    let browser = Browser::start().await?;
    browser.login(target).await?;
    browser.terminal(target, node).await?;
    browser
        .js(
            "window.term.input(arguments[0], true); return true;",
            vec![json!("clear; stty raw -echo; echo LAT''-READY; exec cat\r")],
        )
        .await?;
    browser
        .until(
            "cat ready",
            "const b = window.term.buffer.active; const out = [];
             for (let i = 0; i < b.length; i++) {
               const l = b.getLine(i); if (l && l.translateToString(true).trim() === 'LAT-READY') return true;
             }
             return false;",
            Duration::from_secs(30),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = browser
        .js_async(
            LATENCY,
            vec![
                json!(keys),
                json!(warmup),
                json!(gap_min_ms),
                json!(gap_max_ms),
            ],
        )
        .await?;
    // What the page shows is every key once: nothing lost, nothing doubled.
    let xs = browser
        .js(
            "const b = window.term.buffer.active; let n = 0;
             for (let i = 0; i < b.length; i++) {
               const l = b.getLine(i); if (l) n += (l.translateToString(true).match(/x/g) || []).length;
             }
             return n;",
            vec![],
        )
        .await?;
    browser.close().await;
    if let Some(error) = answer.get("error") {
        bail!("{error}");
    }
    let mut samples: Vec<f64> = answer["samples"]
        .as_array()
        .context("no samples")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    samples.sort_by(f64::total_cmp);
    Ok(json!({
        "what": "keystroke to echo in xterm.js's buffer, timed in the page (performance.now, \
                 term.input -> onWriteParsed)",
        "keys": samples.len(),
        "x_on_screen": xs,
        "p50_us": percentile(&samples, 50.0),
        "p90_us": percentile(&samples, 90.0),
        "p99_us": percentile(&samples, 99.0),
        "max_us": samples.last(),
        "min_us": samples.first(),
    }))
}

// ---- the nodes page ----------------------------------------------------------------------------

/// Resolves with the milliseconds since the navigation started (performance.now) at which the
/// first node row exists, watching the DOM; `already` if it was there before the script ran.
const ROWS_APPEAR: &str = r#"
const done = arguments[arguments.length - 1];
const sel = 'table#nodes tr[data-node-id]';
if (document.querySelector(sel)) { done({ at_ms: performance.now(), already: true }); return; }
const obs = new MutationObserver(() => {
  if (document.querySelector(sel)) { obs.disconnect(); done({ at_ms: performance.now(), already: false }); }
});
obs.observe(document.documentElement, { childList: true, subtree: true });
"#;

/// From the dashboard, moves to #/nodes and resolves with the milliseconds until the first row.
const ROWS_AFTER_HASH: &str = r#"
const done = arguments[arguments.length - 1];
const sel = 'table#nodes tr[data-node-id]';
const t0 = performance.now();
const obs = new MutationObserver(() => {
  if (document.querySelector(sel)) { obs.disconnect(); done(performance.now() - t0); }
});
obs.observe(document.documentElement, { childList: true, subtree: true });
location.hash = '#/nodes';
"#;

/// The timing of the page's first /api/v1/nodes request, as the browser saw it.
const NODES_FETCH: &str = r#"
const e = performance.getEntriesByType('resource').find((r) => r.name.includes('/api/v1/nodes?'));
return e ? { start_ms: e.startTime, response_end_ms: e.responseEnd, duration_ms: e.duration,
             transfer_bytes: e.transferSize } : null;
"#;

async fn first_rows(target: &Target, runs: u32) -> anyhow::Result<Value> {
    let browser = Browser::start().await?;
    browser.login(target).await?;
    let mut cold = Vec::new();
    let mut cold_runs = Vec::new();
    for run in 1..=runs {
        // A page load of its own (about:blank between, so the app starts from nothing; the
        // browser's cache keeps the scripts after the first run).
        browser.client.goto("about:blank").await?;
        browser
            .client
            .goto(&format!("{}/#/nodes", target.url))
            .await?;
        let seen = browser.js_async(ROWS_APPEAR, vec![]).await?;
        let fetch = browser.js(NODES_FETCH, vec![]).await?;
        let at = seen["at_ms"].as_f64().unwrap_or(f64::NAN);
        cold.push(at);
        let info = json!({"run": run, "rows_at_ms": at, "already_there_when_measured": seen["already"],
                          "nodes_fetch": fetch});
        eprintln!("first-rows (page load) {info}");
        cold_runs.push(info);
    }
    let mut warm = Vec::new();
    for run in 1..=runs {
        browser
            .js("location.hash = '#/'; return true;", vec![])
            .await?;
        browser
            .until(
                "the dashboard",
                "const t = document.getElementById('stat-total'); \
                 return !!t && /^[0-9]/.test(t.textContent.trim()) && !document.querySelector('table#nodes');",
                Duration::from_secs(60),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ms = browser
            .js_async(ROWS_AFTER_HASH, vec![])
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        eprintln!("first-rows (in the app) run {run}: {ms:.0} ms");
        warm.push(ms);
    }
    let total = browser
        .js(
            "const i = document.getElementById('page-info'); return i ? i.textContent : null;",
            vec![],
        )
        .await?;
    browser.close().await;
    Ok(json!({
        "what": "ms from navigation to the first table#nodes tr[data-node-id]",
        "page_info": total,
        "page_load_ms": spread(&cold),
        "in_app_ms": spread(&warm),
        "page_load_runs": cold_runs,
        "in_app_runs": warm,
    }))
}

// ---- the API alone -----------------------------------------------------------------------------

/// A client logged in by password; its cookie jar holds the session.
async fn login_http(target: &Target) -> anyhow::Result<reqwest::Client> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let answer = http
        .post(format!("{}/api/v1/auth/login", target.url))
        .header("origin", &target.url)
        .json(&json!({"username": target.user, "password": target.password}))
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("login: {} {}", answer.status(), answer.text().await?);
    }
    Ok(http)
}

async fn api(target: &Target, runs: u32, search: &str) -> anyhow::Result<Value> {
    let http = login_http(target).await?;
    let queries = [
        ("overview", "/api/v1/overview".to_string()),
        ("by_hostname", "/api/v1/nodes?limit=50".to_string()),
        (
            "by_last_seen_desc",
            "/api/v1/nodes?sort=last_seen&order=desc&limit=50".to_string(),
        ),
        ("search", format!("/api/v1/nodes?q={search}&limit=50")),
        (
            "online_by_hostname_deep_page",
            "/api/v1/nodes?status=online&offset=50000&limit=50".to_string(),
        ),
    ];
    let mut out = serde_json::Map::new();
    for (name, path) in &queries {
        let mut times = Vec::new();
        let mut total = Value::Null;
        let mut body_bytes = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let answer = http.get(format!("{}{path}", target.url)).send().await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("{path}: {status}");
            }
            body_bytes = body.len();
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                total = value
                    .get("total")
                    .cloned()
                    .or_else(|| value.pointer("/nodes/total").cloned())
                    .unwrap_or(Value::Null);
            }
        }
        eprintln!("api {name}: {:?}", spread(&times));
        out.insert(
            (*name).to_string(),
            json!({"path": path, "ms": spread(&times), "total": total, "body_bytes": body_bytes}),
        );
    }
    Ok(
        json!({"what": "wall ms per request, one client, sequential, kept-alive", "runs": runs,
              "requests": out}),
    )
}

// ---- pages left open ---------------------------------------------------------------------------

/// What one open page reports: its JS heap (before and after a forced collection), whether it is
/// visible (a hidden tab watches nothing), and a sign that live updates arrive.
const PAGE_STATE: &str = r#"
const used = performance.memory.usedJSHeapSize;
if (window.gc) window.gc();
return { used: used, used_after_gc: performance.memory.usedJSHeapSize,
         total: performance.memory.totalJSHeapSize, visibility: document.visibilityState,
         updated: (document.getElementById('nodes-updated') || {}).textContent || null,
         rows: document.querySelectorAll('table#nodes tr[data-node-id]').length,
         stat_total: (document.getElementById('stat-total') || {}).textContent || null,
         dom_nodes: document.getElementsByTagName('*').length };
"#;

async fn watch(
    target: &Target,
    duration: Duration,
    every: Duration,
    baseline: Duration,
    bridge_pid: u32,
    core_pid: u32,
) -> anyhow::Result<Value> {
    let cpu = |pid| proc_cpu_s(pid).context("reading /proc/PID/stat");
    // Core with nobody watching.
    let core0 = cpu(core_pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(baseline).await;
    let baseline_pct = 100.0 * (cpu(core_pid)? - core0) / t0.elapsed().as_secs_f64();
    eprintln!("core CPU with no page open: {baseline_pct:.1} % of one core");

    let browser = Browser::start().await?;
    browser.login(target).await?;
    browser
        .client
        .goto(&format!("{}/#/nodes", target.url))
        .await?;
    browser
        .until(
            "rows",
            "return !!document.querySelector('table#nodes tr[data-node-id]');",
            Duration::from_secs(120),
        )
        .await?;
    let nodes_window = browser.client.window().await?;
    let dashboard_window = browser.client.new_window(false).await?.handle;
    browser
        .client
        .switch_to_window(dashboard_window.clone())
        .await?;
    browser.client.goto(&format!("{}/#/", target.url)).await?;
    browser
        .until(
            "the dashboard",
            "const t = document.getElementById('stat-total'); return !!t && /^[0-9]/.test(t.textContent.trim());",
            Duration::from_secs(120),
        )
        .await?;

    let mut samples = Vec::new();
    let started = Instant::now();
    let mut last_cpu = cpu(core_pid)?;
    let mut last_at = Instant::now();
    let bridge_cpu0 = cpu(bridge_pid)?;
    loop {
        let at = started.elapsed().as_secs_f64();
        let core_cpu = cpu(core_pid)?;
        let core_pct = 100.0 * (core_cpu - last_cpu) / last_at.elapsed().as_secs_f64();
        last_cpu = core_cpu;
        last_at = Instant::now();
        browser
            .client
            .switch_to_window(nodes_window.clone())
            .await?;
        let nodes_page = browser.js(PAGE_STATE, vec![]).await?;
        browser
            .client
            .switch_to_window(dashboard_window.clone())
            .await?;
        let dashboard = browser.js(PAGE_STATE, vec![]).await?;
        let sample = json!({
            "at_s": at.round(),
            "bridge_rss_kib": proc_kib(bridge_pid, "VmRSS"),
            "core_rss_kib": proc_kib(core_pid, "VmRSS"),
            "core_cpu_pct_since_last": core_pct,
            "nodes_page": nodes_page,
            "dashboard": dashboard,
        });
        eprintln!("watch {sample}");
        samples.push(sample);
        if started.elapsed() + Duration::from_secs(1) >= duration {
            break;
        }
        tokio::time::sleep(every).await;
    }
    let held = started.elapsed().as_secs_f64();
    let bridge_cpu_pct = 100.0 * (cpu(bridge_pid)? - bridge_cpu0) / held;
    browser.close().await;
    // The first sample's CPU figure covers the pages' opening; the rest, the steady watch.
    let steady: Vec<f64> = samples
        .iter()
        .skip(1)
        .filter_map(|s| s["core_cpu_pct_since_last"].as_f64())
        .collect();
    let pick = |key: &str| -> Vec<f64> {
        samples
            .iter()
            .filter_map(|s| s.pointer(key).and_then(Value::as_f64))
            .collect()
    };
    Ok(json!({
        "what": "nodes page and dashboard open in two windows of one headless Chromium",
        "held_s": held,
        "core_cpu_pct_no_page": baseline_pct,
        "core_cpu_pct_watching": spread(&steady),
        "bridge_cpu_pct_watching": bridge_cpu_pct,
        "bridge_rss_kib": spread(&pick("/bridge_rss_kib")),
        "core_rss_kib": spread(&pick("/core_rss_kib")),
        "nodes_page_heap_after_gc": spread(&pick("/nodes_page/used_after_gc")),
        "dashboard_heap_after_gc": spread(&pick("/dashboard/used_after_gc")),
        "samples": samples,
    }))
}

// ---- sockets -----------------------------------------------------------------------------------

/// A fresh login session's cookie (`name=value`), as one browser holds it.
async fn session_cookie(target: &Target) -> anyhow::Result<String> {
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", target.url))
        .header("origin", &target.url)
        .json(&json!({"username": target.user, "password": target.password}))
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("login: {}", answer.status());
    }
    let set = answer
        .headers()
        .get("set-cookie")
        .context("no cookie")?
        .to_str()?;
    Ok(set.split(';').next().unwrap_or_default().to_string())
}

/// Opens one socket of `kind` in a session of its own and keeps reading it (answering pings)
/// until the process ends; returns once the first answer (an overview, or the terminal's
/// `connected` frame) has arrived.
async fn open_socket(target: &Target, kind: Kind, node: Option<&str>) -> anyhow::Result<()> {
    let cookie = session_cookie(target).await?;
    let base = target.url.replacen("http://", "ws://", 1);
    let url = match kind {
        Kind::Live => format!("{base}/api/v1/live"),
        Kind::Tty => format!(
            "{base}/api/v1/tty?node={}&cols=120&rows=40",
            node.context("--node for tty")?
        ),
    };
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(&url)?;
    request.headers_mut().insert("origin", target.url.parse()?);
    request.headers_mut().insert("cookie", cookie.parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    if let Kind::Live = kind {
        let watch = json!({"watch": {"overview": true, "nodes": {"q": "", "sort": "hostname",
                          "order": "asc", "offset": 0, "limit": 50}}});
        socket
            .send(tungstenite::Message::Text(watch.to_string().into()))
            .await?;
    }
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(message) = socket.next().await {
            match message? {
                tungstenite::Message::Text(text) if text.contains("\"overview\"") => {
                    return Ok(());
                }
                tungstenite::Message::Binary(bytes) if bytes.first() == Some(&b'1') => {
                    return Ok(());
                }
                tungstenite::Message::Binary(bytes) if bytes.first() == Some(&b'3') => {
                    bail!("refused: {}", String::from_utf8_lossy(&bytes[1..]));
                }
                _ => {}
            }
        }
        bail!("the socket closed")
    })
    .await;
    first.context("no first answer in 60 s")??;
    tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
    Ok(())
}

async fn sockets(
    target: &Target,
    kind: Kind,
    node: Option<&str>,
    counts: &[usize],
    settle: Duration,
    bridge_pid: u32,
) -> anyhow::Result<Value> {
    let mut open = 0;
    let mut levels = Vec::new();
    for &count in counts {
        while open < count {
            open_socket(target, kind, node)
                .await
                .with_context(|| format!("socket {}", open + 1))?;
            open += 1;
        }
        tokio::time::sleep(settle).await;
        let rss = proc_kib(bridge_pid, "VmRSS");
        eprintln!("sockets {kind:?}: {count} open, bridge RSS {rss:?} KiB");
        levels.push(json!({"sockets": count, "bridge_rss_kib": rss}));
    }
    let first = levels.first().and_then(|l| l["bridge_rss_kib"].as_f64());
    let last = levels.last();
    let per_socket = match (first, last) {
        (Some(first), Some(last)) if open > counts[0] => last["bridge_rss_kib"]
            .as_f64()
            .map(|rss| (rss - first) / (open - counts[0]) as f64),
        _ => None,
    };
    Ok(json!({
        "what": "bridge VmRSS with N sockets open, one login session each (tokio-tungstenite clients)",
        "kind": match kind { Kind::Live => "live (overview + 50 nodes)", Kind::Tty => "tty (a shell each)" },
        "levels": levels,
        "kib_per_socket": per_socket,
        "bridge_hwm_kib": proc_kib(bridge_pid, "VmHWM"),
    }))
}
