//! A program in a fresh 24 × 80 PTY, as a terminal emulator runs it (`tty-latency`'s client,
//! `tty-floor`'s remote command).

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

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

/// Starts `command` (whose program is `name`, for errors) in a new PTY, in the current
/// directory unless the command names another. As in a shell, a program named with a `/` is
/// that path, relative to that directory.
pub fn spawn(mut command: CommandBuilder, name: &str) -> anyhow::Result<PtyProcess> {
    // portable-pty would start a command without a directory in `$HOME`, and looks up any
    // relative program in PATH unless it starts with `./` or `../`: `target/release/tether`
    // would name nothing.
    let dir = match command.get_cwd() {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = std::env::current_dir().context("cannot read the current directory")?;
            command.cwd(&dir);
            dir
        }
    };
    if let Some(program) = command.get_argv_mut().first_mut()
        && program.as_bytes().contains(&b'/')
        && Path::new(program).is_relative()
    {
        *program = dir.join(&program).into_os_string();
    }
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn a_relative_program_path_runs_from_the_current_directory() {
        // Under the current directory (the crate's, under cargo test), which is not $HOME.
        let dir = tempfile::tempdir_in(".").expect("temp dir");
        let script = dir.path().join("hello.sh");
        std::fs::write(&script, "#!/bin/sh\necho relative-ok\npwd\n").expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        // With a slash, without a leading `./`: a path, not a name to look up in PATH.
        let name = dir.path().file_name().unwrap().to_str().unwrap();
        let relative = format!("{name}/hello.sh");
        let mut process = spawn(CommandBuilder::new(&relative), &relative).expect("started");
        let mut seen = Vec::new();
        // The program's exit ends the reads (with EIO on Linux); what came before stays.
        let _ = process.output.read_to_end(&mut seen);
        let seen = String::from_utf8_lossy(&seen);
        assert!(seen.contains("relative-ok"), "{seen}");
        let here = std::env::current_dir().unwrap();
        assert!(
            seen.contains(here.to_str().unwrap()),
            "ran elsewhere: {seen}"
        );
        assert!(process.child.wait().expect("waited").success());
    }
}
