//! `tether-core dev`: core and a node for this machine in one process, data under ./tether-dev.

use std::time::Duration;

use anyhow::Context as _;
use tether_core::Core;
use tether_core::config::CoreConfig;
use tether_node::NodeConfig;
use tokio_util::sync::CancellationToken;

use crate::CoreFlags;

pub(crate) async fn run(flags: CoreFlags) -> anyhow::Result<()> {
    let root = flags.data.clone().unwrap_or_else(|| "tether-dev".into());
    let mut defaults = CoreConfig::with_data_dir(root.join("core"));
    defaults.listen = "127.0.0.1:4433".parse().expect("valid");
    defaults.auto_approve = true;
    defaults.heartbeat_interval = Duration::from_secs(5);
    defaults.offline_after = Duration::from_secs(15);
    let mut config = CoreFlags {
        data: None,
        ..flags
    }
    .build(defaults)?;
    config.data_dir = root.join("core");
    let core = Core::start(config).await.context("starting core")?;
    let addr = core.local_addr();
    let dial = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let token = core.data_dir().join_token()?;

    let mut node_config = NodeConfig::with_state_dir(root.join("node"));
    node_config.core_addr = Some(dial.clone());
    node_config.token = Some(token);
    node_config.reconnect_max = Duration::from_secs(5);
    let stop = CancellationToken::new();
    let mut node = {
        let stop = stop.clone();
        tokio::spawn(async move { tether_node::run(node_config, stop.cancelled_owned()).await })
    };

    let identity = core.data_dir().admin_identity_path();
    eprintln!(
        "\nTether dev is running: core on {addr}, data in {root}/, and a node for this machine\n\
         (auto-approved) connected to it. In another terminal try:\n\n\
         \x20 export TETHER_IDENTITY={identity}\n\
         \x20 tether node list\n\
         \x20 tether node show <ID>            (any unique prefix of the id)\n\
         \x20 tether exec --all -- uptime\n\
         \x20 tether tty <HOSTNAME>           (a terminal, recorded; `tether tty list`, `tty play`)\n\n\
         From a source checkout, `cargo run -q -p tether-client --bin tether --` stands for `tether`.\n\
         To enroll another machine, make core reachable (--listen 0.0.0.0:4433 --public-addr HOST:4433)\n\
         and run there:  tether-node run --token $(tether-core key show --data {root}/core)\n\n\
         Ctrl-C stops both.\n",
        root = root.display(),
        identity = identity.display(),
    );

    tokio::select! {
        _ = crate::shutdown_signal() => {
            eprintln!("stopping…");
            stop.cancel();
            // Let the node say goodbye before core goes.
            let _ = tokio::time::timeout(Duration::from_secs(3), node).await;
        }
        result = &mut node => {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("the dev node stopped: {e}"),
                Err(e) => eprintln!("the dev node crashed: {e}"),
            }
            eprintln!("core keeps running; Ctrl-C stops it");
            crate::shutdown_signal().await;
            eprintln!("stopping…");
        }
    }
    core.shutdown().await;
    Ok(())
}
