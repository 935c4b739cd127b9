//! A program in a fresh 24 × 80 PTY, as a terminal emulator runs it (`tty-latency`'s client,
//! `tty-floor`'s remote command).

use std::io::{Read, Write};

use anyhow::Context as _;
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

/// The running program and the master side of its terminal.
pub struct PtyProcess {
    /// Kept for the PTY's life (resizes; the reader and writer are its duplicates).
    pub master: Box<dyn MasterPty + Send>,
    /// The program.
    pub child: Box<dyn Child + Send + Sync>,
    /// What the program writes to its terminal.
    pub output: Box<dyn Read + Send>,
    /// What the program reads from its terminal.
    pub input: Box<dyn Write + Send>,
}

impl std::fmt::Debug for PtyProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtyProcess")
            .field("child", &self.child)
            .finish_non_exhaustive()
    }
}

/// Starts `command` (whose program is `name`, for errors) in a new PTY.
pub fn spawn(command: CommandBuilder, name: &str) -> anyhow::Result<PtyProcess> {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .context("cannot open a PTY")?;
    let child = pair
        .slave
        .spawn_command(command)
        .with_context(|| format!("cannot start {name}"))?;
    // Only the program holds the slave side: its exit ends the master's reads.
    drop(pair.slave);
    let output = pair.master.try_clone_reader()?;
    let input = pair.master.take_writer()?;
    Ok(PtyProcess {
        master: pair.master,
        child,
        output,
        input,
    })
}
