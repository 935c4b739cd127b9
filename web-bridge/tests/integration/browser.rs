//! The web UI in a real Chromium against a real core, agents and bridge on loopback: login,
//! live status, enrollment, commands, the terminal, replay, and what a viewer may not do.
//! Screenshots land in `target/web-shots/` (look at them; `docs/web.md` shows some).

use crate::support;

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use support::{Browser, PASSWORD, Stack, eventually};
use tether_wire::NodeId;
use tether_wire::admin::{AdminRequest, AdminResponse, ApplicationStatus, NodeStatus};

/// A node's id once it is online (asked of core directly, not through the page).
async fn online(stack: &Stack, hostname: &str) -> NodeId {
    eventually(&format!("{hostname} online"), || async {
        let answer = stack
            .admin
            .request(&AdminRequest::ListNodes {
                status: Some(NodeStatus::Online),
                labels: Vec::new(),
                group: None,
                include_deleted: false,
            })
            .await
            .ok()?;
        answer.into_iter().find_map(|r| match r {
            AdminResponse::Nodes(nodes) => nodes
                .into_iter()
                .find(|n| n.hostname == hostname)
                .map(|n| n.id),
            _ => None,
        })
    })
    .await
}

/// The application of `hostname`, once it waits.
async fn pending(stack: &Stack, hostname: &str) -> String {
    eventually(&format!("{hostname}'s application"), || async {
        let answer = stack
            .admin
            .request(&AdminRequest::ListApplications {
                status: Some(ApplicationStatus::Pending),
                limit: None,
            })
            .await
            .ok()?;
        answer.into_iter().find_map(|r| match r {
            AdminResponse::Applications(apps) => apps
                .into_iter()
                .find(|a| a.hostname == hostname)
                .map(|a| a.id.to_string()),
            _ => None,
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_live_status_without_a_reload() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("web-01");
    let id = online(&stack, "web-01").await;
    let Some(browser) = Browser::start().await else {
        return;
    };

    // A link to a page, opened logged out: the login form, then that page.
    browser.goto(&format!("{}/#/nodes", stack.url)).await;
    browser.submit_login("alice", "wrong password here").await;
    let error = browser
        .wait_text("#login-error", "the login error", |t| !t.is_empty())
        .await;
    assert!(
        error.to_lowercase().contains("password") || error.to_lowercase().contains("log"),
        "{error}"
    );
    assert!(
        browser.exists("form#login").await,
        "still on the login page"
    );
    browser.screenshot("login-refused").await;

    browser.submit_login("alice", PASSWORD).await;
    let row = format!("tr[data-node-id='{id}'] td.status");
    browser
        .wait_text(&row, "the nodes page after the login", |t| {
            t.contains("Online")
        })
        .await;
    // The fleet's trend has a point once core wrote heartbeats to its history.
    eventually("the fleet's trend recorded", || async {
        let answer = stack
            .admin
            .request(&AdminRequest::FleetMetrics(
                tether_wire::history::FleetMetricsQuery {
                    range_ms: 3_600_000,
                    until_ms: None,
                    step_ms: None,
                    metrics: vec![],
                },
            ))
            .await
            .ok()?;
        match answer.first()? {
            AdminResponse::FleetMetrics(f) => f.samples.iter().any(|&n| n > 0).then_some(()),
            _ => None,
        }
    })
    .await;
    browser.goto(&format!("{}/#/", stack.url)).await;
    let who = browser
        .wait_text("#whoami", "who is logged in", |t| t.contains("alice"))
        .await;
    assert!(who.to_lowercase().contains("admin"), "{who}");
    browser
        .wait_text("#stat-online", "one node online", |t| t.trim() == "1")
        .await;
    browser
        .wait_text("#stat-agents", "one agent running", |t| t.trim() == "1")
        .await;
    assert_eq!(browser.text("#stat-total").await.trim(), "1");
    browser
        .wait_text("#trend-note", "the fleet's 24 hours drawn", |t| {
            t.contains("Median and 95th percentile")
        })
        .await;
    assert!(browser.exists("#trend-cpu canvas").await);
    browser.screenshot("dashboard").await;

    browser.goto(&format!("{}/#/nodes", stack.url)).await;
    browser
        .wait_text(&row, "the node listed online", |t| t.contains("Online"))
        .await;
    browser.screenshot("nodes").await;

    // The agent stops: the row turns offline by itself.
    let node = stack.nodes.remove(0);
    node.stop().await;
    browser
        .wait_text(&row, "the node turning offline", |t| t.contains("Offline"))
        .await;

    // Core goes away: the page says so, and recovers when it is back.
    let core = stack.core.take().unwrap();
    let data = core.data_dir().root().to_path_buf();
    core.shutdown().await;
    browser
        .wait_text("#core-state", "the reconnecting banner", |t| {
            t.to_lowercase().contains("reconnecting")
        })
        .await;
    browser.screenshot("reconnecting").await;
    let mut config = tether_core::config::CoreConfig::with_data_dir(data);
    config.listen = stack.core_addr;
    config.heartbeat_interval = Duration::from_secs(1);
    config.offline_after = Duration::from_secs(3);
    stack.core = Some(
        tether_core::Core::start(config)
            .await
            .expect("core restarts"),
    );
    eventually("the banner gone", || async {
        let banner = browser
            .client
            .find(Locator::Css("#core-state"))
            .await
            .ok()?;
        (!banner.is_displayed().await.ok()?).then_some(())
    })
    .await;
    browser
        .wait_text(&row, "the node still listed", |t| t.contains("Offline"))
        .await;

    browser.close().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_from_the_page_but_not_as_a_viewer() {
    let mut stack = Stack::start(|c| c.auto_approve = false).await;
    stack.add_node("new-01");
    stack.add_node("new-02");
    let first = pending(&stack, "new-01").await;
    let second = pending(&stack, "new-02").await;
    let Some(browser) = Browser::start().await else {
        return;
    };

    // A viewer sees the applications but no buttons to decide them.
    browser.log_in_as(&stack.url, "vera").await;
    browser.goto(&format!("{}/#/enroll", stack.url)).await;
    let row = format!("tr[data-application-id='{first}']");
    browser.text(&row).await;
    assert!(!browser.exists(&format!("{row} button.approve")).await);
    assert!(!browser.exists(&format!("{row} button.reject")).await);
    browser.screenshot("enroll-as-viewer").await;

    // A forged approval as the viewer is refused, and the refusal is in the audit log.
    let http = stack.http();
    stack.login(&http, "vera").await;
    // Core cuts the list: the newest first.
    let listed: serde_json::Value = http
        .get(format!(
            "{}/api/v1/applications?status=pending&limit=1",
            stack.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    let all: serde_json::Value = http
        .get(format!("{}/api/v1/applications?status=pending", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(listed[0], all[0], "the newest application first");
    let answer = http
        .post(format!(
            "{}/api/v1/applications/{second}/approve",
            stack.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied", "{body}");
    let audit = stack
        .admin
        .request(&AdminRequest::Audit(tether_wire::users::AuditQuery {
            user: Some("vera".into()),
            action: Some("enroll.decide".into()),
            failed: true,
            limit: 10,
            ..Default::default()
        }))
        .await
        .unwrap();
    let refused = audit.iter().any(|r| {
        matches!(r, AdminResponse::AuditRecords(records) if records.iter().any(|record| {
            record.entry.request == "ApproveApplication" && record.entry.client_addr.is_some()
        }))
    });
    assert!(
        refused,
        "the forged approval is audited as vera's, with the browser's address"
    );

    // An admin approves from the page; the node comes online.
    browser.client.delete_all_cookies().await.unwrap();
    browser.log_in_as(&stack.url, "alice").await;
    browser.goto(&format!("{}/#/enroll", stack.url)).await;
    browser.screenshot("enroll").await;
    browser.click(&format!("{row} button.approve")).await;
    let id = online(&stack, "new-01").await;
    browser.goto(&format!("{}/#/nodes", stack.url)).await;
    browser
        .wait_text(
            &format!("tr[data-node-id='{id}'] td.status"),
            "the approved node online in the list",
            |t| t.contains("Online"),
        )
        .await;
    browser.close().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_from_the_page() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("cmd-01");
    let id = online(&stack, "cmd-01").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in_as(&stack.url, "oscar").await;
    browser.goto(&format!("{}/#/commands", stack.url)).await;
    browser
        .type_into(
            "input#command",
            "echo hi-$((6*7)); echo oops >&2; printf '\\033[1;31mred\\033[0m-ok\\n\\033[3'; \
             sleep 0.3; printf '2mgreen\\033[0m-ok\\n'",
        )
        .await;
    browser.type_into("input#targets", "cmd-01").await;
    browser.click("button#run").await;
    let node = format!("div.exec-node[data-node-id='{id}']");
    browser
        .wait_text(&format!("{node} pre.output"), "the output", |t| {
            t.contains("hi-42") && t.contains("oops") && t.contains("green-ok")
        })
        .await;
    // Colours are taken out, even an escape sequence cut in two by the stream.
    let output = browser.text(&format!("{node} pre.output")).await;
    assert!(output.contains("red-ok"), "{output:?}");
    assert!(
        !output.contains('\u{1b}') && !output.contains("[1;31m") && !output.contains("2mgreen"),
        "{output:?}"
    );
    browser
        .wait_text(&format!("{node} .exec-status"), "the node's result", |t| {
            t.contains("Ok")
        })
        .await;
    browser.screenshot("commands").await;
    browser.close().await;
    stack.shutdown().await;
}

/// Everything in the terminal's buffer, line by line (xterm.js's own model, not pixels).
async fn screen(browser: &Browser) -> String {
    let value = browser
        .client
        .execute(
            "const b = window.term.buffer.active; const out = [];
             for (let i = 0; i < b.length; i++) {
               const line = b.getLine(i); if (line) out.push(line.translateToString(true));
             }
             return out.join('\\n');",
            vec![],
        )
        .await
        .unwrap();
    value.as_str().unwrap_or("").to_string()
}

async fn type_into(browser: &Browser, text: &str) {
    let input = browser
        .client
        .find(Locator::Css("#terminal textarea"))
        .await
        .unwrap();
    input.send_keys(text).await.unwrap();
}

async fn wait_screen(browser: &Browser, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(what, || async {
        let text = screen(browser).await;
        check(&text).then_some(text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_in_the_page_then_its_replay() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("tty-01");
    let id = online(&stack, "tty-01").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in_as(&stack.url, "alice").await;
    browser
        .goto(&format!("{}/#/terminal/{id}", stack.url))
        .await;
    browser
        .wait_text("#tty-status", "the terminal connected", |t| {
            t.contains("connected")
        })
        .await;

    // The shell's prompt first (a login shell reads its profile before it reads keys).
    let prompt = tokio::time::timeout(
        support::PATIENCE,
        wait_screen(&browser, "a prompt", |s| {
            s.lines()
                .any(|l| l.trim_end().ends_with('$') || l.trim_end().ends_with('#'))
        }),
    )
    .await;
    if prompt.is_err() {
        browser.screenshot("terminal-failed").await;
        panic!("no prompt: {:?}", screen(&browser).await);
    }
    type_into(&browser, "echo hello-$((6*7))\n").await;
    let shown = tokio::time::timeout(
        support::PATIENCE,
        wait_screen(&browser, "hello-42 on the screen", |s| {
            s.lines().any(|l| l.trim() == "hello-42")
        }),
    )
    .await;
    if shown.is_err() {
        browser.screenshot("terminal-failed").await;
        panic!("no hello-42 on the screen: {:?}", screen(&browser).await);
    }

    // The window shrinks: the shell is told the new size.
    browser.client.set_window_size(900, 600).await.unwrap();
    eventually("xterm.js refitted", || async {
        let cols = browser
            .client
            .execute("return window.term.cols;", vec![])
            .await
            .ok()?
            .as_u64()?;
        (cols < 150).then_some(())
    })
    .await;
    // The shell sees what xterm.js shows (read again each time: the fit may still settle).
    eventually("stty size follows the window", || async {
        type_into(&browser, "stty size\n").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let size = browser
            .client
            .execute("return [window.term.rows, window.term.cols];", vec![])
            .await
            .ok()?;
        let wanted = format!("{} {}", size[0].as_u64()?, size[1].as_u64()?);
        let text = screen(&browser).await;
        text.lines().any(|l| l.trim() == wanted).then_some(())
    })
    .await;

    // A flood, then Ctrl-C: the prompt comes back.
    type_into(&browser, "yes\n").await;
    wait_screen(&browser, "yes flooding", |s| {
        s.lines().filter(|l| l.trim() == "y").count() > 10
    })
    .await;
    type_into(&browser, &format!("{}c{}", Key::Control, Key::Control)).await;
    eventually("the prompt back after Ctrl-C", || async {
        type_into(&browser, "echo back-$((1+1))\n").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = screen(&browser).await;
        text.lines().any(|l| l.trim() == "back-2").then_some(())
    })
    .await;
    type_into(&browser, "clear\n").await;

    // A character split across two writes (and so across frames) arrives whole.
    type_into(
        &browser,
        "printf 'dash:\\342\\200'; sleep 0.5; printf '\\224:end\\n'\n",
    )
    .await;
    wait_screen(&browser, "the em dash whole", |s| {
        s.contains("dash:\u{2014}:end")
    })
    .await;
    browser.screenshot("terminal").await;

    type_into(&browser, "exit 3\n").await;
    browser
        .wait_text("#tty-status", "the exit status shown", |t| {
            t.contains("exited with code 3")
        })
        .await;
    // The ended terminal offers a new session in place, on the same screen.
    browser.click("#tty-again").await;
    browser
        .wait_text("#tty-status", "the new session connected", |t| {
            t.contains("connected to")
        })
        .await;
    type_into(&browser, "echo again-$((6*7))\n").await;
    wait_screen(&browser, "the new session's echo", |s| {
        s.contains("again-42")
    })
    .await;
    browser.click("#tty-close").await;
    browser
        .wait_text("#tty-status", "the second session closed", |t| {
            t.contains("disconnected")
        })
        .await;

    // The session is listed, and its recording plays.
    let session = eventually("the session recorded", || async {
        let answer = stack
            .admin
            .request(&AdminRequest::ListTty {
                active: false,
                node: None,
                limit: 10,
            })
            .await
            .ok()?;
        answer.into_iter().find_map(|r| match r {
            AdminResponse::TtySessions(list) => list
                .into_iter()
                .find(|s| s.recording.is_some() && s.exit.and_then(|e| e.exit_code) == Some(3))
                .map(|s| s.id),
            _ => None,
        })
    })
    .await;
    browser.goto(&format!("{}/#/sessions", stack.url)).await;
    browser
        .click(&format!("tr[data-session-id='{session}'] a.replay"))
        .await;
    // Play, and seek to the end: the player shows the last screen (after `clear`).
    browser.text("#player").await;
    eventually("the player seeking", || async {
        browser
            .client
            .execute(
                "if (!window.player) return false;
                 window.player.play(); window.player.seek('100%'); return true;",
                vec![],
            )
            .await
            .ok()?
            .as_bool()?
            .then_some(())
    })
    .await;
    browser
        .wait_text("#player", "the replay showing the session", |t| {
            t.contains("dash:\u{2014}:end")
        })
        .await;
    // The session's own record beside it (`GET /api/v1/sessions/{id}`).
    browser
        .wait_text("#main", "the session's facts", |t| t.contains("code 3"))
        .await;
    browser.screenshot("replay").await;
    browser.close().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_detail_users_and_audit_pages() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("db-01");
    let id = online(&stack, "db-01").await;
    let Some(browser) = Browser::start().await else {
        return;
    };

    // A viewer: the node's page without its buttons, no run form, no users or audit pages.
    // (The address names the node by hostname, as people type it.)
    browser.log_in_as(&stack.url, "vera").await;
    browser.goto(&format!("{}/#/nodes/db-01", stack.url)).await;
    browser
        .wait_text("#node-status", "the node's status", |t| {
            t.contains("Online")
        })
        .await;
    for absent in [
        "#open-terminal",
        "#delete-node",
        "#maintenance-toggle",
        "#label-add",
        "#allowed-user-add",
    ] {
        assert!(!browser.exists(absent).await, "a viewer sees no {absent}");
    }
    browser.goto(&format!("{}/#/commands", stack.url)).await;
    browser.text("#main").await;
    assert!(!browser.exists("button#run").await, "a viewer runs nothing");
    let nav = browser.text("#nav").await;
    assert!(!nav.contains("Users") && !nav.contains("Audit"), "{nav}");

    // Her own password, on the account page her name in the header leads to: the current one
    // is asked, her session ends, and the login page says why.
    let fresh = "vera's own new password";
    browser.click("#whoami").await;
    browser.type_into("#account-current", PASSWORD).await;
    browser.type_into("#account-new", fresh).await;
    browser.type_into("#account-again", fresh).await;
    browser.screenshot("account").await;
    browser.click("#account-password button[type=submit]").await;
    browser
        .wait_text("#login-notice", "the login page saying why", |t| {
            t.contains("password was changed")
        })
        .await;
    browser.submit_login("vera", fresh).await;
    browser
        .wait_text("#whoami", "vera back with her new password", |t| {
            t.contains("vera")
        })
        .await;

    // An admin: the node's facts, charts filling at heartbeat rate, the QUIC path.
    browser.client.delete_all_cookies().await.unwrap();
    browser.log_in_as(&stack.url, "alice").await;
    browser.goto(&format!("{}/#/nodes/{id}", stack.url)).await;
    browser
        .wait_text("#node-path", "the QUIC path", |t| t.contains("ms"))
        .await;
    browser
        .wait_text("#node-agent", "the agent's own state", |t| {
            t.contains("pid") && t.contains("since enrollment")
        })
        .await;
    assert!(browser.exists("#open-terminal").await);
    assert!(browser.exists("#charts canvas").await, "uPlot charts drawn");
    // A few heartbeats (1 s apart) for the charts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    browser.screenshot("node").await;
    // The last hour from core's history: the same heartbeats, read back.
    browser.click("#chart-range button[data-range='1h']").await;
    browser
        .wait_text("#charts-note", "the history read", |t| {
            t.contains("every heartbeat") && t.contains("heartbeats;")
        })
        .await;
    assert!(
        browser.exists("#charts canvas").await,
        "history charts drawn"
    );
    browser
        .client
        .execute(
            "document.getElementById('charts').scrollIntoView({block: 'center'}); return true;",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshot("node-history").await;
    browser
        .click("#chart-range button[data-range='live']")
        .await;

    // Labels from the page reach core.
    browser.type_into("#label-key", "env").await;
    browser.type_into("#label-value", "prod").await;
    browser.click("#label-add button[type=submit]").await;
    eventually("the label stored", || async {
        let answer = stack
            .admin
            .request(&AdminRequest::ShowNode { id: id.to_string() })
            .await
            .ok()?;
        match answer.first()? {
            AdminResponse::Node(node) => {
                (node.labels.get("env").map(String::as_str) == Some("prod")).then_some(())
            }
            _ => None,
        }
    })
    .await;

    browser.goto(&format!("{}/#/users", stack.url)).await;
    for user in ["alice", "oscar", "vera"] {
        browser
            .wait_text("table#users", "the users listed", |t| t.contains(user))
            .await;
    }
    browser.screenshot("users").await;
    browser.goto(&format!("{}/#/audit", stack.url)).await;
    browser
        .wait_text("table#audit", "the audit log with the label change", |t| {
            t.contains("LabelNode")
        })
        .await;
    browser.screenshot("audit").await;

    // A live terminal (the CLI's way in) is ended from the sessions page.
    let grant = stack
        .admin
        .authorize_tty(tether_wire::tty::TtyAuthorize {
            node: "db-01".into(),
            command: None,
            size: tether_wire::tty::WindowSize { cols: 80, rows: 24 },
            term: None,
            record: None,
        })
        .await
        .unwrap();
    let mut tty = stack.admin.open_tty(&grant.token).await.unwrap();
    let session = tty.session_id;
    browser.goto(&format!("{}/#/sessions", stack.url)).await;
    browser
        .click(&format!("tr[data-session-id='{session}'] button.kill"))
        .await;
    // Killing asks once more.
    browser
        .click(&format!(
            "tr[data-session-id='{session}'] button.confirm-yes"
        ))
        .await;
    let ended = tokio::time::timeout(support::PATIENCE, async {
        loop {
            match tty.output.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the session ends");
    assert!(ended.is_err() || ended.unwrap().is_none(), "killed");
    browser.close().await;
    stack.shutdown().await;
}

/// Sets a form control's value from script and tells the page (selects, numbers).
async fn set_value(browser: &Browser, id: &str, value: &str) {
    browser
        .client
        .execute(
            "const el = document.getElementById(arguments[0]); el.value = arguments[1]; \
             el.dispatchEvent(new Event('change')); return true;",
            vec![id.into(), value.into()],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_adds_a_rule_shows_it_firing_and_acknowledges_it() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("web-01");
    online(&stack, "web-01").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in_as(&stack.url, "alice").await;
    browser.goto(&format!("{}/#/alerts", stack.url)).await;
    browser
        .wait_text("#firing-empty", "nothing firing yet", |t| {
            t.contains("Nothing is firing")
        })
        .await;
    // A rule every running machine trips: more than zero processes, at once.
    browser.type_into("#rule-name", "procs-any").await;
    set_value(&browser, "rule-metric", "procs").await;
    set_value(&browser, "rule-op", "gt").await;
    set_value(&browser, "rule-threshold", "0").await;
    set_value(&browser, "rule-for", "0").await;
    set_value(&browser, "rule-severity", "critical").await;
    browser.click("#rule-add button[type=submit]").await;
    browser
        .wait_text("#alert-rules", "the rule listed", |t| {
            t.contains("procs-any") && t.contains("procs > 0")
        })
        .await;
    let firing = browser
        .wait_text("#alerts-firing", "the alert firing", |t| {
            t.contains("procs-any") && t.contains("web-01")
        })
        .await;
    assert!(firing.contains("critical"), "{firing}");
    browser.screenshot("alerts").await;
    browser.click("#alerts-firing button.ack").await;
    browser
        .wait_text("#alerts-firing", "acknowledged by alice", |t| {
            t.contains("alice")
        })
        .await;
    // A bad rule is refused in words, and nothing is added.
    browser.type_into("#rule-name", "bad name").await;
    browser.click("#rule-add button[type=submit]").await;
    browser
        .wait_text("#rule-form-error", "the refusal", |t| {
            t.contains("rule name")
        })
        .await;

    // The dashboard counts it.
    browser.goto(&format!("{}/#/", stack.url)).await;
    browser
        .wait_text("#stat-alerts", "one alert firing", |t| t == "1")
        .await;

    // A viewer reads alerts but neither adds rules nor acknowledges.
    browser.client.delete_all_cookies().await.unwrap();
    browser.log_in_as(&stack.url, "vera").await;
    browser.goto(&format!("{}/#/alerts", stack.url)).await;
    browser
        .wait_text("#alerts-firing", "the alert, for a viewer", |t| {
            t.contains("procs-any")
        })
        .await;
    assert!(!browser.exists("#rule-add").await, "a viewer adds no rule");
    assert!(!browser.exists("#alerts-firing button.ack").await);
    assert!(!browser.exists("button.delete-rule").await);
    browser.close().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_show_as_a_tree_and_filter_the_node_list() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    for host in ["web-01", "web-02", "db-01"] {
        stack.add_node(host);
    }
    let mut ids = Vec::new();
    for host in ["web-01", "web-02", "db-01"] {
        ids.push(online(&stack, host).await);
    }
    // prod > web: the web servers in web, the database in prod itself.
    for (name, parent) in [("prod", None), ("web", Some("prod")), ("lab", None)] {
        stack
            .admin
            .request(&AdminRequest::GroupAdd {
                name: name.into(),
                parent: parent.map(str::to_string),
                description: String::new(),
                sort_order: 0,
            })
            .await
            .unwrap();
    }
    for (id, group) in ids.iter().zip(["web", "web", "prod"]) {
        stack
            .admin
            .request(&AdminRequest::NodeGroup {
                node: id.to_string(),
                group: Some(group.into()),
            })
            .await
            .unwrap();
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in_as(&stack.url, "alice").await;
    browser.goto(&format!("{}/#/nodes", stack.url)).await;
    let tree = browser
        .wait_text("#group-tree", "the group tree", |t| {
            t.contains("prod") && t.contains("web") && t.contains("lab")
        })
        .await;
    // Counts with the groups below: prod holds all three.
    assert!(
        tree.contains("prod 3") && tree.contains("web 2") && tree.contains("lab 0"),
        "{tree}"
    );
    browser
        .wait_text("#page-info", "every node", |t| t.ends_with("of 3"))
        .await;

    // Choosing web in the tree: its two nodes only, and the address keeps it.
    browser
        .click("#group-tree li[data-group=\"web\"] > button")
        .await;
    let table = browser
        .wait_text("#page-info", "web's nodes", |t| t.ends_with("of 2"))
        .await;
    assert!(table.starts_with('1'), "{table}");
    let rows = browser.text("#nodes tbody").await;
    assert!(
        rows.contains("web-01") && rows.contains("web-02") && !rows.contains("db-01"),
        "{rows}"
    );
    assert!(
        rows.contains("prod/web"),
        "the group under each hostname: {rows}"
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().contains("group=web"), "{url}");
    browser.screenshot("nodes-groups").await;

    // The filter: prod selects prod and web below it.
    set_value(&browser, "node-group-filter", "prod").await;
    browser
        .wait_text("#page-info", "prod and below", |t| t.ends_with("of 3"))
        .await;
    set_value(&browser, "node-group-filter", "lab").await;
    browser
        .wait_text("#nodes tbody", "an empty group", |t| {
            t.contains("No nodes match")
        })
        .await;

    // A command on a group from the commands page: web's two nodes, not the database.
    browser.goto(&format!("{}/#/commands", stack.url)).await;
    browser
        .wait_text("#exec-group", "the groups to choose from", |t| {
            t.contains("web (2)")
        })
        .await;
    browser.type_into("input#command", "echo in-web").await;
    set_value(&browser, "exec-group", "web").await;
    browser.click("button#run").await;
    for id in &ids[..2] {
        browser
            .wait_text(
                &format!("div.exec-node[data-node-id='{id}'] .exec-status"),
                "a web node's result",
                |t| t.contains("Ok"),
            )
            .await;
    }
    assert!(
        !browser
            .exists(&format!("div.exec-node[data-node-id='{}']", ids[2]))
            .await,
        "db-01 is not in web"
    );

    // A node's page names its group and the policy it runs.
    browser.goto(&format!("{}/#/nodes/web-01", stack.url)).await;
    browser
        .wait_text("#node-group", "the node's group", |t| t == "prod/web")
        .await;
    browser
        .wait_text("#node-policy", "the node's policy", |t| {
            t.contains("commands: any") && t.contains("terminals: on")
        })
        .await;
    browser.close().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_page_previews_the_schedule_adds_a_task_and_shows_its_runs() {
    let mut stack = Stack::start(|c| c.auto_approve = true).await;
    stack.add_node("web-01");
    let id = online(&stack, "web-01").await;
    stack
        .admin
        .request(&AdminRequest::GroupAdd {
            name: "prod".into(),
            parent: None,
            description: String::new(),
            sort_order: 0,
        })
        .await
        .unwrap();
    stack
        .admin
        .request(&AdminRequest::NodeGroup {
            node: id.to_string(),
            group: Some("prod".into()),
        })
        .await
        .unwrap();
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in_as(&stack.url, "alice").await;
    browser.goto(&format!("{}/#/tasks", stack.url)).await;
    browser
        .wait_text("#tasks", "no tasks yet", |t| t.contains("No tasks yet"))
        .await;

    // The preview: five times, read in the time zone chosen, as core reads the expression.
    set_value(&browser, "task-cron", "30 2 * * *").await;
    set_value(&browser, "task-timezone", "Europe/Berlin").await;
    browser
        .client
        .execute(
            "document.getElementById('task-timezone').dispatchEvent(new Event('input')); return true;",
            vec![],
        )
        .await
        .unwrap();
    let preview = browser
        .wait_text("#task-preview", "five run times in Berlin", |t| {
            t.matches("02:30:00 Europe/Berlin").count() == 5
        })
        .await;
    // Not 02:30 UTC shown as Berlin time. (Each line also gives the time in the browser's own
    // zone, UTC here: 01:30, written without a date when the run is today.)
    assert!(!preview.contains("01:30:00 Europe/Berlin"), "{preview}");
    // A bad expression says what is wrong, before anything is sent.
    browser.client.execute("const c = document.getElementById('task-cron'); c.value = '61 * * * *'; c.dispatchEvent(new Event('input')); return true;", vec![]).await.unwrap();
    browser
        .wait_text("#task-preview-error", "the cron error", |t| {
            t.contains("invalid cron expression")
        })
        .await;
    browser.client.execute("const c = document.getElementById('task-cron'); c.value = '30 2 * * *'; c.dispatchEvent(new Event('input')); return true;", vec![]).await.unwrap();
    browser
        .wait_text("#task-preview", "the preview back", |t| {
            t.contains("02:30:00")
        })
        .await;

    browser.type_into("#task-name", "hello").await;
    browser
        .type_into("#task-command", "echo hello-from-a-task")
        .await;
    set_value(&browser, "task-group", "prod").await;
    browser.click("#task-add button[type=submit]").await;
    let listed = browser
        .wait_text("#tasks", "the task listed", |t| {
            t.contains("hello") && t.contains("Europe/Berlin")
        })
        .await;
    assert!(listed.contains("group prod"), "{listed}");
    assert!(listed.contains("echo hello-from-a-task"), "{listed}");
    browser.screenshot("tasks").await;

    // A bad task: refused in words, nothing added.
    browser.type_into("#task-name", "bad name").await;
    browser.click("#task-add button[type=submit]").await;
    browser
        .wait_text("#task-form-error", "the refusal", |t| {
            t.contains("task name")
        })
        .await;

    // Run now: the task's page shows the run to its end, with the node's result.
    browser
        .click("#tasks tr[data-name=\"hello\"] button.run-task")
        .await;
    let runs = browser
        .wait_text("#task-runs", "the run's end", |t| {
            t.contains("Run 1") && t.contains("success") && t.contains("web-01")
        })
        .await;
    assert!(
        runs.contains("manual") && runs.contains("1 of 1 ok"),
        "{runs}"
    );
    let upcoming = browser.text("#task-upcoming").await;
    assert_eq!(upcoming.matches("Europe/Berlin").count(), 5, "{upcoming}");
    browser.screenshot("task-runs").await;

    // A viewer reads tasks and runs, but adds, runs and deletes nothing.
    browser.client.delete_all_cookies().await.unwrap();
    browser.log_in_as(&stack.url, "vera").await;
    browser.goto(&format!("{}/#/tasks", stack.url)).await;
    browser
        .wait_text("#tasks", "the task, for a viewer", |t| t.contains("hello"))
        .await;
    assert!(!browser.exists("#task-add").await, "a viewer adds no task");
    assert!(!browser.exists("button.run-task").await);
    assert!(!browser.exists("button.delete-task").await);
    browser.close().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_page_lists_releases_deploys_one_and_follows_it_live() {
    use sha2::Digest as _;
    let key = tether_certs::release::ReleaseSigningKey::generate();
    let public = key.public();
    let mut stack = Stack::start(|c| {
        c.auto_approve = true;
        c.release_keys = vec![public];
    })
    .await;
    stack.add_node("web-01");
    stack.add_node("web-02");
    online(&stack, "web-01").await;
    online(&stack, "web-02").await;
    // A release, uploaded as the CLI does it.
    let body = b"an agent build".to_vec();
    let mut manifest = tether_wire::releases::Manifest {
        version: "1.4.0".into(),
        os: "linux".into(),
        arch: std::env::consts::ARCH.into(),
        size: body.len() as u64,
        sha256: tether_wire::bytes::FixedBytes(sha2::Sha256::digest(&body).into()),
        key: public,
        signature: tether_wire::bytes::FixedBytes([0; 64]),
    };
    key.sign(&mut manifest);
    let request = AdminRequest::ReleaseUpload {
        manifest,
        notes: "faster heartbeats".into(),
    };
    stack
        .admin
        .upload(&request, body.as_slice(), |_| {})
        .await
        .unwrap();

    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in_as(&stack.url, "alice").await;
    browser.goto(&format!("{}/#/releases", stack.url)).await;
    let listed = browser
        .wait_text("#releases", "the release", |t| t.contains("1.4.0"))
        .await;
    assert!(listed.contains("faster heartbeats"), "{listed}");
    assert!(
        listed.contains(&format!("linux/{}", std::env::consts::ARCH)),
        "{listed}"
    );

    // A rolling deploy from the form. These agents run inside the test and cannot replace
    // themselves: the first refuses, and the deploy halts, live, with the second untouched.
    set_value(&browser, "deploy-strategy", "rolling").await;
    browser.type_into("#deploy-batch", "1").await;
    browser
        .client
        .execute(
            "document.getElementById('deploy-all').checked = true; return true;",
            vec![],
        )
        .await
        .unwrap();
    browser.click("#deploy-add button[type=submit]").await;
    let info = browser
        .wait_text("#deploy-info", "the deploy halting", |t| {
            t.contains("halted")
        })
        .await;
    assert!(info.contains("1 failure,"), "{info}");
    assert!(info.contains("0 of 2 updated, 1 failed"), "{info}");
    let nodes = browser.text("#deploy-nodes").await;
    assert!(nodes.contains("cannot replace itself"), "{nodes}");
    assert!(nodes.contains("pending"), "{nodes}");
    assert!(browser.exists("#deploy-resume").await);
    browser.screenshot("deploy").await;

    // Cancel it; the releases page lists it, and the release can go.
    browser.click("#deploy-cancel").await;
    browser
        .click("#deploy-cancel + .confirm-ask .confirm-yes")
        .await;
    browser
        .wait_text("#deploy-info", "the deploy cancelled", |t| {
            t.contains("cancelled")
        })
        .await;
    browser.goto(&format!("{}/#/releases", stack.url)).await;
    browser
        .wait_text("#deploys", "the deploy listed", |t| {
            t.contains("#1") && t.contains("cancelled")
        })
        .await;
    browser.screenshot("releases").await;
    // A bad form: refused in words.
    set_value(&browser, "deploy-strategy", "canary").await;
    browser.type_into("#deploy-canary", "lots").await;
    browser.click("#deploy-add button[type=submit]").await;
    browser
        .wait_text("#deploy-form-error", "the refusal", |t| {
            t.contains("canary")
        })
        .await;

    // A viewer sees releases and deploys, and no form or button.
    browser.client.delete_all_cookies().await.unwrap();
    browser.log_in_as(&stack.url, "vera").await;
    browser.goto(&format!("{}/#/releases", stack.url)).await;
    browser
        .wait_text("#deploys", "the deploy, for a viewer", |t| t.contains("#1"))
        .await;
    assert!(!browser.exists("#deploy-add").await);
    assert!(!browser.exists("button.delete-release").await);
    browser.goto(&format!("{}/#/deploys/1", stack.url)).await;
    browser
        .wait_text("#deploy-info", "the deploy, for a viewer", |t| {
            t.contains("cancelled")
        })
        .await;
    assert!(!browser.exists("#deploy-rollback").await);
    browser.close().await;
    stack.shutdown().await;
}
