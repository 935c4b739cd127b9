//! Backups taken from a running core, restored for a new one: real `tether-core`, `tether` and
//! `tether-node` processes, real redb files, while the core is busy.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::*;
use tether_certs::identity::AdminIdentity;
use tether_client::AdminClient;
use tether_wire::NodeId;
use tether_wire::admin::{AdminRequest, AdminResponse, ApplicationStatus, NodeStatus};

async fn connect(identity: &Path, addr: &str) -> Admin {
    let identity = AdminIdentity::load(identity).unwrap();
    Admin(AdminClient::connect(&identity, Some(addr)).await.unwrap())
}

fn run(binary_name: &str, cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary(binary_name))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// What the burst wrote, and when each write was acknowledged.
enum Write {
    Approved(tether_wire::ApplicationId, Instant),
    /// The node's `seq` label set to this.
    Labelled(u64, Instant),
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_during_a_burst_restores_into_a_core_the_fleet_reconnects_to() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let data = tmp.path().join("core");
    let mut core = spawn_core(&data, port, &[]);
    let identity = data.join("admin.identity");
    let ca: tether_wire::token::Fingerprint = AdminIdentity::load(&identity)
        .unwrap()
        .ca_fingerprint
        .parse()
        .unwrap();
    wait_for_core(addr.parse().unwrap(), ca).await;
    let admin = connect(&identity, &addr).await;

    // A real agent, approved before the backup: it must find the restored core by itself.
    let token = join_token_of(&data);
    let state = tmp.path().join("agent");
    let _agent = spawn_node(&state, &addr, Some(&token));
    let node = node_id_in(&state).await;
    let application = eventually("the agent's application", || async {
        admin
            .applications()
            .await
            .into_iter()
            .find(|a| a.node_id == node)
    })
    .await;
    admin.approve(&application.id.to_string()).await;
    wait_status(&admin, node, NodeStatus::Online).await;

    // Forty machines waiting for approval.
    let token_parsed = tether_wire::token::JoinToken::parse(&token).unwrap();
    let mut waiting = Vec::new();
    for _ in 0..40 {
        let mut raw = RawNode::connect(addr.parse().unwrap(), ca).await;
        raw.enroll(&token_parsed, NodeId::random()).await;
        assert!(matches!(
            raw.recv().await,
            Some(tether_wire::control::CoreMessage::EnrollPending { .. })
        ));
        waiting.push(raw);
    }
    let pending: Vec<_> = admin
        .applications()
        .await
        .into_iter()
        .filter(|a| a.status == ApplicationStatus::Pending)
        .map(|a| a.id)
        .collect();
    assert_eq!(pending.len(), 40);

    // The burst: approvals, then label changes until the backup is over, each remembered with
    // the moment it was acknowledged. The backup begins halfway through the approvals.
    let (halfway_tx, halfway) = tokio::sync::oneshot::channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burst = {
        let admin = connect(&identity, &addr).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut writes = Vec::new();
            let mut halfway_tx = Some(halfway_tx);
            for (i, id) in pending.into_iter().enumerate() {
                admin.approve(&id.to_string()).await;
                writes.push(Write::Approved(id, Instant::now()));
                if i == 19 {
                    let _ = halfway_tx.take().unwrap().send(());
                }
            }
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && seq < 100_000 {
                seq += 1;
                admin
                    .request(AdminRequest::LabelNode {
                        id: node.to_string(),
                        set: vec![("seq".into(), seq.to_string())],
                        remove: vec![],
                    })
                    .await
                    .unwrap();
                writes.push(Write::Labelled(seq, Instant::now()));
                // Steady, not flat out: the backup must not be starved on a busy machine.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            writes
        })
    };
    halfway.await.unwrap();
    // The backup, from the running core, to a bare file name in the working directory.
    let began = Instant::now();
    let backup = {
        let (cwd, identity, addr) = (tmp.path().to_path_buf(), identity.clone(), addr.clone());
        tokio::task::spawn_blocking(move || {
            run(
                "tether",
                &cwd,
                &[
                    "--identity",
                    identity.to_str().unwrap(),
                    "--core",
                    &addr,
                    "backup",
                    "--out",
                    "fleet.backup",
                    "--json",
                ],
            )
        })
    };
    let backup = backup.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = burst.await.unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&backup.stdout).unwrap();
    let file = tmp.path().join("fleet.backup");
    assert_eq!(summary["bytes"], std::fs::metadata(&file).unwrap().len());
    assert!(summary["nodes"].as_u64().unwrap() >= 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before: Vec<&Write> = writes
        .iter()
        .filter(|w| match w {
            Write::Approved(_, at) | Write::Labelled(_, at) => *at < began,
        })
        .collect();
    assert!(
        before.len() >= 20,
        "half the approvals were acknowledged before the backup"
    );
    assert!(
        before.len() < writes.len(),
        "and writes went on while it was taken"
    );

    // The old core is gone for good.
    core.kill9();
    drop(waiting);

    // Restoring refuses a directory in use, and changes nothing in it.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep-me"), "x").unwrap();
    let refused = run(
        "tether-core",
        tmp.path(),
        &["restore", "--from", "fleet.backup", "--data", "busy"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    let restored = run(
        "tether-core",
        tmp.path(),
        &["restore", "--from", "fleet.backup", "--data", "restored"],
    );
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let new_data = tmp.path().join("restored");
    assert_eq!(
        std::fs::metadata(&new_data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for secret in [
        "ca.key",
        "server.key",
        "enrollment.secret",
        "quic-reset.key",
        "tether.redb",
    ] {
        assert_eq!(
            std::fs::metadata(new_data.join(secret))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{secret}"
        );
    }
    assert_eq!(
        std::fs::read(new_data.join("ca.key")).unwrap(),
        std::fs::read(data.join("ca.key")).unwrap()
    );

    // A new core on the restored directory, at the address the fleet knows.
    let _new_core = spawn_core(&new_data, port, &[]);
    wait_for_core(addr.parse().unwrap(), ca).await;
    let admin = connect(&identity, &addr).await;
    // The agent comes back by itself.
    wait_status(&admin, node, NodeStatus::Online).await;
    // Every write acknowledged before the backup began is there.
    let apps = admin.applications().await;
    let shown = admin.node(node).await.unwrap();
    let restored_seq: u64 = shown
        .labels
        .get("seq")
        .map_or(0, |seq| seq.parse().unwrap());
    for write in before {
        match write {
            Write::Approved(id, _) => {
                let app = apps.iter().find(|a| a.id == *id).expect("kept");
                assert_eq!(app.status, ApplicationStatus::Approved);
            }
            Write::Labelled(seq, _) => assert!(restored_seq >= *seq, "{restored_seq} < {seq}"),
        }
    }
    // The restored core is the same core to its fleet: same CA, same join token secret.
    assert_eq!(join_token_of(&new_data), token);
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_are_for_admins_and_a_damaged_one_restores_nothing() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let (_, operator) = core
        .user(&admin.0, "vera", tether_wire::admin::Role::Operator)
        .await;
    match operator
        .request(&AdminRequest::Backup { recordings: true })
        .await
    {
        Err(tether_client::ClientError::Core { code, message }) => {
            assert_eq!(code, tether_wire::ErrorCode::PERMISSION_DENIED);
            assert!(message.contains("admin"), "{message}");
        }
        other => panic!("an operator may not take a backup: {other:?}"),
    }

    // A backup through the library client, streamed (the admin from above).
    let mut answers = admin
        .0
        .stream(&AdminRequest::Backup { recordings: false })
        .await
        .unwrap();
    let mut archive = Vec::new();
    while let Some(answer) = answers.next().await.unwrap() {
        if let AdminResponse::BackupChunk(chunk) = answer {
            archive.extend_from_slice(&chunk.0);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.backup");
    std::fs::write(&good, &archive).unwrap();
    assert!(tether_client::archive::check(&good).is_ok());
    // Cut short, or damaged in the middle: refused, and nothing is left behind.
    for (name, bytes) in [
        ("short.backup", archive[..archive.len() * 2 / 3].to_vec()),
        ("damaged.backup", {
            let mut bytes = archive.clone();
            let middle = bytes.len() / 2;
            for byte in &mut bytes[middle..middle + 64] {
                *byte ^= 0xff;
            }
            bytes
        }),
        // A few bytes near the end, where only zstd's checksum can tell.
        ("late.backup", {
            let mut bytes = archive.clone();
            let late = bytes.len() * 9 / 10;
            for byte in &mut bytes[late..late + 8] {
                *byte ^= 0x55;
            }
            bytes
        }),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let target = tmp.path().join(format!("{name}.restored"));
        let error = tether_core::backup::restore(&path, &target).unwrap_err();
        assert!(
            error.to_string().contains("damaged") || error.to_string().contains("incomplete"),
            "{name}: {error}"
        );
        assert!(!target.exists(), "{name}: nothing is left half restored");
        assert!(tether_client::archive::check(&path).is_err(), "{name}");
    }
    let restored = tether_core::backup::restore(&good, &tmp.path().join("ok")).unwrap();
    assert_eq!(restored.manifest.format, tether_core::backup::FORMAT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_database_is_refused_with_the_way_to_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let data = tmp.path().join("core");
    let mut core = spawn_core(&data, port, &[]);
    let identity = data.join("admin.identity");
    let ca = AdminIdentity::load(&identity)
        .unwrap()
        .ca_fingerprint
        .parse()
        .unwrap();
    wait_for_core(format!("127.0.0.1:{port}").parse().unwrap(), ca).await;
    core.kill9();
    // Up to 64 KiB of noise over the database's first pages.
    let path = data.join("tether.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len().min(4096 + 65536);
    for (i, byte) in bytes[4096..end].iter_mut().enumerate() {
        *byte ^= 0x5a ^ (i as u8);
    }
    std::fs::write(&path, bytes).unwrap();
    let mut again = spawn_core(&data, port, &[]);
    let (code, log) = again.wait_exit(PATIENCE);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("the database is damaged") && log.contains("tether-core restore --from"),
        "{log}"
    );
}
