//! The agent once more, as an example target: tests build it with another `TETHER_VERSION`
//! (`cargo build -p tether-node --example tether-node-next`) to get a second agent version
//! without rebuilding the agent's library or replacing `target/debug/tether-node`, which
//! other tests are running. It is the agent's own `main`, nothing else.

#[path = "../src/main.rs"]
mod agent;

fn main() -> std::process::ExitCode {
    agent::main()
}
