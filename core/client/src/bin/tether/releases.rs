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
use tether_wire::releases::{Manifest, ReleaseView, key_id};

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

/// The commands that talk to core.
pub async fn run(client: &AdminClient, command: ReleaseCommand) -> anyhow::Result<u8> {
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
    };
    if json {
        print_json(&all.iter().map(release_json).collect::<Vec<_>>())?;
    } else {
        print_table(&all)?;
    }
    Ok(0)
}
