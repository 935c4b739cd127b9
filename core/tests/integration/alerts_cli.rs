//! `tether alert ...` as operators type it, against a real core, with an email channel on a
//! real SMTP server on loopback (`aiosmtpd` from PyPI, which `.ci/run` installs; the test
//! skips it where missing unless TETHER_REQUIRE_SMTP is set).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;
use tether_wire::admin::AdminRequest;
use tether_wire::heartbeat::{Datagram, Heartbeat, Metrics, encode_datagram};

/// An SMTP server writing what it receives to a Maildir; killed on drop.
struct Smtp {
    child: Child,
    maildir: PathBuf,
    port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_smtp(dir: &Path) -> Option<Smtp> {
    let has = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var_os("TETHER_REQUIRE_SMTP").is_none(),
            "aiosmtpd is required here (python3 -m pip install aiosmtpd)"
        );
        eprintln!("aiosmtpd is missing; not testing email");
        return None;
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let maildir = dir.join("maildir");
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Smtp {
        child,
        maildir,
        port,
    })
}

fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut mails: Vec<String> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    mails.sort();
    mails
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_channels_and_alerts_from_the_cli_with_email_on_a_real_smtp_server() {
    let core = TestCore::start(|c| {
        c.auto_approve = true;
        c.alert_retry_backoff = Duration::from_millis(100);
    })
    .await;
    let admin = core.admin().await;
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let (id, raw) = enrolled_node(&core).await;
    admin
        .request(AdminRequest::LabelNode {
            id: id.to_string(),
            set: vec![("env".into(), "prod".into())],
            remove: vec![],
        })
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let smtp = start_smtp(tmp.path());

    // Bad input: clear errors, nothing added.
    for (args, wanted) in [
        (
            vec![
                "alert",
                "rule",
                "add",
                "x",
                "--metric",
                "cpux",
                "--op",
                "gt",
                "--threshold",
                "1",
            ],
            "unknown metric \"cpux\"",
        ),
        (
            vec![
                "alert",
                "rule",
                "add",
                "x",
                "--metric",
                "cpu",
                "--op",
                "above",
                "--threshold",
                "1",
            ],
            "unknown operator \"above\"",
        ),
        (
            vec![
                "alert",
                "rule",
                "add",
                "x",
                "--metric",
                "cpu",
                "--op",
                "gt",
                "--threshold",
                "NaN",
            ],
            "must be a number",
        ),
        (
            vec!["alert", "rule", "add", "x", "--offline"],
            "greater than zero",
        ),
        (
            vec!["alert", "rule", "add", "x", "--offline", "--for=-5s"],
            "--for",
        ),
        (
            vec!["alert", "rule", "add", "x"],
            "say what the rule watches",
        ),
        (
            vec!["alert", "channel", "add", "hook", "--webhook", "ftp://x"],
            "must start with http://",
        ),
    ] {
        let output = tether(&identity, &addr, &args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(wanted),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let rules = tether_json(&identity, &addr, &["alert", "rule", "list", "--json"]);
    assert_eq!(rules, serde_json::json!([]));
    let untested = tether(&identity, &addr, &["alert", "channel", "test", "nope"]);
    assert!(!untested.status.success());
    assert!(
        stderr(&untested).contains("no channel \"nope\""),
        "{}",
        stderr(&untested)
    );

    let channel = match &smtp {
        Some(smtp) => {
            let server = format!("127.0.0.1:{}", smtp.port);
            let added = tether_json(
                &identity,
                &addr,
                &[
                    "alert",
                    "channel",
                    "add",
                    "mail",
                    "--smtp",
                    &server,
                    "--plain",
                    "--from",
                    "tether@example.com",
                    "--to",
                    "ops@example.com",
                    "--json",
                ],
            );
            assert_eq!(added["kind"]["smtp"]["port"], smtp.port);
            vec!["--channel", "mail"]
        }
        None => vec![],
    };
    let mut args = vec![
        "alert",
        "rule",
        "add",
        "cpu-high",
        "--metric",
        "cpu",
        "--op",
        "gt",
        "--threshold",
        "90",
        "--severity",
        "critical",
        "--label",
        "env=prod",
        "--json",
    ];
    args.extend(&channel);
    let rule = tether_json(&identity, &addr, &args);
    assert_eq!(rule["condition"]["threshold"]["op"], "gt");
    assert_eq!(rule["created_by"], "admin");
    let listed = tether(&identity, &addr, &["alert", "rule", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("cpu-high") && text.contains("cpu > 90"),
        "{text}"
    );

    let heartbeat = Heartbeat {
        seq: 1,
        timestamp_ms: now_secs() * 1000,
        metrics: Metrics {
            cpu_percent: 97.25,
            ..Default::default()
        },
    };
    raw.connection
        .send_datagram(encode_datagram(&Datagram::Heartbeat(heartbeat)).into())
        .unwrap();
    let firing = eventually("the alert in `alert list --firing`", || async {
        let list = tether_json(&identity, &addr, &["alert", "list", "--firing", "--json"]);
        list.as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(firing["value"], 97.25);
    let alert_id = firing["id"].as_u64().unwrap().to_string();
    let table = tether(&identity, &addr, &["alert", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("firing") && text.contains("cpu-high"),
        "{text}"
    );
    let acked = tether(&identity, &addr, &["alert", "ack", &alert_id]);
    assert!(acked.status.success(), "{}", stderr(&acked));
    assert!(String::from_utf8_lossy(&acked.stdout).contains("acknowledged by admin"));
    let missing = tether(&identity, &addr, &["alert", "ack", "999"]);
    assert!(
        stderr(&missing).contains("no alert 999"),
        "{}",
        stderr(&missing)
    );

    if let Some(smtp) = &smtp {
        let mail = eventually("the email", || async { mails(&smtp.maildir).pop() }).await;
        assert!(
            mail.contains("Subject: [FIRING critical] cpu-high on raw-node: cpu > 90 (97.25)"),
            "{mail}"
        );
        assert!(mail.contains("To: ops@example.com"), "{mail}");
        let shown = tether(&identity, &addr, &["alert", "show", &alert_id]);
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(text.contains("mail") && text.contains("ok"), "{text}");
        // A test email, at once.
        let tested = tether(&identity, &addr, &["alert", "channel", "test", "mail"]);
        assert!(tested.status.success(), "{}", stderr(&tested));
        assert!(
            String::from_utf8_lossy(&tested.stdout).contains("delivered"),
            "{tested:?}"
        );
        let mail = eventually("the test email", || async {
            mails(&smtp.maildir)
                .into_iter()
                .find(|m| m.contains("Subject: [TEST"))
        })
        .await;
        assert!(mail.contains("tether-test"), "{mail}");
        // The channel cannot go while the rule uses it.
        let refused = tether(&identity, &addr, &["alert", "channel", "delete", "mail"]);
        assert!(
            stderr(&refused).contains("used by rule \"cpu-high\""),
            "{}",
            stderr(&refused)
        );
    }
    let deleted = tether(&identity, &addr, &["alert", "rule", "delete", "cpu-high"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    eventually("resolved by the deletion", || async {
        let list = tether_json(&identity, &addr, &["alert", "list", "--firing", "--json"]);
        (list == serde_json::json!([])).then_some(())
    })
    .await;
}
