//! Small readers of `/proc` and `/sys`.

use std::path::Path;

/// Number of processes: numeric directories in `/proc`.
pub(crate) fn process_count() -> u32 {
    std::fs::read_dir("/proc").map_or(0, |entries| {
        let count = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    })
}

/// Sockets listed in `/proc/net/{name}` and `{name}6`, without their header lines.
pub(crate) fn socket_count(name: &str) -> u32 {
    let lines = |path: String| {
        std::fs::read(path).map_or(0, |bytes| {
            bytes
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                .saturating_sub(1)
        })
    };
    let count = lines(format!("/proc/net/{name}")) + lines(format!("/proc/net/{name}6"));
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Link speed of an interface in Mbps, when the kernel reports one.
pub(crate) fn link_speed_mbps(interface: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/speed")).ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s > 0)
        .and_then(|s| u32::try_from(s).ok())
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Virtualization or container technology, in the words `systemd-detect-virt` uses.
pub(crate) fn virtualization() -> Option<String> {
    // Containers first: a container inside a VM is best described as a container.
    if Path::new("/.dockerenv").exists() {
        return Some("docker".into());
    }
    if Path::new("/run/.containerenv").exists() {
        return Some("podman".into());
    }
    if let Some(container) = read_trimmed("/run/systemd/container") {
        return Some(container);
    }
    if let Some(cgroup) = read_trimmed("/proc/1/cgroup") {
        for (needle, name) in [
            ("docker", "docker"),
            ("kubepods", "kubernetes"),
            ("lxc", "lxc"),
        ] {
            if cgroup.contains(needle) {
                return Some(name.into());
            }
        }
    }
    let dmi = [
        read_trimmed("/sys/class/dmi/id/sys_vendor"),
        read_trimmed("/sys/class/dmi/id/product_name"),
        read_trimmed("/sys/class/dmi/id/board_vendor"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
    .to_ascii_lowercase();
    for (needle, name) in [
        ("kvm", "kvm"),
        ("qemu", "qemu"),
        ("vmware", "vmware"),
        ("virtualbox", "oracle"),
        ("innotek", "oracle"),
        ("xen", "xen"),
        ("microsoft corporation", "microsoft"),
        ("amazon ec2", "amazon"),
        ("google compute engine", "google"),
        ("bochs", "bochs"),
        ("parallels", "parallels"),
    ] {
        if dmi.contains(needle) {
            return Some(name.into());
        }
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
    {
        return Some("vm".into());
    }
    None
}

/// This machine's fingerprint ([`tether_wire::control::machine_fingerprint`]): its machine id
/// (from `file`, else `/etc/machine-id`, else `/var/lib/dbus/machine-id`) and the id of this
/// boot. What cannot be read counts as empty.
pub(crate) fn machine_fingerprint(file: Option<&Path>) -> tether_wire::control::Digest {
    let machine_id = match file {
        Some(file) => std::fs::read(file).ok(),
        None => std::fs::read("/etc/machine-id")
            .ok()
            .filter(|id| !id.trim_ascii().is_empty())
            .or_else(|| std::fs::read("/var/lib/dbus/machine-id").ok()),
    };
    let boot_id = std::fs::read("/proc/sys/kernel/random/boot_id").ok();
    tether_wire::control::machine_fingerprint(
        machine_id.as_deref().unwrap_or_default(),
        boot_id.as_deref().unwrap_or_default(),
    )
}

/// Names of display controllers on the PCI bus (class 0x03), resolved through `pci.ids` when the
/// system has it, else `vendor:device` ids.
pub(crate) fn gpus() -> Vec<String> {
    let Ok(devices) = std::fs::read_dir("/sys/bus/pci/devices") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for device in devices.filter_map(Result::ok) {
        let path = device.path();
        let Some(class) = read_trimmed(path.join("class")) else {
            continue;
        };
        if !class.starts_with("0x03") {
            continue;
        }
        let vendor = read_trimmed(path.join("vendor")).unwrap_or_default();
        let product = read_trimmed(path.join("device")).unwrap_or_default();
        let vendor = vendor.trim_start_matches("0x").to_ascii_lowercase();
        let product = product.trim_start_matches("0x").to_ascii_lowercase();
        found
            .push(pci_name(&vendor, &product).unwrap_or_else(|| format!("PCI {vendor}:{product}")));
    }
    found.sort();
    found.truncate(16);
    found
}

fn pci_name(vendor: &str, device: &str) -> Option<String> {
    let db = [
        "/usr/share/misc/pci.ids",
        "/usr/share/hwdata/pci.ids",
        "/usr/share/pci.ids",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())?;
    let mut vendor_name = None;
    for line in db.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if !line.starts_with('\t') {
            if vendor_name.is_some() {
                break;
            }
            if let Some(rest) = line.strip_prefix(vendor) {
                vendor_name = Some(rest.trim().to_string());
            }
        } else if let Some(name) = &vendor_name
            && let Some(rest) = line.strip_prefix('\t').and_then(|l| l.strip_prefix(device))
        {
            return Some(format!("{name} {}", rest.trim()));
        }
    }
    vendor_name.map(|name| format!("{name} device {device}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        assert!(process_count() > 0);
        // Counting never fails, even where a file is missing.
        let _ = socket_count("tcp");
        assert_eq!(socket_count("no-such-protocol"), 0);
        assert_eq!(link_speed_mbps("no-such-interface"), None);
        let _ = virtualization();
        let _ = gpus();
    }

    #[test]
    fn the_machine_fingerprint_follows_the_machine_id() {
        let ours = machine_fingerprint(None);
        assert_eq!(ours, machine_fingerprint(None), "stable within a boot");
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("machine-id");
        std::fs::write(&other, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_ne!(machine_fingerprint(Some(&other)), ours);
        std::fs::write(&other, "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            machine_fingerprint(Some(&other)),
            machine_fingerprint(Some(&other)),
            "whitespace does not matter"
        );
    }
}
