//! Deploys of agent releases (seed 002's `update_records` and its deploy, status and rollback
//! routes): which nodes, in what order (all at once, rolling batches, or a canary first), how
//! many failures halt it, and each node's way through pending → downloading → verifying →
//! installing → success, or failed, rollback (its watchdog put the old agent back), skipped,
//! cancelled.
//!
//! The node's side of it (on its control stream and a download stream it opens):
//!
//! ```text
//! node                                   core
//!  ◀──────────────────────────── Update          (a signed manifest: check it, fetch the file)
//!  ══ DownloadRequest ═══════════════▶          (a bidirectional stream of its own; resumes
//!  ◀═══════════════ DownloadFrame::Start          from an offset after a reconnect)
//!  ◀════════════════ DownloadFrame::Data ...
//!  ── UpdateStatus ───────────────────▶          (downloading, verifying, installing, failed)
//!  (the agent replaces its binary and starts it; the new one authenticates: success)
//!  ── UpdateStatus(rollback) ─────────▶          (from the old agent, if its watchdog had to
//!                                                  put it back)
//! ```

use serde::{Deserialize, Serialize};

use crate::bytes::ByteBuf;
use crate::control::Digest;
use crate::ids::NodeId;
use crate::releases::Manifest;
use crate::tasks::TaskTargets;

/// A download stream's frames carry at most this many bytes of the file each.
pub const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// A download stream's frames are at most this long, bytes.
pub const MAX_DOWNLOAD_FRAME_LEN: usize = DOWNLOAD_CHUNK + 1024;
/// Default: how long a new agent has to authenticate before its watchdog puts the old one
/// back, milliseconds.
pub const DEFAULT_WATCHDOG_MS: u64 = 60_000;
/// Deploys kept (ended ones; the oldest go first).
pub const DEPLOYS_KEPT: usize = 500;

/// How a deploy goes through its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Every node at once (downloads still limited by core's `max_downloads`).
    All,
    /// In batches (`--batch`), pausing between them (`--pause`).
    Rolling,
    /// A few nodes first (`--canary`), then, if they all succeed and after `--canary-wait`,
    /// the rest in batches (all at once without `--batch`).
    Canary,
}

text_enum!(Strategy "strategy" { All = "all", Rolling = "rolling", Canary = "canary" });

/// What to do about nodes that are offline when their turn comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfflinePolicy {
    /// Update them when they come back; the deploy goes on meanwhile and ends when they are
    /// done (or it is cancelled).
    Wait,
    /// Mark them skipped.
    Skip,
}

text_enum!(OfflinePolicy "offline policy" { Wait = "wait", Skip = "skip" });

/// A number of nodes, or a share of them: `N` or `P%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Amount {
    /// So many nodes.
    Count(u32),
    /// This percentage of the deploy's nodes (1 to 100), rounded up.
    Percent(u8),
}

impl Amount {
    /// How many of `total` nodes this is.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: a number of nodes (10) or a percentage of them (10%)");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Amount::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(Amount::Count).map_err(|_| bad()),
        }
    }
}

/// A deploy as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// The release version; each node gets the build for its OS and architecture.
    pub version: String,
    /// Which nodes (as a task's: ids, labels, groups, all), resolved when the deploy starts.
    pub targets: TaskTargets,
    /// In what order.
    pub strategy: Strategy,
    /// Nodes per batch (rolling, and canary after its canaries); none: all at once.
    pub batch: Option<Amount>,
    /// Pause between batches, milliseconds.
    pub pause_ms: u64,
    /// Canary nodes (canary strategy; default one).
    pub canary: Option<Amount>,
    /// Wait after the canaries succeed, milliseconds.
    pub canary_wait_ms: u64,
    /// Failures tolerated; one more halts the deploy (default none tolerated).
    pub max_failures: Option<Amount>,
    /// Nodes offline at their turn.
    pub offline: OfflinePolicy,
    /// How long a new agent has to authenticate before its watchdog puts the old one back,
    /// milliseconds.
    pub watchdog_ms: u64,
    /// Bytes per second each node's download may take; none: as fast as it goes.
    pub rate_limit: Option<u64>,
}

impl DeploySpec {
    /// Checks what needs no store: a version, targets, amounts and durations that make sense.
    pub fn check(&self) -> Result<(), String> {
        crate::releases::check_version(&self.version)?;
        if self.targets.is_empty() {
            return Err("no nodes selected: give --group, --label, --node or --all".into());
        }
        for (flag, amount) in [("--batch", self.batch), ("--canary", self.canary)] {
            if amount == Some(Amount::Count(0)) {
                return Err(format!("{flag} 0: give at least one node"));
            }
        }
        if self.strategy != Strategy::Canary && (self.canary.is_some() || self.canary_wait_ms > 0) {
            return Err("--canary and --canary-wait go with --strategy canary".into());
        }
        if self.strategy == Strategy::All && (self.batch.is_some() || self.pause_ms > 0) {
            return Err("--batch and --pause go with --strategy rolling or canary".into());
        }
        let day = 24 * 3600 * 1000;
        for (flag, ms) in [
            ("--pause", self.pause_ms),
            ("--canary-wait", self.canary_wait_ms),
            ("--watchdog", self.watchdog_ms),
        ] {
            if ms > day {
                return Err(format!("{flag}: at most a day"));
            }
        }
        if self.watchdog_ms < 1000 {
            return Err("--watchdog: at least 1s (a new agent needs time to connect)".into());
        }
        if self.rate_limit == Some(0) {
            return Err("--rate-limit 0 would never finish".into());
        }
        Ok(())
    }
}

/// What a deploy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployKind {
    /// Install a release.
    Update,
    /// Put back, on every node that deploy `of` updated, the agent it replaced (kept beside
    /// it by the node).
    Rollback {
        /// The deploy being undone.
        of: u64,
    },
}

/// Where a deploy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployState {
    /// Nodes are being updated (or waited for).
    Running,
    /// Paused by an admin: nodes under way finish, no new ones start.
    Paused,
    /// Stopped by itself: too many failures (see its reason). Resume to go on.
    Halted,
    /// Cancelled: nodes not yet started were not updated.
    Cancelled,
    /// Every node reached an end.
    Done,
}

text_enum!(DeployState "deploy state" { Running = "running", Paused = "paused", Halted = "halted", Cancelled = "cancelled", Done = "done" });

impl DeployState {
    /// Whether it has ended (cancelled or done); a halted deploy can still resume.
    pub fn ended(self) -> bool {
        matches!(self, DeployState::Cancelled | DeployState::Done)
    }
}

/// Where one node stands in a deploy (seed 002's `update_records.status`, and three more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum UpdateState {
    /// Not started yet (its turn has not come, or it is offline).
    Pending,
    /// Fetching the file.
    Downloading,
    /// Checking size, SHA-256 and signature.
    Verifying,
    /// Replacing the binary and starting the new agent; waiting for it to authenticate.
    Installing,
    /// The new agent authenticated with the new version.
    Success,
    /// It did not work; the old agent runs on.
    Failed,
    /// The new agent did not authenticate in time: the node's watchdog put the old one back.
    Rollback,
    /// Not updated: offline with `--offline skip`, no build for its platform, or it runs
    /// that version already.
    Skipped,
    /// The deploy was cancelled before the node started.
    Cancelled,
}

text_enum!(UpdateState "update state" { Pending = "pending", Downloading = "downloading", Verifying = "verifying", Installing = "installing", Success = "success", Failed = "failed", Rollback = "rollback", Skipped = "skipped", Cancelled = "cancelled" });

impl UpdateState {
    /// Whether the node is done with this deploy.
    pub fn ended(self) -> bool {
        matches!(
            self,
            UpdateState::Success
                | UpdateState::Failed
                | UpdateState::Rollback
                | UpdateState::Skipped
                | UpdateState::Cancelled
        )
    }

    /// Whether it counts against `max_failures`.
    pub fn is_failure(self) -> bool {
        matches!(self, UpdateState::Failed | UpdateState::Rollback)
    }
}

/// A deploy as core keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    /// Core's number for it.
    pub id: u64,
    /// What was asked.
    pub spec: DeploySpec,
    /// Update or rollback.
    pub kind: DeployKind,
    /// Where it stands.
    pub state: DeployState,
    /// Why it halted, was cancelled or paused, when it did.
    pub reason: Option<String>,
    /// Who asked.
    pub created_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
    /// When it ended, unix ms.
    pub finished_at_ms: Option<i64>,
    /// Waves: 0 is the canary (or the first batch), then one per batch.
    pub waves: u32,
    /// The wave under way (the last one started).
    pub wave: u32,
    /// Failures an admin accepted by resuming the deploy after it halted: the threshold
    /// counts only the failures beyond them.
    pub accepted_failures: u32,
}

/// One node in a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUpdate {
    /// The node.
    pub node: NodeId,
    /// Its hostname when the deploy started.
    pub hostname: String,
    /// Its wave.
    pub wave: u32,
    /// The agent version it ran.
    pub from_version: String,
    /// The version it is to run.
    pub to_version: String,
    /// Where it stands.
    pub state: UpdateState,
    /// Bytes fetched so far.
    pub bytes: u64,
    /// The file's size (0 for a rollback, which fetches nothing).
    pub size: u64,
    /// What went wrong, or why it was skipped.
    pub error: Option<String>,
    /// When it started, unix ms.
    pub started_at_ms: Option<i64>,
    /// When it ended, unix ms.
    pub finished_at_ms: Option<i64>,
}

/// How many nodes of a deploy are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeployCounts {
    /// Pending.
    pub pending: u32,
    /// Downloading, verifying or installing.
    pub active: u32,
    /// Success.
    pub success: u32,
    /// Failed.
    pub failed: u32,
    /// Rolled back by their watchdog.
    pub rollback: u32,
    /// Skipped.
    pub skipped: u32,
    /// Cancelled.
    pub cancelled: u32,
}

impl DeployCounts {
    /// Adds one node in `state`.
    pub fn add(&mut self, state: UpdateState) {
        let slot = match state {
            UpdateState::Pending => &mut self.pending,
            UpdateState::Downloading | UpdateState::Verifying | UpdateState::Installing => {
                &mut self.active
            }
            UpdateState::Success => &mut self.success,
            UpdateState::Failed => &mut self.failed,
            UpdateState::Rollback => &mut self.rollback,
            UpdateState::Skipped => &mut self.skipped,
            UpdateState::Cancelled => &mut self.cancelled,
        };
        *slot += 1;
    }

    /// Every node.
    pub fn total(&self) -> u32 {
        self.pending
            + self.active
            + self.success
            + self.failed
            + self.rollback
            + self.skipped
            + self.cancelled
    }

    /// Failures (failed and rolled back).
    pub fn failures(&self) -> u32 {
        self.failed + self.rollback
    }
}

/// A deploy with its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployView {
    /// The deploy.
    pub deploy: Deploy,
    /// Its nodes, by state.
    pub counts: DeployCounts,
}

/// What an admin may do to a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployAction {
    /// No new nodes start; those under way finish.
    Pause,
    /// Go on after a pause or a halt.
    Resume,
    /// End it: nodes not started are cancelled.
    Cancel,
}

text_enum!(DeployAction "deploy action" { Pause = "pause", Resume = "resume", Cancel = "cancel" });

/// The first frame on a download stream a node opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    /// The deploy it is for.
    pub deploy: u64,
    /// The file's SHA-256, from the manifest.
    pub sha256: Digest,
    /// Bytes the node has already (from an earlier, broken download).
    pub offset: u64,
}

/// Core's frames on a download stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DownloadFrame {
    /// The file follows from the offset asked for; this is its whole size.
    Start {
        /// Size, bytes.
        size: u64,
    },
    /// The next bytes, at most [`DOWNLOAD_CHUNK`]. The stream ends after the last.
    Data(ByteBuf),
    /// Refused; nothing follows.
    Refused {
        /// Why.
        message: String,
    },
}

/// Core asks a node to install a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOrder {
    /// The deploy.
    pub deploy: u64,
    /// The release's signed manifest.
    pub manifest: Manifest,
    /// How long the new agent has to authenticate, milliseconds.
    pub watchdog_ms: u64,
}

/// Core asks a node to put back the agent it kept from its last update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackOrder {
    /// The deploy (a rollback's).
    pub deploy: u64,
    /// The version the kept agent must report.
    pub to_version: String,
    /// How long it has to authenticate, milliseconds.
    pub watchdog_ms: u64,
}

/// A node telling core how an update goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The deploy.
    pub deploy: u64,
    /// Where it stands.
    pub state: UpdateState,
    /// Bytes fetched so far.
    pub bytes: u64,
    /// What went wrong.
    pub error: Option<String>,
}
