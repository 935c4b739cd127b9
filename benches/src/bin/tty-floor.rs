//! `tty-floor`: the fastest a terminal could echo a keystroke on this machine, with and without a
//! relay in the path. A yardstick for `tty-latency`, not a product.
//!
//! Three small roles, each as lean as a terminal can be: plaintext UDP on loopback, blocking
//! system calls, one thread per direction (a blocked `read` is woken straight by the kernel; no
//! event loop, no encryption, no acknowledgements, no flow control).
//!
//! - `agent --listen ADDR -- CMD...`: runs CMD in a PTY once a client (or relay) says hello;
//!   datagrams go to the PTY, PTY output goes back as datagrams.
//! - `relay --listen ADDR --agent ADDR`: forwards datagrams between the last client that spoke and
//!   the agent, as core sits between `tether` and a node.
//! - `client --to ADDR`: the local terminal in raw mode; stdin to datagrams, datagrams to stdout.
//!
//! Under `tty-latency`, `client --to AGENT` is a direct connection (client, agent: the shape of
//! `ssh` and `sshd`) and `client --to RELAY` the relayed one (client, relay, agent: the shape of
//! `tether`, core and a node). Each process on the path costs at least one wake-up per direction
//! whatever it does, so the relayed floor against the direct one shows what a relay costs before
//! any protocol work, and against OpenSSH, whether a relayed terminal can match it at all here.
//!
//! ```text
//! tty-floor agent --listen 127.0.0.1:24001 -- sh -c 'stty raw -echo; echo LAT-READY; exec cat' &
//! tty-floor relay --listen 127.0.0.1:24002 --agent 127.0.0.1:24001 &
//! tty-latency --keys 1000 -- tty-floor client --to 127.0.0.1:24002
//! ```

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd as _;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use portable_pty::CommandBuilder;
use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};
use tether_benches::pty::PtyProcess;

#[derive(Debug, Parser)]
#[command(name = "tty-floor", version, about)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run a command in a PTY for the first peer that says hello.
    Agent {
        /// UDP address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// The command to run in the PTY.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Forward datagrams between the last client that spoke and the agent.
    Relay {
        /// UDP address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// The agent's address.
        #[arg(long)]
        agent: SocketAddr,
        /// Forward from a tokio event loop (one thread, epoll) instead of blocking calls: the
        /// cost of the event loop alone, before any protocol.
        #[arg(long)]
        event_loop: bool,
    },
    /// The local terminal, raw, to an agent or a relay.
    Client {
        /// The agent's or relay's address.
        #[arg(long)]
        to: SocketAddr,
    },
}

/// Large enough for anything a PTY read returns in one go.
const DATAGRAM: usize = 16 * 1024;

fn main() -> anyhow::Result<()> {
    match Cli::parse().role {
        Role::Agent { listen, command } => agent(listen, &command),
        Role::Relay {
            listen,
            agent,
            event_loop: false,
        } => relay(listen, agent),
        Role::Relay {
            listen,
            agent,
            event_loop: true,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?
            .block_on(relay_event_loop(listen, agent)),
        Role::Client { to } => client(to),
    }
}

fn agent(listen: SocketAddr, command: &[String]) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(listen).with_context(|| format!("cannot bind {listen}"))?;
    let mut buf = vec![0u8; DATAGRAM];
    // The first datagram is the hello (empty); it says where output goes.
    let (_, peer) = socket.recv_from(&mut buf)?;
    let mut builder = CommandBuilder::new(&command[0]);
    builder.args(&command[1..]);
    let PtyProcess {
        master: _master,
        mut child,
        mut output,
        mut input,
    } = tether_benches::pty::spawn(builder, &command[0])?;
    let sender = socket.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; DATAGRAM];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || sender.send_to(&buf[..n], peer).is_err() {
                break;
            }
        }
        // The command has ended: an empty datagram tells the client to leave.
        let _ = sender.send_to(&[], peer);
        std::process::exit(0);
    });
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if from == peer && n > 0 {
            input.write_all(&buf[..n])?;
        }
        if child.try_wait()?.is_some() {
            return Ok(());
        }
    }
}

fn relay(listen: SocketAddr, agent: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(listen).with_context(|| format!("cannot bind {listen}"))?;
    let mut buf = vec![0u8; DATAGRAM];
    let mut client: Option<SocketAddr> = None;
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if from == agent {
            if let Some(client) = client {
                socket.send_to(&buf[..n], client)?;
            }
        } else {
            client = Some(from);
            socket.send_to(&buf[..n], agent)?;
        }
    }
}

async fn relay_event_loop(listen: SocketAddr, agent: SocketAddr) -> anyhow::Result<()> {
    let socket = tokio::net::UdpSocket::bind(listen)
        .await
        .with_context(|| format!("cannot bind {listen}"))?;
    let mut buf = vec![0u8; DATAGRAM];
    let mut client: Option<SocketAddr> = None;
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if from == agent {
            if let Some(client) = client {
                socket.send_to(&buf[..n], client).await?;
            }
        } else {
            client = Some(from);
            socket.send_to(&buf[..n], agent).await?;
        }
    }
}

fn client(to: SocketAddr) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).context("stdin is not a terminal")?;
    let mut raw = saved.clone();
    raw.make_raw();
    tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;

    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(to)?;
    socket.send(&[])?;
    let sender = socket.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; DATAGRAM];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || sender.send(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; DATAGRAM];
    let mut stdout = std::io::stdout().lock();
    let result: std::io::Result<()> = loop {
        match socket.recv(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(error) = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()) {
                    break Err(error);
                }
            }
            Err(error) => break Err(error),
        }
    };
    let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &saved);
    if let Err(error) = result {
        bail!("connection failed: {error}");
    }
    Ok(())
}
