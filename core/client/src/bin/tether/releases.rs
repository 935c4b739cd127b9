//! `tether release ...`: agent releases. `keygen` and `sign` run on the admin's machine
//! without an identity or a core (the private key never goes near core); `upload`, `list`,
//! `show` and `delete` talk to core.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use tether_certs::release::{
    ReleaseSigningKey, digest_reader, format_public_key, manifest_from_toml, manifest_to_toml,
};
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::bytes::FixedBytes;
use tether_wire::deploys::{
    DeployAction, DeployKind, DeploySpec, DeployState, DeployView, NodeUpdate, UpdateState,
};
use tether_wire::releases::{Manifest, ReleaseView, key_id};
use tether_wire::tasks::TaskTargets;

use crate::output::{self, print_json, rfc3339};

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Make a release signing key (ed25519) on this machine: the private key goes to --out
    /// (mode 0600, PKCS#8 PEM; keep it off core), the public key is printed. Give the public
    /// key to core (`--release-key KEY`) and to every node (`release_keys = ["KEY"]` in
    /// node.toml, or `tether-node run --release-key KEY`): nodes run only releases signed by a
    /// key they trust.
    Keygen {
        /// Where to write the private key (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign an agent build: writes a manifest (version, OS, architecture, size, SHA-256,
    /// signature) to --out, for `release upload`. Runs offline, where the key is.
    Sign {
        /// The `tether-node` binary.
        file: PathBuf,
        /// The private key from `release keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The version the build reports (`tether-node --version`).
        #[arg(long, value_name = "V")]
        version: String,
        /// Operating system [default: linux].
        #[arg(long, default_value = "linux")]
        os: String,
        /// CPU architecture as `uname -m` prints it [default: read from the file's ELF
        /// header: x86_64, aarch64, riscv64, s390x].
        #[arg(long)]
        arch: Option<String>,
        /// Where to write the manifest (TOML).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Upload a signed build to core. Refused if core does not trust the signing key, if the
    /// file does not match its manifest, or if that version, OS and architecture exist.
    Upload {
        /// The `tether-node` binary that was signed.
        file: PathBuf,
        /// Its manifest from `release sign`.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Release notes.
        #[arg(long, value_name = "TEXT", default_value = "")]
        notes: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every release, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A version's builds, with their manifests and notes.
    Show {
        /// The version.
        version: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy a version to nodes: each gets the build for its architecture, checks the
    /// signature against the keys it trusts, replaces its binary and starts the new agent under
    /// a watchdog that puts the old one back if the new one does not reach core in time.
    /// Prints the deploy's number; follow it with `release status ID --watch`.
    ///
    /// Strategies: all (every node at once), rolling (--batch nodes at a time, --pause
    /// between), canary (--canary nodes first, --canary-wait, then the rest, in --batch
    /// batches if given). Failures beyond --max-failures (default: none) halt the deploy;
    /// any canary failing halts it. Nodes that run the version already, or have no build for
    /// their architecture, are skipped.
    Deploy {
        /// The version (uploaded with `release upload`).
        version: String,
        #[command(flatten)]
        targets: DeployTargets,
        /// all, rolling or canary.
        #[arg(long, default_value = "all")]
        strategy: tether_wire::deploys::Strategy,
        /// Nodes per batch: N or P% [rolling default: 10%; canary default: all the rest].
        #[arg(long, value_name = "N|P%")]
        batch: Option<tether_wire::deploys::Amount>,
        /// Wait between batches, e.g. 30s.
        #[arg(long, value_name = "DURATION", value_parser = tether_wire::units::parse_duration)]
        pause: Option<std::time::Duration>,
        /// Canary nodes first: N or P% [default: 1].
        #[arg(long, value_name = "N|P%")]
        canary: Option<tether_wire::deploys::Amount>,
        /// Wait after the canaries succeed, e.g. 10m.
        #[arg(long, value_name = "DURATION", value_parser = tether_wire::units::parse_duration)]
        canary_wait: Option<std::time::Duration>,
        /// Failures tolerated before the deploy halts: N or P% [default: 0].
        #[arg(long, value_name = "N|P%")]
        max_failures: Option<tether_wire::deploys::Amount>,
        /// Nodes offline at their turn: wait (update them when they return) or skip.
        #[arg(long, default_value = "wait", value_name = "POLICY")]
        offline: tether_wire::deploys::OfflinePolicy,
        /// How long a new agent has to authenticate before its watchdog puts the old one back.
        #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = tether_wire::units::parse_duration)]
        watchdog: std::time::Duration,
        /// Download speed per node, bytes per second, e.g. 5MiB [default: unlimited].
        #[arg(long, value_name = "SIZE", value_parser = tether_wire::units::parse_bytes)]
        rate_limit: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A deploy's state and each node's (with download progress); without ID, recent
    /// deploys. --watch repeats every second until the deploy ends, halts or pauses.
    Status {
        /// The deploy's number.
        id: Option<u64>,
        /// Follow it.
        #[arg(long)]
        watch: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a deploy: no new nodes start; those under way finish.
    Pause {
        /// The deploy's number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused or halted deploy.
    Resume {
        /// The deploy's number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a deploy: nodes not started yet are not updated.
    Cancel {
        /// The deploy's number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put every node a deploy updated back to the agent it ran before (each node kept it):
    /// a new deploy, whose number is printed. A deploy still going is cancelled first.
    Rollback {
        /// The deploy's number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a version's builds (or one OS/architecture's); refused while a deploy that has
    /// not ended uses one.
    Delete {
        /// The version.
        version: String,
        /// Only this OS's build.
        #[arg(long)]
        os: Option<String>,
        /// Only this architecture's build.
        #[arg(long)]
        arch: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which nodes a deploy covers.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = true)]
pub struct DeployTargets {
    /// Every node in this group or below it (repeat for several).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Every node with this label (repeat: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = tether_wire::admin::parse_label)]
    labels: Vec<(String, String)>,
    /// This node: id, unique id prefix, hostname or hostname pattern (repeat).
    #[arg(long = "node", value_name = "NODE")]
    nodes: Vec<String>,
    /// Every node.
    #[arg(long)]
    all: bool,
}

impl ReleaseCommand {
    /// Whether it runs without core (and without an identity).
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            ReleaseCommand::Keygen { .. } | ReleaseCommand::Sign { .. }
        )
    }
}

/// `keygen` and `sign`.
pub fn run_offline(command: ReleaseCommand) -> anyhow::Result<u8> {
    match command {
        ReleaseCommand::Keygen { out, json } => {
            let key = ReleaseSigningKey::generate();
            key.save_new(&out)
                .with_context(|| format!("cannot write the release key to {}", out.display()))?;
            let public = format_public_key(&key.public());
            if json {
                print_json(&serde_json::json!({
                    "private_key_file": out.display().to_string(),
                    "public_key": public,
                    "key_id": key_id(&key.public()),
                }))?;
            } else {
                println!("{public}");
                eprintln!(
                    "Private key written to {} (mode 0600): keep it off core, and safe: a lost key \
                     signs nothing more, a stolen one signs for every node that trusts it.\n\
                     Public key (above, id {}): give it to core (--release-key) and to every node \
                     (release_keys in node.toml).",
                    out.display(),
                    key_id(&key.public())
                );
            }
            Ok(0)
        }
        ReleaseCommand::Sign {
            file,
            key,
            version,
            os,
            arch,
            out,
        } => {
            let key = ReleaseSigningKey::load(&key)
                .with_context(|| format!("cannot use the release key {}", key.display()))?;
            let arch = match arch {
                Some(arch) => arch,
                None => elf_arch(&file)?,
            };
            let reader = std::fs::File::open(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (size, sha256) =
                digest_reader(reader).with_context(|| format!("cannot read {}", file.display()))?;
            let mut manifest = Manifest {
                version,
                os,
                arch,
                size,
                sha256: FixedBytes(sha256),
                key: key.public(),
                signature: FixedBytes([0; 64]),
            };
            manifest
                .check_shape()
                .map_err(|e| anyhow::anyhow!("cannot sign {}: {e}", file.display()))?;
            key.sign(&mut manifest);
            tether_certs::files::write_public_file(&out, manifest_to_toml(&manifest).as_bytes())
                .with_context(|| format!("cannot write the manifest to {}", out.display()))?;
            eprintln!(
                "Signed {} ({}, {size} bytes, sha256 {}) with key {}: manifest in {}",
                file.display(),
                manifest.describe(),
                hex::encode(sha256),
                key_id(&manifest.key),
                out.display()
            );
            Ok(0)
        }
        _ => bail!("this release command needs core; this is a bug"),
    }
}

/// The architecture an ELF file is built for, as `uname -m` names it.
fn elf_arch(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut header = Vec::with_capacity(20);
    std::fs::File::open(path)
        .and_then(|f| f.take(20).read_to_end(&mut header))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        bail!(
            "{} is not an ELF executable; say which architecture it is for with --arch",
            path.display()
        );
    }
    let machine = if header[5] == 2 {
        u16::from_be_bytes([header[18], header[19]])
    } else {
        u16::from_le_bytes([header[18], header[19]])
    };
    // ELF e_machine values (System V ABI), for the 64-bit ones whose `uname -m` is one name.
    Ok(match (machine, header[4]) {
        (62, 2) => "x86_64",
        (183, 2) => "aarch64",
        (243, 2) => "riscv64",
        (22, 2) => "s390x",
        _ => bail!(
            "cannot tell {}'s architecture from its ELF header (machine {machine}); give --arch",
            path.display()
        ),
    }
    .to_string())
}

#[derive(Serialize)]
struct ReleaseJson<'a> {
    id: u64,
    version: &'a str,
    os: &'a str,
    arch: &'a str,
    size: u64,
    sha256: String,
    key: String,
    key_id: String,
    notes: &'a str,
    uploaded_by: &'a str,
    uploaded_at: String,
    active_deploys: &'a [u64],
}

fn release_json(view: &ReleaseView) -> ReleaseJson<'_> {
    let r = &view.release;
    let m = &r.manifest;
    ReleaseJson {
        id: r.id,
        version: &m.version,
        os: &m.os,
        arch: &m.arch,
        size: m.size,
        sha256: hex::encode(m.sha256.as_bytes()),
        key: format_public_key(&m.key),
        key_id: key_id(&m.key),
        notes: &r.notes,
        uploaded_by: &r.uploaded_by,
        uploaded_at: rfc3339(r.uploaded_at_ms),
        active_deploys: &view.active_deploys,
    }
}

fn releases(responses: Vec<AdminResponse>) -> anyhow::Result<Vec<ReleaseView>> {
    crate::single(responses, |r| match r {
        AdminResponse::Releases(all) => Some(all),
        _ => None,
    })
}

fn print_table(all: &[ReleaseView]) -> anyhow::Result<()> {
    output::table(
        &[
            "VERSION", "OS/ARCH", "SIZE", "SHA256", "KEY", "UPLOADED", "BY", "DEPLOYS",
        ],
        all.iter()
            .map(|v| {
                let m = &v.release.manifest;
                vec![
                    m.version.clone(),
                    format!("{}/{}", m.os, m.arch),
                    m.size.to_string(),
                    hex::encode(&m.sha256.as_bytes()[..6]),
                    key_id(&m.key),
                    rfc3339(v.release.uploaded_at_ms),
                    v.release.uploaded_by.clone(),
                    if v.active_deploys.is_empty() {
                        "-".into()
                    } else {
                        v.active_deploys
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                ]
            })
            .collect(),
    )
}

#[derive(Serialize)]
struct DeployJson<'a> {
    id: u64,
    version: &'a str,
    kind: String,
    state: &'a str,
    reason: Option<&'a str>,
    strategy: &'a str,
    targets: String,
    created_by: &'a str,
    created_at: String,
    finished_at: Option<String>,
    wave: u32,
    waves: u32,
    counts: &'a tether_wire::deploys::DeployCounts,
}

fn deploy_json(view: &DeployView) -> DeployJson<'_> {
    let d = &view.deploy;
    DeployJson {
        id: d.id,
        version: &d.spec.version,
        kind: match d.kind {
            DeployKind::Update => "update".into(),
            DeployKind::Rollback { of } => format!("rollback of {of}"),
        },
        state: d.state.as_str(),
        reason: d.reason.as_deref(),
        strategy: d.spec.strategy.as_str(),
        targets: d.spec.targets.describe(),
        created_by: &d.created_by,
        created_at: rfc3339(d.created_at_ms),
        finished_at: d.finished_at_ms.map(rfc3339),
        wave: d.wave + 1,
        waves: d.waves,
        counts: &view.counts,
    }
}

#[derive(Serialize)]
struct NodeUpdateJson<'a> {
    node: String,
    hostname: &'a str,
    wave: u32,
    from_version: &'a str,
    to_version: &'a str,
    state: &'a str,
    bytes: u64,
    size: u64,
    error: Option<&'a str>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

fn node_update_json(u: &NodeUpdate) -> NodeUpdateJson<'_> {
    NodeUpdateJson {
        node: u.node.to_string(),
        hostname: &u.hostname,
        wave: u.wave + 1,
        from_version: &u.from_version,
        to_version: &u.to_version,
        state: u.state.as_str(),
        bytes: u.bytes,
        size: u.size,
        error: u.error.as_deref(),
        started_at: u.started_at_ms.map(rfc3339),
        finished_at: u.finished_at_ms.map(rfc3339),
    }
}

fn one_deploy(responses: Vec<AdminResponse>) -> anyhow::Result<DeployView> {
    crate::single(responses, |r| match r {
        AdminResponse::Deploy(view) => Some(view),
        _ => None,
    })
}

fn print_deploy(view: &DeployView) {
    let j = deploy_json(view);
    let c = view.counts;
    println!(
        "deploy {} ({}) of {}: {}{}",
        j.id,
        j.kind,
        j.version,
        j.state,
        j.reason.map(|r| format!(" ({r})")).unwrap_or_default()
    );
    println!(
        "  {} {}, wave {} of {}, by {} at {}",
        j.strategy, j.targets, j.wave, j.waves, j.created_by, j.created_at
    );
    println!(
        "  {} nodes: {} success, {} under way, {} pending, {} failed, {} rolled back, {} skipped, {} cancelled",
        c.total(),
        c.success,
        c.active,
        c.pending,
        c.failed,
        c.rollback,
        c.skipped,
        c.cancelled
    );
}

async fn deploy_status(
    client: &AdminClient,
    id: u64,
) -> anyhow::Result<(DeployView, Vec<NodeUpdate>)> {
    let mut view = None;
    let mut nodes = Vec::new();
    for response in client.request(&AdminRequest::DeployStatus { id }).await? {
        match response {
            AdminResponse::Deploy(v) => view = Some(v),
            AdminResponse::DeployNodes(chunk) => nodes.extend(chunk),
            _ => bail!("core sent an unexpected answer"),
        }
    }
    Ok((view.context("core sent no deploy")?, nodes))
}

fn print_nodes(nodes: &[NodeUpdate]) -> anyhow::Result<()> {
    output::table(
        &["NODE", "WAVE", "FROM", "TO", "STATE", "PROGRESS", "ERROR"],
        nodes
            .iter()
            .map(|u| {
                vec![
                    u.hostname.clone(),
                    (u.wave + 1).to_string(),
                    u.from_version.clone(),
                    u.to_version.clone(),
                    u.state.to_string(),
                    if u.size > 0 && u.state == UpdateState::Downloading {
                        format!("{}%", u.bytes * 100 / u.size)
                    } else {
                        "-".into()
                    },
                    u.error.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

/// The deploy commands.
async fn run_deploy(client: &AdminClient, command: ReleaseCommand) -> anyhow::Result<u8> {
    let ms = |d: Option<std::time::Duration>| d.map_or(0, tether_wire::units::duration_ms);
    let (request, json) = match command {
        ReleaseCommand::Deploy {
            version,
            targets,
            strategy,
            batch,
            pause,
            canary,
            canary_wait,
            max_failures,
            offline,
            watchdog,
            rate_limit,
            json,
        } => (
            AdminRequest::ReleaseDeploy(DeploySpec {
                version,
                targets: TaskTargets {
                    nodes: targets.nodes,
                    labels: targets.labels,
                    groups: targets.groups,
                    all: targets.all,
                },
                strategy,
                batch,
                pause_ms: ms(pause),
                canary,
                canary_wait_ms: ms(canary_wait),
                max_failures,
                offline,
                watchdog_ms: tether_wire::units::duration_ms(watchdog),
                rate_limit,
            }),
            json,
        ),
        ReleaseCommand::Pause { id, json } => (
            AdminRequest::DeployControl {
                id,
                action: DeployAction::Pause,
            },
            json,
        ),
        ReleaseCommand::Resume { id, json } => (
            AdminRequest::DeployControl {
                id,
                action: DeployAction::Resume,
            },
            json,
        ),
        ReleaseCommand::Cancel { id, json } => (
            AdminRequest::DeployControl {
                id,
                action: DeployAction::Cancel,
            },
            json,
        ),
        ReleaseCommand::Rollback { id, json } => (AdminRequest::DeployRollback { id }, json),
        ReleaseCommand::Status { id: None, json, .. } => {
            let all = crate::single(
                client
                    .request(&AdminRequest::DeployList { limit: 50 })
                    .await?,
                |r| match r {
                    AdminResponse::Deploys(all) => Some(all),
                    _ => None,
                },
            )?;
            if json {
                print_json(&all.iter().map(deploy_json).collect::<Vec<_>>())?;
            } else {
                output::table(
                    &[
                        "ID", "VERSION", "KIND", "STATE", "NODES", "OK", "FAILED", "BY", "CREATED",
                    ],
                    all.iter()
                        .map(|v| {
                            let j = deploy_json(v);
                            vec![
                                j.id.to_string(),
                                j.version.to_string(),
                                j.kind.clone(),
                                j.state.to_string(),
                                v.counts.total().to_string(),
                                v.counts.success.to_string(),
                                v.counts.failures().to_string(),
                                j.created_by.to_string(),
                                j.created_at.clone(),
                            ]
                        })
                        .collect(),
                )?;
            }
            return Ok(0);
        }
        ReleaseCommand::Status {
            id: Some(id),
            watch,
            json,
        } => loop {
            let (view, nodes) = deploy_status(client, id).await?;
            let settled = view.deploy.state != DeployState::Running;
            if !watch || settled || json {
                if json {
                    print_json(&serde_json::json!({
                        "deploy": deploy_json(&view),
                        "nodes": nodes.iter().map(node_update_json).collect::<Vec<_>>(),
                    }))?;
                    if watch && !settled {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                } else {
                    print_deploy(&view);
                    print_nodes(&nodes)?;
                }
                // Exit status for scripts: 0 done with no failure, 1 otherwise.
                let clean = view.deploy.state == DeployState::Done && view.counts.failures() == 0;
                return Ok(if watch && !clean { 1 } else { 0 });
            }
            let c = view.counts;
            eprint!(
                "\r\x1b[Kdeploy {id}: wave {}/{}: {} success, {} under way, {} pending, {} failed",
                view.deploy.wave + 1,
                view.deploy.waves,
                c.success,
                c.active,
                c.pending,
                c.failures()
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        },
        _ => bail!("not a deploy command; this is a bug"),
    };
    let view = one_deploy(client.request(&request).await?)?;
    if json {
        print_json(&deploy_json(&view))?;
    } else {
        match request {
            AdminRequest::ReleaseDeploy(_) | AdminRequest::DeployRollback { .. } => {
                println!("{}", view.deploy.id);
                eprintln!(
                    "deploy {} started: {} nodes ({} skipped); follow it with `tether release status {} --watch`",
                    view.deploy.id,
                    view.counts.total(),
                    view.counts.skipped,
                    view.deploy.id
                );
            }
            _ => print_deploy(&view),
        }
    }
    Ok(0)
}

/// The commands that talk to core.
pub async fn run(client: &AdminClient, command: ReleaseCommand) -> anyhow::Result<u8> {
    if matches!(
        command,
        ReleaseCommand::Deploy { .. }
            | ReleaseCommand::Status { .. }
            | ReleaseCommand::Pause { .. }
            | ReleaseCommand::Resume { .. }
            | ReleaseCommand::Cancel { .. }
            | ReleaseCommand::Rollback { .. }
    ) {
        return run_deploy(client, command).await;
    }
    let (all, json) = match command {
        ReleaseCommand::Upload {
            file,
            manifest,
            notes,
            json,
        } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read the manifest {}", manifest.display()))?;
            let manifest = manifest_from_toml(&text)
                .with_context(|| format!("{} is not a usable manifest", manifest.display()))?;
            // The same check core makes, before anything is sent.
            tether_certs::release::check_file(&manifest, &file)
                .with_context(|| format!("{} does not match its manifest", file.display()))?;
            let reader = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let total = manifest.size;
            let show = std::io::stderr().is_terminal() && !json;
            let mut shown = 0u64;
            let request = AdminRequest::ReleaseUpload { manifest, notes };
            let responses = client
                .upload(&request, reader, |sent| {
                    let percent = sent * 100 / total.max(1);
                    if show && percent != shown {
                        shown = percent;
                        eprint!("\ruploading: {percent}%");
                    }
                })
                .await;
            if show {
                eprint!("\r\x1b[K");
            }
            let all = releases(responses?)?;
            if !json {
                for view in &all {
                    println!(
                        "uploaded {} ({} bytes)",
                        view.release.manifest.describe(),
                        view.release.manifest.size
                    );
                }
                return Ok(0);
            }
            (all, json)
        }
        ReleaseCommand::List { json } => (
            releases(client.request(&AdminRequest::ReleaseList).await?)?,
            json,
        ),
        ReleaseCommand::Show { version, json } => {
            let all = releases(
                client
                    .request(&AdminRequest::ReleaseShow { version })
                    .await?,
            )?;
            if !json {
                for view in &all {
                    let j = release_json(view);
                    println!("{} {}/{}", j.version, j.os, j.arch);
                    println!("  size:      {} bytes", j.size);
                    println!("  sha256:    {}", j.sha256);
                    println!("  signed by: {} ({})", j.key_id, j.key);
                    println!("  uploaded:  {} by {}", j.uploaded_at, j.uploaded_by);
                    if !j.notes.is_empty() {
                        println!("  notes:     {}", j.notes);
                    }
                    if !j.active_deploys.is_empty() {
                        println!("  deploys:   {:?}", j.active_deploys);
                    }
                }
                return Ok(0);
            }
            (all, json)
        }
        ReleaseCommand::Delete {
            version,
            os,
            arch,
            json,
        } => {
            let all = releases(
                client
                    .request(&AdminRequest::ReleaseDelete { version, os, arch })
                    .await?,
            )?;
            if !json {
                for view in &all {
                    println!("deleted {}", view.release.manifest.describe());
                }
                return Ok(0);
            }
            (all, json)
        }
        ReleaseCommand::Keygen { .. } | ReleaseCommand::Sign { .. } => {
            return run_offline(command);
        }
        _ => return run_deploy(client, command).await,
    };
    if json {
        print_json(&all.iter().map(release_json).collect::<Vec<_>>())?;
    } else {
        print_table(&all)?;
    }
    Ok(0)
}
