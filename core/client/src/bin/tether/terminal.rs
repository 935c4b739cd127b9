//! The local terminal: raw mode that is always undone, and its window size.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};
use tether_wire::tty::WindowSize;

/// Puts stdin's terminal in raw mode (keystrokes go through unprocessed: Ctrl-C reaches the
/// remote shell, not this process) until dropped. Dropping restores the saved settings, on every
/// way out of a scope: return, `?`, panic unwinding.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode if stdin is a terminal; `None` if it is not (piped input).
    pub fn enable() -> anyhow::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Drain, not Flush: keys typed before the session started are kept, not discarded.
        tcsetattr(stdin.as_fd(), OptionalActions::Drain, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// The window size of whichever of stdout, stdin or stderr is a terminal.
pub fn window_size() -> Option<WindowSize> {
    let sizes = [
        tcgetwinsize(std::io::stdout().as_fd()),
        tcgetwinsize(std::io::stdin().as_fd()),
        tcgetwinsize(std::io::stderr().as_fd()),
    ];
    sizes.into_iter().flatten().find_map(|size| {
        let size = WindowSize {
            cols: size.ws_col,
            rows: size.ws_row,
        };
        size.check().is_ok().then_some(size)
    })
}
