//! Static facts (seeds 000 and 003).

use sysinfo::{Networks, System};
use tether_wire::facts::{DiskInfo, NicInfo, StaticFacts};

use super::{linux, mounts};

/// Most disks and interfaces reported (a host with thousands of mounts must not blow the frame).
const MAX_ITEMS: usize = 128;

/// Reads the machine's static facts. `hostname` overrides the system's.
pub fn collect_facts(hostname: Option<&str>) -> StaticFacts {
    let system = System::new().ok().map(|mut system| {
        system.refresh_cpu_all();
        system.refresh_memory();
        system
    });
    let cpus = system.as_ref().map_or(&[][..], System::cpus);
    let hostname = hostname
        .map(str::to_string)
        .or_else(|| System::host_name().ok())
        .unwrap_or_else(|| "unknown".into());

    let mut disks: Vec<DiskInfo> = mounts::read()
        .iter()
        .filter_map(|fs| {
            let (total_bytes, _) = mounts::usage(fs.primary())?;
            Some(DiskInfo {
                name: fs.source.clone(),
                mount: fs.primary().to_string(),
                mounts: fs.mounts.clone(),
                filesystem: fs.fs_type.clone(),
                kind: mounts::kind(fs).into(),
                total_bytes,
            })
        })
        .collect();
    disks.truncate(MAX_ITEMS);
    for disk in &mut disks {
        disk.mounts.truncate(MAX_ITEMS);
    }

    let mut nics: Vec<NicInfo> = Networks::new_with_refreshed_list()
        .map(|networks| {
            networks
                .iter()
                .filter(|(name, _)| name.as_os_str() != "lo")
                .map(|(name, data)| {
                    let name = name.to_string_lossy().into_owned();
                    NicInfo {
                        speed_mbps: linux::link_speed_mbps(&name),
                        name,
                        mac: data.mac_address().to_string(),
                        addresses: data.ip_networks().iter().map(|n| n.addr).collect(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics.truncate(MAX_ITEMS);
    for nic in &mut nics {
        nic.addresses.sort();
    }

    StaticFacts {
        hostname,
        os_name: System::name().unwrap_or_default(),
        os_version: System::os_version().unwrap_or_default(),
        kernel_version: System::kernel_version().unwrap_or_default(),
        arch: System::cpu_arch(),
        boot_time: System::boot_time().unwrap_or_default(),
        cpu_model: cpus
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default(),
        cpu_count: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
        cpu_frequency_mhz: cpus.iter().map(|c| c.frequency()).max().unwrap_or_default(),
        virtualization: linux::virtualization(),
        memory_total: system.as_ref().map_or(0, System::total_memory),
        swap_total: system.as_ref().map_or(0, System::total_swap),
        disks,
        nics,
        gpus: linux::gpus(),
        agent_version: crate::AGENT_VERSION.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table is the machine's: a test that bind-mounts changes what another reads.
    static MOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn facts_of_this_machine() {
        let _mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let facts = collect_facts(Some("override"));
        assert_eq!(facts.hostname, "override");
        assert!(facts.cpu_count >= 1);
        assert!(facts.memory_total > 0);
        assert!(!facts.kernel_version.is_empty());
        assert!(!facts.arch.is_empty());
        // Reading twice gives the same digest: facts are sent only when they change.
        assert_eq!(facts.digest(), collect_facts(Some("override")).digest());
    }

    /// Unmounts what it mounted, even when the test fails.
    struct BindMounts(Vec<std::path::PathBuf>);

    impl Drop for BindMounts {
        fn drop(&mut self) {
            for place in self.0.iter().rev() {
                let _ = std::process::Command::new("umount").arg(place).status();
            }
        }
    }

    /// Real bind mounts (where this test may mount: as root, with mount(8)): the filesystem they
    /// show is still one disk, listing them, in the facts and in the heartbeat, and no total
    /// changes.
    #[test]
    fn bind_mounts_are_one_disk_with_all_its_mount_points() {
        let _mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let before = collect_facts(None);
        let mut collector = crate::collect::Collector::new();
        let metrics_before = collector.metrics();
        let tmp = tempfile::tempdir().unwrap();
        let mut mounted = BindMounts(Vec::new());
        for name in ["b1", "b2", "b3"] {
            let place = tmp.path().join(name);
            std::fs::create_dir(&place).unwrap();
            let status = std::process::Command::new("mount")
                .arg("--bind")
                .arg("/var")
                .arg(&place)
                .stderr(std::process::Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("skipped: this test cannot bind-mount (it needs root and mount(8))");
                return;
            }
            mounted.0.push(place);
        }
        let after = collect_facts(None);
        assert_eq!(after.disks.len(), before.disks.len(), "{:#?}", after.disks);
        let holder = after
            .disks
            .iter()
            .find(|d| d.mounts.iter().any(|m| m.ends_with("/b1")))
            .expect("the filesystem of /var lists the bind mounts");
        for place in &mounted.0 {
            let place = place.to_str().unwrap();
            assert!(holder.mounts.iter().any(|m| m == place), "{holder:?}");
        }
        assert!(
            !holder.mount.ends_with("/b1"),
            "the primary is the real mount: {holder:?}"
        );
        let total = |disks: &[tether_wire::facts::DiskInfo]| -> u64 {
            disks.iter().map(|d| d.total_bytes).sum()
        };
        assert_eq!(total(&after.disks), total(&before.disks));
        let metrics = collector.metrics();
        assert_eq!(metrics.disks.len(), metrics_before.disks.len());
        assert_eq!(
            metrics
                .disks
                .iter()
                .filter(|d| d.mount == holder.mount)
                .count(),
            1,
            "{:?}",
            metrics.disks
        );
        assert!(!metrics.disks.iter().any(|d| d.mount.contains("/b")));
    }
}
