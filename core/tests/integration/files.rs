//! Every command that writes a file the user names handles a bare name, a relative path and an
//! absolute one alike: it exits 0 and the file is there, with mode 0600 (they all hold
//! secrets). A bare name's directory is `.`, not the empty path.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::*;

/// Builds the command that writes to the file named by its argument.
type Writer<'a> = Box<dyn Fn(&str) -> Command + 'a>;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn every_writer_takes_bare_relative_and_absolute_names() {
    let (core, _admin, _nodes, _tmp) =
        start_fleet(1, |_| {}, |c| c.shell = Some("/bin/sh".into())).await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    // A recorded session to export.
    let session = Command::new(binary("tether"))
        .arg("--identity")
        .arg(&identity)
        .args([
            "--core",
            &addr,
            "tty",
            "host-00",
            "--command",
            "echo recorded",
        ])
        .stdin(std::fs::File::open("/dev/null").unwrap())
        .output()
        .unwrap();
    assert!(session.status.success());
    let listed = tether_json(&identity, &addr, &["tty", "list", "--json"]);
    let session_id = listed[0]["id"].as_str().unwrap().to_string();

    let added = tether(
        &identity,
        &addr,
        &["user", "add", "carol", "--role", "viewer", "--no-password"],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("sub")).unwrap();
    let absolute = cwd.path().join("abs");
    std::fs::create_dir(&absolute).unwrap();
    let writers: Vec<(&str, Writer<'_>)> = vec![
        (
            "tether user cert",
            Box::new(|out: &str| {
                let mut command = Command::new(binary("tether"));
                command
                    .arg("--identity")
                    .arg(&identity)
                    .args(["--core", &addr, "user", "cert", "carol", "--out", out]);
                command
            }),
        ),
        (
            "tether backup",
            Box::new(|out: &str| {
                let mut command = Command::new(binary("tether"));
                command.arg("--identity").arg(&identity).args([
                    "--core",
                    &addr,
                    "backup",
                    "--no-recordings",
                    "--out",
                    out,
                ]);
                command
            }),
        ),
        (
            "tether tty export",
            Box::new(|out: &str| {
                let mut command = Command::new(binary("tether"));
                command.arg("--identity").arg(&identity).args([
                    "--core",
                    &addr,
                    "tty",
                    "export",
                    &session_id,
                    "--out",
                    out,
                ]);
                command
            }),
        ),
    ];
    for (i, (what, writer)) in writers.iter().enumerate() {
        for form in [
            format!("bare-{i}"),
            format!("sub/relative-{i}"),
            absolute.join(format!("absolute-{i}")).display().to_string(),
        ] {
            let output = writer(&form).current_dir(cwd.path()).output().unwrap();
            assert!(
                output.status.success(),
                "{what} --out {form}: exit {:?}: {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            );
            let written = cwd.path().join(&form);
            assert!(written.is_file(), "{what} wrote {form}");
            assert_eq!(mode(&written), 0o600, "{what} {form}");
        }
    }
    // `-` is standard output.
    let exported = writers[2].1("-").current_dir(cwd.path()).output().unwrap();
    assert!(exported.status.success());
    assert!(exported.stdout.starts_with(b"{\"version\":2"));
    let backup = writers[1].1("-").current_dir(cwd.path()).output().unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert_eq!(
        backup.stdout[..4],
        [0x28, 0xb5, 0x2f, 0xfd],
        "a zstd stream"
    );
    assert!(!cwd.path().join("-").exists());
    // Nothing but what was asked for: no temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
