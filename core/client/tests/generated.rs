//! `tether completions` and `tether man`, run as the real binary: made from the CLI's own
//! definition, so they name its subcommands, and they need neither an identity nor a core.

use std::process::{Command, Output};

/// Runs the built `tether` with no identity to be found anywhere.
fn tether(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env_remove("TETHER_IDENTITY")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tether {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn completions_name_the_subcommands() {
    let bash = String::from_utf8(tether(&["completions", "bash"]).stdout).unwrap();
    assert!(bash.contains("complete"), "{bash}");
    for subcommand in ["exec", "tty", "node", "enroll", "backup", "man"] {
        assert!(
            bash.contains(subcommand),
            "bash completions lack {subcommand}"
        );
    }
    // Deeper levels too: `tether tty play`, `tether node list --label`.
    assert!(bash.contains("play") && bash.contains("--label"));
    for shell in ["zsh", "fish"] {
        let script = String::from_utf8(tether(&["completions", shell]).stdout).unwrap();
        assert!(
            script.contains("exec") && script.contains("tty"),
            "{shell}: {script}"
        );
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["completions", "csh"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "a usage error");
}

/// The page's lines after roff's apostrophe preamble (`.ie \n(.g .ds Aq ...` / `.el ...`, which
/// defines the `\*(Aq` the page uses for `'`).
fn page(roff: &str) -> Vec<&str> {
    roff.lines()
        .skip_while(|line| line.starts_with(".ie ") || line.starts_with(".el "))
        .collect()
}

#[test]
fn man_writes_roff_pages() {
    let roff = String::from_utf8(tether(&["man"]).stdout).unwrap();
    let lines = page(&roff);
    assert!(lines[0].starts_with(".TH tether 1"), "{roff}");
    assert!(lines.contains(&".SH NAME") && lines.contains(&".SH SYNOPSIS"));
    assert!(roff.contains("Manage a Tether fleet"), "{roff}");
    // Its SUBCOMMANDS section points at each subcommand's own page.
    for subcommand in ["exec", "tty", "backup", "completions", "man"] {
        assert!(
            roff.contains(&format!("tether\\-{subcommand}(1)")),
            "the page lists {subcommand}: {roff}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let written = tether(&["man", "--out", out.to_str().unwrap()]);
    assert!(written.stdout.is_empty(), "pages go to files, not stdout");
    for name in [
        "tether.1",
        "tether-exec.1",
        "tether-tty-play.1",
        "tether-node-list.1",
    ] {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(page(&text)[0].starts_with(".TH "), "{name}: {text}");
    }
}
