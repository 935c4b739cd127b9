//! Static facts (seeds 000 and 003).

use sysinfo::{DiskKind, Disks, Networks, System};
use tether_wire::facts::{DiskInfo, NicInfo, StaticFacts};

use super::linux;

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

    let mut disks: Vec<DiskInfo> = Disks::new_with_refreshed_list()
        .map(|disks| {
            disks
                .iter()
                .map(|d| DiskInfo {
                    name: d.name().to_string_lossy().into_owned(),
                    mount: d.mount_point().to_string_lossy().into_owned(),
                    filesystem: d.file_system().to_string_lossy().into_owned(),
                    kind: match d.kind() {
                        DiskKind::SSD => "ssd".into(),
                        DiskKind::HDD => "hdd".into(),
                        _ => "unknown".into(),
                    },
                    total_bytes: d.total_space(),
                })
                .collect()
        })
        .unwrap_or_default();
    disks.sort_by(|a, b| a.mount.cmp(&b.mount));
    disks.truncate(MAX_ITEMS);

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

    #[test]
    fn facts_of_this_machine() {
        let facts = collect_facts(Some("override"));
        assert_eq!(facts.hostname, "override");
        assert!(facts.cpu_count >= 1);
        assert!(facts.memory_total > 0);
        assert!(!facts.kernel_version.is_empty());
        assert!(!facts.arch.is_empty());
        // Reading twice gives the same digest: facts are sent only when they change.
        assert_eq!(facts.digest(), collect_facts(Some("override")).digest());
    }
}
