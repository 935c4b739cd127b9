//! `tether user ...` and `tether audit ...` as an operator types them: the real CLI against a
//! real core.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

fn run_with_stdin(
    identity: &std::path::Path,
    core: &str,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let mut child = Command::new(binary("tether"))
        .arg("--identity")
        .arg(identity)
        .args(["--core", core])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn users_certificates_and_the_audit_log_from_the_cli() {
    let core = TestCore::start(|_| {}).await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let tmp = tempfile::tempdir().unwrap();

    // The bootstrap admin exists as a user, with its certificate.
    let users = tether_json(&identity, &addr, &["user", "list", "--json"]);
    assert_eq!(users[0]["name"], "admin");
    assert_eq!(users[0]["role"], "admin");
    assert_eq!(users[0]["active_certs"], 1);

    // A password from stdin; a generated one printed once (JSON carries it).
    let added = run_with_stdin(
        &identity,
        &addr,
        &[
            "user",
            "add",
            "otto",
            "--role",
            "operator",
            "--email",
            "otto@example.com",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(added.stdout.is_empty(), "no password printed when given");
    let generated = tether(
        &identity,
        &addr,
        &["user", "add", "vera", "--role", "viewer"],
    );
    assert!(generated.status.success(), "{}", stderr(&generated));
    let password = String::from_utf8(generated.stdout.clone()).unwrap();
    assert_eq!(password.trim().len(), 24, "{password:?}");
    assert!(stderr(&generated).contains("shown this once"));

    // Bad input: a clear error, exit 1 (2 for usage), nothing changed.
    let short = run_with_stdin(
        &identity,
        &addr,
        &["user", "add", "sam", "--role", "viewer", "--password-stdin"],
        "short\n",
    );
    assert_eq!(short.status.code(), Some(1));
    assert!(stderr(&short).contains("at least 12"), "{}", stderr(&short));
    let duplicate = tether(
        &identity,
        &addr,
        &["user", "add", "otto", "--role", "viewer", "--no-password"],
    );
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );
    let unknown_role = tether(&identity, &addr, &["user", "add", "sam", "--role", "root"]);
    assert_eq!(unknown_role.status.code(), Some(2));
    assert!(
        stderr(&unknown_role).contains("unknown role"),
        "{}",
        stderr(&unknown_role)
    );
    let users = tether_json(&identity, &addr, &["user", "list", "--json"]);
    assert_eq!(users.as_array().unwrap().len(), 3, "admin, otto, vera");

    // A certificate for otto: the identity works, as otto, an operator.
    let otto = tmp.path().join("otto.identity");
    let cert = tether_json(
        &identity,
        &addr,
        &[
            "user",
            "cert",
            "otto",
            "--out",
            otto.to_str().unwrap(),
            "--expires",
            "30days",
            "--json",
        ],
    );
    let serial = cert["serial"].as_str().unwrap().to_string();
    let pong = tether_json(&otto, &addr, &["ping", "--json"]);
    assert_eq!(pong["admin"], "otto");
    assert_eq!(pong["role"], "operator");
    let again = tether(
        &identity,
        &addr,
        &["user", "cert", "otto", "--out", otto.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(1), "never overwritten");
    let certs = tether_json(&identity, &addr, &["user", "certs", "otto", "--json"]);
    assert_eq!(certs[0]["serial"], serial.as_str());
    assert_eq!(certs[0]["state"], "valid");

    // A file that cannot be written: nothing issued, or nothing left valid.
    let nowhere = tether(
        &identity,
        &addr,
        &[
            "user",
            "cert",
            "otto",
            "--out",
            "/nonexistent/dir/otto.identity",
        ],
    );
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(
        stderr(&nowhere).contains("not a directory"),
        "{}",
        stderr(&nowhere)
    );
    let certs_now = tether_json(&identity, &addr, &["user", "certs", "otto", "--json"]);
    assert_eq!(certs_now.as_array().unwrap().len(), 1, "nothing issued");

    // The role comes from the user record: changed, it applies to the same identity at once.
    let role = tether(&identity, &addr, &["user", "role", "otto", "viewer"]);
    assert!(role.status.success(), "{}", stderr(&role));
    assert_eq!(
        tether_json(&otto, &addr, &["ping", "--json"])["role"],
        "viewer"
    );
    let refused = tether(&otto, &addr, &["node", "label", "x", "a=b"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("nodes.edit needs the admin or operator role"),
        "{}",
        stderr(&refused)
    );

    // Revoked: refused with the reason.
    let revoked = tether(&identity, &addr, &["user", "revoke-cert", &serial]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = tether(&otto, &addr, &["ping"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("revoked"), "{}", stderr(&refused));

    // Disable and enable; show.
    assert!(
        tether(&identity, &addr, &["user", "disable", "vera"])
            .status
            .success()
    );
    let shown = tether_json(&identity, &addr, &["user", "show", "vera", "--json"]);
    assert_eq!(shown["enabled"], false);
    assert!(
        tether(&identity, &addr, &["user", "enable", "vera"])
            .status
            .success()
    );
    let shown = tether(&identity, &addr, &["user", "show", "otto"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("revoked") && text.contains("otto@example.com"),
        "{text}"
    );
    // The last admin stays (and nobody deletes themself).
    let myself = tether(&identity, &addr, &["user", "delete", "admin"]);
    assert!(
        stderr(&myself).contains("cannot delete yourself"),
        "{}",
        stderr(&myself)
    );
    let lonely = tether(&identity, &addr, &["user", "role", "admin", "viewer"]);
    assert_eq!(lonely.status.code(), Some(1));
    assert!(
        stderr(&lonely).contains("only enabled admin"),
        "{}",
        stderr(&lonely)
    );
    assert!(
        tether(&identity, &addr, &["user", "delete", "vera"])
            .status
            .success()
    );

    // An admin may revoke the very certificate they use: the answer arrives, then the
    // connection closes. Nobody disables or deletes themself.
    assert!(
        tether(
            &identity,
            &addr,
            &["user", "add", "root2", "--role", "admin", "--no-password"]
        )
        .status
        .success()
    );
    let root2 = tmp.path().join("root2.identity");
    let own = tether_json(
        &identity,
        &addr,
        &[
            "user",
            "cert",
            "root2",
            "--out",
            root2.to_str().unwrap(),
            "--json",
        ],
    );
    let own_serial = own["serial"].as_str().unwrap().to_uppercase();
    let myself = tether(&root2, &addr, &["user", "disable", "root2"]);
    assert_eq!(myself.status.code(), Some(1));
    assert!(
        stderr(&myself).contains("cannot disable yourself"),
        "{}",
        stderr(&myself)
    );
    let revoked_own = tether(&root2, &addr, &["user", "revoke-cert", &own_serial]);
    assert!(revoked_own.status.success(), "{}", stderr(&revoked_own));
    assert_eq!(tether(&root2, &addr, &["ping"]).status.code(), Some(1));
    // The record names the certificate as core knows it, however it was typed.
    let found = tether_json(
        &identity,
        &addr,
        &[
            "audit",
            "--resource",
            &format!("cert:{}", own_serial.to_lowercase()),
            "--json",
        ],
    );
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["request"] == "RevokeCert" && r["user"] == "root2"),
        "{found}"
    );

    // The audit log has all of it, filterable, and verifies.
    let records = tether_json(
        &identity,
        &addr,
        &[
            "audit", "--user", "admin", "--action", "users", "--json", "--limit", "1000",
        ],
    );
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request"].as_str().unwrap())
        .collect();
    for request in [
        "UserAdd",
        "UserCert",
        "UserRole",
        "RevokeCert",
        "UserEnable",
        "UserDelete",
    ] {
        assert!(actions.contains(&request), "{request} in {actions:?}");
    }
    let failed = tether_json(&identity, &addr, &["audit", "--failed", "--json"]);
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["user"] == "otto"
                && r["result"] == "denied"
                && r["error"].as_str().unwrap().contains("nodes.edit"))
    );
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"] != "ok")
    );
    let add = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request"] == "UserAdd" && r["resource_id"] == "otto" && r["result"] == "ok")
        .unwrap();
    assert_eq!(add["details"]["password"], "set");
    assert!(!add.to_string().contains("a long enough password"));
    let recent = tether_json(
        &identity,
        &addr,
        &["audit", "--since", "1h", "--resource", "cert", "--json"],
    );
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["resource_kind"] == "cert")
    );
    assert!(!recent.as_array().unwrap().is_empty());
    let unknown = tether(&identity, &addr, &["audit", "--action", "user"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no action \"user\""),
        "{}",
        stderr(&unknown)
    );
    assert!(
        tether(&identity, &addr, &["audit", "--since", "2026-01-01"])
            .status
            .success()
    );
    let bad_time = tether(&identity, &addr, &["audit", "--since", "yesterday-ish"]);
    assert_eq!(bad_time.status.code(), Some(2));
    let verified = tether(&identity, &addr, &["audit", "verify", "--json"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["records"].as_u64().unwrap() > 20);
    assert_eq!(report["head_hash"].as_str().unwrap().len(), 64);
    // A head noted earlier still matches; a different one does not.
    let noted = format!(
        "{}:{}",
        report["last_seq"],
        report["head_hash"].as_str().unwrap()
    );
    let checked = tether(&identity, &addr, &["audit", "verify", "--expect", &noted]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    let forged = format!("{}:{}", report["last_seq"], "ab".repeat(32));
    let mismatch = tether(&identity, &addr, &["audit", "verify", "--expect", &forged]);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(
        stderr(&mismatch).contains("rewritten"),
        "{}",
        stderr(&mismatch)
    );
    let one = tether_json(&identity, &addr, &["audit", "--seq", "1", "--json"]);
    assert_eq!(one[0]["request"], "Bootstrap");

    // Completions and the man page know the new commands.
    let completions = Command::new(binary("tether"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&completions.stdout);
    assert!(
        text.contains("revoke-cert") && text.contains("audit"),
        "completions"
    );
}
