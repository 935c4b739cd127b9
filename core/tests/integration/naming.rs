//! Every command that names a node accepts the same forms — its id, a unique beginning of its
//! id, or its exact hostname — through one resolver; a name that fits several nodes is refused
//! with every candidate listed. Run through the real `tether` CLI, one row per subcommand.

use crate::support;

use std::path::Path;

use support::*;
use tether_wire::NodeId;

/// How a subcommand is run with a node's name, and how to read which node it acted on.
struct Row {
    what: &'static str,
    args: fn(&str) -> Vec<String>,
    /// The node id the answer names, or `None` for rows checked another way.
    acted_on: fn(&serde_json::Value) -> Option<String>,
    /// Exit status when the name is refused: 1, or 255 where the command answers like ssh.
    refused: i32,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn id_field(json: &serde_json::Value) -> Option<String> {
    json["id"].as_str().map(str::to_string)
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            what: "node show",
            args: |n| strings(&["node", "show", n, "--json"]),
            acted_on: id_field,
            refused: 1,
        },
        Row {
            what: "node label",
            args: |n| strings(&["node", "label", n, "named=yes", "--json"]),
            acted_on: id_field,
            refused: 1,
        },
        Row {
            what: "node maintenance",
            args: |n| strings(&["node", "maintenance", n, "off", "--json"]),
            acted_on: id_field,
            refused: 1,
        },
        Row {
            what: "node allow",
            args: |n| strings(&["node", "allow", n, "bob", "--json"]),
            acted_on: id_field,
            refused: 1,
        },
        Row {
            what: "node disallow",
            args: |n| strings(&["node", "disallow", n, "bob", "--json"]),
            acted_on: id_field,
            refused: 1,
        },
        Row {
            what: "exec",
            args: |n| strings(&["exec", n, "--json", "--", "true"]),
            acted_on: |json| json[0]["node_id"].as_str().map(str::to_string),
            refused: 255,
        },
        Row {
            what: "exec history --node",
            args: |n| strings(&["exec", "history", "--node", n, "--json"]),
            acted_on: |_| None,
            refused: 1,
        },
        Row {
            what: "tty list --node",
            args: |n| strings(&["tty", "list", "--node", n, "--json"]),
            acted_on: |json| {
                json.as_array()
                    .and_then(|sessions| sessions.first())
                    .and_then(|s| s["node_id"].as_str())
                    .map(str::to_string)
            },
            refused: 1,
        },
    ]
}

fn run(identity: &Path, core: &str, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tether(identity, core, &args)
}

/// A terminal through the CLI on the node named `name`; the shell prints its marker.
fn terminal(identity: &Path, core: &str, name: &str) -> std::process::Output {
    std::process::Command::new(binary("tether"))
        .arg("--identity")
        .arg(identity)
        .args(["--core", core, "tty", name, "--no-record"])
        .args(["--command", "echo tty-reached"])
        .stdin(std::fs::File::open("/dev/null").unwrap())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_subcommand_names_nodes_the_same_way() {
    let (core, admin, nodes, tmp) = start_fleet(3, |_| {}, |_| {}).await;
    // Two more machines that both call themselves "twin".
    let mut twins = Vec::new();
    for i in 0..2 {
        let state = tmp.path().join(format!("twin-{i}"));
        let node = LibNode::start(&state, core.addr, Some(core.token()), |c| {
            c.hostname = Some("twin".into());
        });
        let id = node_id_in(&state).await;
        wait_status(&admin, id, tether_wire::admin::NodeStatus::Online).await;
        twins.push((id, node));
    }
    let identity = core.data().join("admin.identity");
    let addr = core.addr.to_string();
    let target: NodeId = nodes[1].0;
    let full = target.to_string();
    let forms = [
        ("hostname", "host-01".to_string()),
        ("id prefix", full[..8].to_string()),
        ("whole id", full.clone()),
    ];

    // A terminal by each name, so that `tty list --node` has sessions to show.
    for (form, name) in &forms {
        let output = terminal(&identity, &addr, name);
        assert_eq!(
            output.status.code(),
            Some(0),
            "tty by {form}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("tty-reached"));
    }
    let sessions = tether_json(&identity, &addr, &["tty", "list", "--json"]);
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["node_id"] == full.as_str()),
        "every terminal reached host-01: {sessions}"
    );

    for row in rows() {
        for (form, name) in &forms {
            let output = run(&identity, &addr, &(row.args)(name));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{} by {form} ({name}): {stderr}",
                row.what
            );
            let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            if let Some(acted_on) = (row.acted_on)(&json) {
                assert_eq!(
                    acted_on, full,
                    "{} by {form} acted on another node",
                    row.what
                );
            }
        }
        // Two nodes called "twin": refused, and both are named so the admin can choose.
        let output = run(&identity, &addr, &(row.args)("twin"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(row.refused),
            "{} twin: {stderr}",
            row.what
        );
        for (twin, _) in &twins {
            assert!(
                stderr.contains(&twin.to_string()),
                "{}: the candidates are listed: {stderr}",
                row.what
            );
        }
        assert!(stderr.contains("[ambiguous]"), "{}: {stderr}", row.what);
        // Nothing by that name: a clear refusal that says which names are accepted.
        let output = run(&identity, &addr, &(row.args)("no-such-host"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(row.refused),
            "{}: {stderr}",
            row.what
        );
        assert!(
            stderr.contains("no node matches \"no-such-host\"") && stderr.contains("hostname"),
            "{}: {stderr}",
            row.what
        );
    }
    // Only host-01 ran anything: the history filter by name finds its runs and not another's.
    let mine = tether_json(
        &identity,
        &addr,
        &["exec", "history", "--node", "host-01", "--json"],
    );
    let others = tether_json(
        &identity,
        &addr,
        &["exec", "history", "--node", "host-02", "--json"],
    );
    assert_eq!(mine.as_array().unwrap().len(), forms.len());
    assert!(others.as_array().unwrap().is_empty());

    // A terminal to an ambiguous name is refused like the rest (ssh's 255 for its own failures).
    let output = terminal(&identity, &addr, "twin");
    assert_eq!(output.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&twins[0].0.to_string()));

    // Deleting by hostname, last (it is final); the deleted node is still found by its old name.
    let output = tether(&identity, &addr, &["node", "delete", "host-02", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let deleted: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(deleted["id"], nodes[2].0.to_string().as_str());
    let shown = tether_json(&identity, &addr, &["node", "show", "host-02", "--json"]);
    assert_eq!(shown["deleted"], true);
}
