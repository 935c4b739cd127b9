//! `tether completions SHELL` and `tether man`: made from the CLI's own definition, so they never
//! fall behind it. Neither needs an identity or a core.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::Cli;

/// Shell completions for `tether`, printed to standard output.
///
/// Install them where your shell looks, for example:
///
///   tether completions bash > /etc/bash_completion.d/tether
///
///   tether completions zsh > "${fpath[1]}/_tether"
///
///   tether completions fish > ~/.config/fish/completions/tether.fish
///
/// or load them for this shell only: `source <(tether completions bash)`. Needs no identity and
/// no core.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish (also elvish and powershell).
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// The manual page of `tether`, in roff.
///
/// Without --out, the page for `tether` goes to standard output: read it with
/// `tether man | man -l -`. With --out DIR, DIR (created if missing) gets `tether.1` and one
/// page per subcommand (`tether-node-list.1`, `tether-tty-play.1`, ...), each replaced if it was
/// there: copy them into a man directory (`/usr/local/share/man/man1`) or read them with
/// `man -l DIR/tether.1`. Needs no identity and no core.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write every page into this directory instead of the main one to standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    // Made whole before it is printed: the generator cannot report a failed write (a closed
    // pipe), the standard output can.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "tether", &mut script);
    print(&script)
}

pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    let Some(dir) = &args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut page)?;
        return print(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing manual pages into {}", dir.display()))?;
    eprintln!(
        "manual pages written to {}: tether.1 and one per subcommand (read one with `man -l {}`)",
        dir.display(),
        dir.join("tether.1").display()
    );
    Ok(0)
}

fn print(bytes: &[u8]) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(0)
}
