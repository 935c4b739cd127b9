//! Agent releases with a real core: uploads checked for signature (a key core trusts), size and
//! SHA-256 before anything is kept; duplicates refused; list, show and delete; the roles of
//! seed 002 (viewers list, operators upload, only admins delete); every request audited; and
//! the CLI's keygen, sign and upload end to end.

use crate::support;

use std::path::Path;

use sha2::Digest as _;
use support::*;
use tether_certs::release::{ReleaseSigningKey, format_public_key};
use tether_client::{AdminClient, ClientError};
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::bytes::FixedBytes;
use tether_wire::releases::{Manifest, ReleaseView};

fn manifest(key: &ReleaseSigningKey, version: &str, body: &[u8]) -> Manifest {
    let mut manifest = Manifest {
        version: version.into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        size: body.len() as u64,
        sha256: FixedBytes(sha2::Sha256::digest(body).into()),
        key: key.public(),
        signature: FixedBytes([0; 64]),
    };
    key.sign(&mut manifest);
    manifest
}

async fn upload(
    client: &AdminClient,
    manifest: &Manifest,
    body: &[u8],
) -> Result<Vec<ReleaseView>, ClientError> {
    let request = AdminRequest::ReleaseUpload {
        manifest: manifest.clone(),
        notes: "notes".into(),
    };
    let responses = client.upload(&request, body, |_| {}).await?;
    match responses.as_slice() {
        [AdminResponse::Releases(all)] => Ok(all.clone()),
        other => panic!("unexpected {other:?}"),
    }
}

async fn list(client: &AdminClient) -> Vec<ReleaseView> {
    match client
        .request(&AdminRequest::ReleaseList)
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Releases(all)) => all,
        other => panic!("unexpected {other:?}"),
    }
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Core { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Files in the release directory (uploads under way included).
fn files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("releases"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn uploads_are_checked_before_they_are_kept() {
    let key = ReleaseSigningKey::generate();
    let public = key.public();
    let core = TestCore::start(|c| c.release_keys = vec![public]).await;
    let admin = core.admin().await;
    // A body larger than one upload frame.
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let good = manifest(&key, "1.2.0", &body);

    let kept = upload(&admin.0, &good, &body).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].release.manifest, good);
    assert_eq!(kept[0].release.notes, "notes");
    let sha = hex::encode(good.sha256.as_bytes());
    assert_eq!(files(&core.data()), vec![sha.clone()]);
    let stored = core.data().join("releases").join(&sha);
    assert_eq!(std::fs::read(&stored).unwrap(), body);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(mode(&core.data().join("releases")), 0o700);

    // A duplicate version/OS/arch, even of another file.
    let other = manifest(&key, "1.2.0", b"other bytes");
    let (c, m) = code(upload(&admin.0, &other, b"other bytes").await);
    assert_eq!(c, ErrorCode::CONFLICT, "{m}");
    assert!(m.contains("1.2.0 linux/x86_64 exists"), "{m}");

    // A file that does not match its manifest: a changed byte, one byte short, one too many.
    let mut tampered = body.clone();
    tampered[1000] ^= 1;
    let v2 = manifest(&key, "1.3.0", &body);
    let (c, m) = code(upload(&admin.0, &v2, &tampered).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT, "{m}");
    assert!(m.contains("SHA-256"), "{m}");
    let (_, m) = code(upload(&admin.0, &v2, &body[..body.len() - 1]).await);
    assert!(m.contains("manifest says"), "{m}");
    let mut longer = body.clone();
    longer.push(0);
    let (_, m) = code(upload(&admin.0, &v2, &longer).await);
    assert!(m.contains("larger than its manifest"), "{m}");

    // Signed by a key core does not trust; a signature that does not verify.
    let stranger = ReleaseSigningKey::generate();
    let (c, m) = code(upload(&admin.0, &manifest(&stranger, "1.3.0", &body), &body).await);
    assert_eq!(c, ErrorCode::BAD_SIGNATURE, "{m}");
    assert!(m.contains("not trusted"), "{m}");
    let mut forged = manifest(&key, "1.3.0", &body);
    forged.version = "1.4.0".into();
    let (c, m) = code(upload(&admin.0, &forged, &body).await);
    assert_eq!(c, ErrorCode::BAD_SIGNATURE, "{m}");
    assert!(m.contains("does not verify"), "{m}");

    // Bad shapes.
    let mut bad = manifest(&key, "1.3.0", &body);
    bad.arch = "X86 64".into();
    let (c, m) = code(upload(&admin.0, &bad, &body).await);
    assert_eq!(c, ErrorCode::INVALID_ARGUMENT, "{m}");

    // Nothing of those was kept.
    let all = list(&admin.0).await;
    assert_eq!(all.len(), 1);
    assert_eq!(files(&core.data()), vec![sha.clone()]);

    // Roles: viewers list, operators upload but do not delete, admins delete.
    let (_, viewer) = core.user(&admin.0, "vera", Role::Viewer).await;
    let (_, operator) = core.user(&admin.0, "otto", Role::Operator).await;
    assert_eq!(list(&viewer).await.len(), 1);
    let (c, _) = code(upload(&viewer, &v2, &body).await);
    assert_eq!(c, ErrorCode::PERMISSION_DENIED);
    upload(&operator, &v2, &body).await.unwrap();
    let (c, _) = code(
        operator
            .request(&AdminRequest::ReleaseDelete {
                version: "1.3.0".into(),
                os: None,
                arch: None,
            })
            .await,
    );
    assert_eq!(c, ErrorCode::PERMISSION_DENIED);

    // Show a version; delete one: its file goes only when no other release has it.
    match admin
        .request(AdminRequest::ReleaseShow {
            version: "1.3.0".into(),
        })
        .await
        .unwrap()
        .pop()
    {
        Some(AdminResponse::Releases(builds)) => {
            assert_eq!(builds.len(), 1);
            assert_eq!(builds[0].release.uploaded_by, "otto");
        }
        other => panic!("unexpected {other:?}"),
    }
    admin
        .request(AdminRequest::ReleaseDelete {
            version: "1.3.0".into(),
            os: None,
            arch: None,
        })
        .await
        .unwrap();
    assert_eq!(
        files(&core.data()),
        vec![sha.clone()],
        "1.2.0 has the same file"
    );
    let (c, _) = code(
        admin
            .request(AdminRequest::ReleaseShow {
                version: "1.3.0".into(),
            })
            .await,
    );
    assert_eq!(c, ErrorCode::NOT_FOUND);
    let (c, _) = code(
        admin
            .request(AdminRequest::ReleaseDelete {
                version: "1.2.0".into(),
                os: Some("freebsd".into()),
                arch: None,
            })
            .await,
    );
    assert_eq!(c, ErrorCode::NOT_FOUND);
    admin
        .request(AdminRequest::ReleaseDelete {
            version: "1.2.0".into(),
            os: None,
            arch: None,
        })
        .await
        .unwrap();
    assert!(list(&admin.0).await.is_empty());
    assert!(files(&core.data()).is_empty());

    // Each upload is in the audit log with the file's digest and the signing key, refusals too.
    let audit = format!(
        "{:?}",
        admin
            .request(AdminRequest::Audit(tether_wire::users::AuditQuery {
                action: Some("versions".into()),
                limit: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
    );
    assert!(audit.contains(&sha), "{audit}");
    assert!(audit.contains("ReleaseDelete"), "{audit}");
    assert!(audit.contains("not trusted"), "{audit}");
}

#[tokio::test]
async fn a_core_without_release_keys_refuses_uploads_and_says_how() {
    let core = TestCore::start(|_| {}).await;
    let admin = core.admin().await;
    let key = ReleaseSigningKey::generate();
    let (c, m) = code(upload(&admin.0, &manifest(&key, "1.0.0", b"x"), b"x").await);
    assert_eq!(c, ErrorCode::BAD_SIGNATURE);
    assert!(m.contains("--release-key"), "{m}");
    assert!(list(&admin.0).await.is_empty());
}

/// The CLI end to end: keygen (0600, refuses to overwrite), sign (architecture from the ELF
/// header), upload with the key core was started with, list and show as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keygen_sign_upload() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("release.key");
    let out = std::process::Command::new(binary("tether"))
        .args(["release", "keygen", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(public.len(), 44, "{public}");
    let again = std::process::Command::new(binary("tether"))
        .args(["release", "keygen", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not replacing"));
    let key = ReleaseSigningKey::load(&key_file).unwrap();
    assert_eq!(format_public_key(&key.public()), public);

    // Sign the agent binary itself.
    let agent = binary("tether-node");
    let manifest_file = dir.path().join("agent.toml");
    let out = std::process::Command::new(binary("tether"))
        .args(["release", "sign"])
        .arg(&agent)
        .arg("--key")
        .arg(&key_file)
        .args(["--version", "9.9.9", "--out"])
        .arg(&manifest_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&manifest_file).unwrap();
    assert!(
        text.contains(&format!("arch = \"{}\"", std::env::consts::ARCH)),
        "{text}"
    );

    let core = TestCore::start(|c| c.release_keys = vec![key.public()]).await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let out = tether(
        &identity,
        &addr,
        &[
            "release",
            "upload",
            agent.to_str().unwrap(),
            "--manifest",
            manifest_file.to_str().unwrap(),
            "--notes",
            "first",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let listed = tether_json(&identity, &addr, &["release", "list", "--json"]);
    assert_eq!(listed[0]["version"], "9.9.9");
    assert_eq!(listed[0]["notes"], "first");
    assert_eq!(listed[0]["key"], public);
    assert_eq!(listed[0]["size"], std::fs::metadata(&agent).unwrap().len());
    let shown = tether_json(&identity, &addr, &["release", "show", "9.9.9", "--json"]);
    assert_eq!(shown[0]["uploaded_by"], "admin");

    // A manifest for another file: the CLI says so before sending anything.
    let out = tether(
        &identity,
        &addr,
        &[
            "release",
            "upload",
            binary("tether").to_str().unwrap(),
            "--manifest",
            manifest_file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not match its manifest"),
        "{out:?}"
    );
    // Not an ELF file, no --arch.
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/bin/sh\nexit 1\n").unwrap();
    let out = std::process::Command::new(binary("tether"))
        .args(["release", "sign"])
        .arg(&script)
        .arg("--key")
        .arg(&key_file)
        .args(["--version", "1", "--out"])
        .arg(dir.path().join("s.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--arch"),
        "{out:?}"
    );
}
