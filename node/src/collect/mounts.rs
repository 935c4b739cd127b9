//! Filesystems, one entry each however often they are mounted, from `/proc/self/mountinfo`
//! (`proc(5)`): a bind mount (`mount --bind /var /mnt/b`) or a second mount of the same device
//! is the same filesystem, so it is one disk in the facts and one in every heartbeat, listing
//! all its mount points, and its size counts once.
//!
//! Left out, as node_exporter leaves them out by default: pseudo and transient filesystems
//! (`proc`, `sysfs`, `tmpfs`, `overlay`, `squashfs` — snap packages are squashfs loop mounts —,
//! `nsfs`, cgroups, ...), and mount points under `/dev`, `/proc`, `/sys`, `/run/credentials`
//! and container storage. Also left out: network and FUSE filesystems (`nfs`, `cifs`, `ceph`,
//! `fuse.sshfs`, ...), because measuring one whose server hangs would hang the agent.

use std::collections::BTreeMap;

/// One line of `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// `major:minor` of the filesystem's device (field 3).
    pub device: (u32, u32),
    /// The directory of the filesystem mounted here: `/` for its root, `/var` for a bind mount of
    /// `/var` (field 4).
    pub root: String,
    /// Where it is mounted (field 5).
    pub mount_point: String,
    /// Filesystem type, e.g. `ext4` (after the ` - ` separator).
    pub fs_type: String,
    /// Mount source, e.g. `/dev/vda1` (after the type).
    pub source: String,
}

/// A filesystem with every place it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filesystem {
    /// The mount source, e.g. `/dev/vda1`.
    pub source: String,
    /// `major:minor` from `mountinfo`.
    pub device: (u32, u32),
    /// Filesystem type.
    pub fs_type: String,
    /// Mount points, the primary first (where the filesystem's own root is mounted, else the
    /// shortest path), then the others in order.
    pub mounts: Vec<String>,
}

impl Filesystem {
    /// Where it is measured and what heartbeats name it by.
    pub fn primary(&self) -> &str {
        &self.mounts[0]
    }
}

/// Pseudo and transient filesystem types (node_exporter's default exclusions, plus `tmpfs` and
/// `ramfs`, whose contents vanish at reboot) and network types.
const SKIPPED_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    // Network filesystems: measuring one whose server is gone blocks.
    "9p",
    "afs",
    "ceph",
    "cifs",
    "glusterfs",
    "lustre",
    "ncpfs",
    "nfs",
    "nfs4",
    "smb3",
    "smbfs",
];

/// Mount points under these (or equal to them) are left out: kernel interfaces and the private
/// layers of container engines.
const SKIPPED_PLACES: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run/credentials",
    "/var/lib/docker",
    "/var/lib/containers/storage",
    "/var/lib/kubelet/pods",
];

/// Whether a mount is left out of disks, by type and place.
fn skipped(mount: &Mount) -> bool {
    // `fuse.sshfs`, `fuse.s3fs`, `fuse.lxcfs`... are userspace, often remote or virtual;
    // `fuseblk` (ntfs-3g, exfat) is a local block device and stays.
    if SKIPPED_TYPES.contains(&mount.fs_type.as_str()) || mount.fs_type.starts_with("fuse.") {
        return true;
    }
    SKIPPED_PLACES.iter().any(|place| {
        mount
            .mount_point
            .strip_prefix(place)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011` tab, `\012` newline, `\134`
/// backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(value) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `mountinfo` text; lines that do not parse are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let mut after = after.split(' ');
    let fs_type = unescape(after.next()?);
    let source = unescape(after.next().unwrap_or(""));
    Some(Mount {
        device: (major.parse().ok()?, minor.parse().ok()?),
        root,
        mount_point,
        fs_type,
        source,
    })
}

/// Groups mounts into filesystems, leaving out what [`skipped`] names. The key is the source
/// when it is a device path (so the subvolumes of one btrfs, which have devices of their own,
/// count once), else the device number. In order of primary mount point.
pub(crate) fn filesystems(mounts: &[Mount]) -> Vec<Filesystem> {
    let mut groups: BTreeMap<String, Vec<&Mount>> = BTreeMap::new();
    for mount in mounts.iter().filter(|m| !skipped(m)) {
        let key = if mount.source.starts_with('/') {
            mount.source.clone()
        } else {
            format!("{}:{}", mount.device.0, mount.device.1)
        };
        groups.entry(key).or_default().push(mount);
    }
    let mut out: Vec<Filesystem> = groups
        .into_values()
        .map(|mut group| {
            group.sort_by(|a, b| {
                (a.root != "/", a.mount_point.len(), &a.mount_point).cmp(&(
                    b.root != "/",
                    b.mount_point.len(),
                    &b.mount_point,
                ))
            });
            let primary = group[0];
            let mut mounts: Vec<String> = Vec::with_capacity(group.len());
            for mount in &group {
                if !mounts.contains(&mount.mount_point) {
                    mounts.push(mount.mount_point.clone());
                }
            }
            mounts[1..].sort();
            Filesystem {
                source: primary.source.clone(),
                device: primary.device,
                fs_type: primary.fs_type.clone(),
                mounts,
            }
        })
        .collect();
    out.sort_by(|a, b| a.primary().cmp(b.primary()));
    out
}

/// This machine's filesystems now.
pub(crate) fn read() -> Vec<Filesystem> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| filesystems(&parse_mountinfo(&text)))
        .unwrap_or_default()
}

/// Size and use of a mounted filesystem, bytes: (total, used), as `df` shows them (used is the
/// size less the free blocks; blocks reserved for root count as free).
pub(crate) fn usage(mount_point: &str) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(mount_point).ok()?;
    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
    let free = stat.f_bfree.saturating_mul(stat.f_frsize);
    Some((total, total.saturating_sub(free)))
}

/// `ssd`, `hdd` or `unknown`, from the block device's `queue/rotational` in sysfs (a
/// partition's is its disk's).
pub(crate) fn kind(filesystem: &Filesystem) -> &'static str {
    // A device path's own number is the disk's; mountinfo's may be an anonymous one (btrfs).
    let device = rustix::fs::stat(filesystem.source.as_str())
        .ok()
        .filter(|stat| stat.st_rdev != 0)
        .map_or(filesystem.device, |stat| {
            (
                rustix::fs::major(stat.st_rdev),
                rustix::fs::minor(stat.st_rdev),
            )
        });
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{}:{}", device.0, device.1));
    let queue = if sys.join("partition").exists() {
        sys.join("../queue/rotational")
    } else {
        sys.join("queue/rotational")
    };
    match std::fs::read_to_string(queue).as_deref().map(str::trim) {
        Ok("0") => "ssd",
        Ok("1") => "hdd",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a Debian VM with three bind mounts of /var, a second mount of the root
    /// device, snap packages, a container's overlay and the usual pseudo filesystems.
    const CAPTURED: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k,nr_inodes=3083608,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw,discard
28 27 0:25 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=2468364k,mode=755
31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
40 27 254:16 / /data rw,relatime shared:30 - xfs /dev/vdb rw,attr2
41 27 254:1 /var /mnt/b1 rw,relatime - ext4 /dev/vda1 rw,discard
42 27 254:1 /var /mnt/b2 rw,relatime - ext4 /dev/vda1 rw,discard
43 27 254:1 /var /mnt/b3 rw,relatime - ext4 /dev/vda1 rw,discard
44 27 254:1 / /srv/root\\040copy rw,relatime - ext4 /dev/vda1 rw,discard
50 27 7:0 / /snap/core22/1380 ro,nodev,relatime shared:31 - squashfs /dev/loop0 ro
51 27 0:40 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=x
52 27 0:41 / /home/me/remote rw,nosuid - fuse.sshfs me@host:/ rw,user_id=1000
53 27 0:42 / /mnt/nfs rw,relatime - nfs4 server:/export rw,vers=4.2
54 27 8:2 / /mnt/usb rw,relatime - fuseblk /dev/sda2 rw,user_id=0
55 27 0:50 /@ /btrfs rw,relatime - btrfs /dev/sdc1 rw,space_cache
56 27 0:51 /@home /btrfs/home rw,relatime - btrfs /dev/sdc1 rw,space_cache
";

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let mounts = parse_mountinfo(CAPTURED);
        assert_eq!(mounts.len(), 20);
        let copy = mounts
            .iter()
            .find(|m| m.mount_point.contains("copy"))
            .unwrap();
        assert_eq!(copy.mount_point, "/srv/root copy");
        assert_eq!(copy.device, (254, 1));
        assert_eq!(copy.fs_type, "ext4");
        assert_eq!(copy.source, "/dev/vda1");
        assert!(parse_mountinfo("garbage\n\n1 2 x / / - ext4").is_empty());
        assert_eq!(unescape(r"a\134b\011c\0"), "a\\b\tc\\0");
    }

    #[test]
    fn one_entry_per_filesystem_listing_every_mount_point() {
        let found = filesystems(&parse_mountinfo(CAPTURED));
        let summary: Vec<(&str, Vec<&str>)> = found
            .iter()
            .map(|f| {
                (
                    f.source.as_str(),
                    f.mounts.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "/dev/vda1",
                    vec!["/", "/mnt/b1", "/mnt/b2", "/mnt/b3", "/srv/root copy"]
                ),
                ("/dev/sdc1", vec!["/btrfs", "/btrfs/home"]),
                ("/dev/vdb", vec!["/data"]),
                ("/dev/sda2", vec!["/mnt/usb"]),
            ]
        );
        assert_eq!(found[0].fs_type, "ext4");
        assert_eq!(found[0].primary(), "/");
    }

    #[test]
    fn a_bind_mount_alone_is_named_by_its_shortest_mount_point() {
        let text = "\
41 27 254:1 /var /mnt/long/b1 rw - ext4 /dev/vda1 rw
42 27 254:1 /var /mnt/b2 rw - ext4 /dev/vda1 rw
";
        let found = filesystems(&parse_mountinfo(text));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].mounts, ["/mnt/b2", "/mnt/long/b1"]);
    }

    #[test]
    fn pseudo_network_and_container_mounts_are_left_out() {
        let mount = |fs_type: &str, mount_point: &str| Mount {
            device: (0, 1),
            root: "/".into(),
            mount_point: mount_point.into(),
            fs_type: fs_type.into(),
            source: "x".into(),
        };
        for (fs_type, place) in [
            ("tmpfs", "/run"),
            ("overlay", "/"),
            ("squashfs", "/snap/core/1"),
            ("nsfs", "/run/netns/a"),
            ("nfs", "/mnt/nfs"),
            ("fuse.sshfs", "/home/me/x"),
            ("ext4", "/var/lib/docker/volumes/x"),
            ("ext4", "/dev/something"),
            ("ext4", "/run/credentials/unit"),
        ] {
            assert!(skipped(&mount(fs_type, place)), "{fs_type} on {place}");
        }
        for (fs_type, place) in [
            ("ext4", "/"),
            ("xfs", "/devices"),
            ("fuseblk", "/mnt/usb"),
            ("zfs", "/tank"),
        ] {
            assert!(!skipped(&mount(fs_type, place)), "{fs_type} on {place}");
        }
    }

    #[test]
    fn this_machines_root_is_measured() {
        let Some((total, used)) = usage("/") else {
            panic!("statvfs of / failed");
        };
        assert!(total > 0 && used <= total);
        assert_eq!(usage("/no/such/place"), None);
    }
}
