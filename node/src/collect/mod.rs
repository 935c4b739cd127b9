//! What the node measures: static facts (rarely change) and metrics (every heartbeat).
//!
//! Reads `/proc` and `/sys` directly where that is cheaper than sysinfo's full refreshes (process
//! and socket counts), so the agent stays small.

mod facts;
mod linux;
mod metrics;
mod mounts;

use std::time::Instant;

use sysinfo::{Components, Networks, System};

pub use facts::collect_facts;
pub(crate) use linux::machine_fingerprint;

/// Holds the sysinfo handles between measurements (CPU and network rates need two samples).
#[derive(Debug)]
pub struct Collector {
    // Each handle is optional: a machine where one cannot be read still reports the others.
    system: Option<System>,
    networks: Option<Networks>,
    components: Option<Components>,
    last_sample: Instant,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector {
    /// Takes the first sample.
    pub fn new() -> Self {
        let system = System::new().ok().map(|mut system| {
            system.refresh_cpu_usage();
            system.refresh_memory();
            system
        });
        Self {
            system,
            networks: Networks::new_with_refreshed_list().ok(),
            components: Components::new_with_refreshed_list()
                .ok()
                .filter(|c| !c.is_empty()),
            last_sample: Instant::now(),
        }
    }
}
