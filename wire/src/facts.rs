//! Static host facts (seeds 000 and 003): what a machine *is*. Sent on the control stream only when
//! they differ from what core holds, compared by [`StaticFacts::digest`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::control::Digest;

/// Everything about a node that changes rarely.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StaticFacts {
    /// Hostname as the machine reports it.
    pub hostname: String,
    /// Distribution name, e.g. `Debian GNU/Linux`.
    pub os_name: String,
    /// Distribution version, e.g. `12`.
    pub os_version: String,
    /// Kernel version, e.g. `6.1.0-26-amd64`.
    pub kernel_version: String,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
    /// Boot time, unix seconds.
    pub boot_time: u64,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// CPU frequency in MHz.
    pub cpu_frequency_mhz: u64,
    /// Virtualization or container technology (`kvm`, `vmware`, `docker`, ...), `None` on bare metal
    /// or when unknown.
    pub virtualization: Option<String>,
    /// Physical memory, bytes.
    pub memory_total: u64,
    /// Swap, bytes.
    pub swap_total: u64,
    /// Filesystems on disks, one each however many times it is mounted (bind mounts included),
    /// in order of mount point; pseudo, transient and network filesystems left out.
    pub disks: Vec<DiskInfo>,
    /// Network interfaces.
    pub nics: Vec<NicInfo>,
    /// GPU names, where present.
    pub gpus: Vec<String>,
    /// The agent's version.
    pub agent_version: String,
}

/// One filesystem on a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Device name, e.g. `/dev/nvme0n1p2`.
    pub name: String,
    /// Its primary mount point (where its root is mounted, else the shortest one): what
    /// heartbeats name it by.
    pub mount: String,
    /// Every mount point, the primary first (bind mounts and second mounts of the same
    /// filesystem).
    pub mounts: Vec<String>,
    /// File system, e.g. `ext4`.
    pub filesystem: String,
    /// `ssd`, `hdd` or `unknown`.
    pub kind: String,
    /// Size in bytes.
    pub total_bytes: u64,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NicInfo {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Addresses (IPv4 and IPv6).
    pub addresses: Vec<IpAddr>,
    /// Link speed in Mbps, where the kernel reports one.
    pub speed_mbps: Option<u32>,
}

impl StaticFacts {
    /// SHA-256 of the encoded facts: equal facts, equal digest, on every machine.
    pub fn digest(&self) -> Digest {
        let encoded = codec::encode(self);
        Digest::from(<[u8; 32]>::from(Sha256::digest(&encoded)))
    }
}
