//! `tether-core dev`: core, a node for this machine and the web bridge in one process, data
//! under ./tether-dev.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tether_certs::identity::AdminIdentity;
use tether_client::AdminClient;
use tether_core::Core;
use tether_core::config::CoreConfig;
use tether_node::NodeConfig;
use tether_web_bridge::{Bridge, BridgeConfig};
use tether_wire::admin::{AdminRequest, AdminResponse, Role};
use tether_wire::users::{NewUser, Secret};
use tokio_util::sync::CancellationToken;

use crate::CoreFlags;

/// `dev`'s flags: core's, and where the web bridge listens.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    core: CoreFlags,
    /// Where the web bridge listens (browsers open http://ADDR/).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    web_listen: SocketAddr,
}

/// The bridge's user and how long its certificate lasts.
const BRIDGE_USER: &str = "bridge";
const BRIDGE_CERT_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let flags = args.core;
    let root = flags.data.clone().unwrap_or_else(|| "tether-dev".into());
    let mut defaults = CoreConfig::with_data_dir(root.join("core"));
    defaults.listen = "127.0.0.1:4433".parse().expect("valid");
    defaults.auto_approve = true;
    defaults.heartbeat_interval = Duration::from_secs(5);
    defaults.offline_after = Duration::from_secs(15);
    defaults.metrics_listen = Some("127.0.0.1:9464".parse().expect("valid"));
    let mut config = CoreFlags {
        data: None,
        ..flags
    }
    .build(defaults)?;
    config.data_dir = root.join("core");
    let core = Core::start(config)
        .await
        .context("starting core (is a port taken? see --listen and --metrics-listen)")?;
    let addr = core.local_addr();
    let metrics = core
        .metrics_addr()
        .map(|a| format!("Prometheus: http://{a}/metrics  (health check: http://{a}/health)\n\n"))
        .unwrap_or_default();
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
    let (bridge_identity, password) = web_setup(&identity, &dial, &root)
        .await
        .context("setting up the web bridge's identity and the admin's password")?;
    let mut bridge_config = BridgeConfig::new(bridge_identity);
    bridge_config.core = Some(dial.clone());
    bridge_config.listen = args.web_listen;
    let bridge = Bridge::start(bridge_config)
        .await
        .context("starting the web bridge (is the port taken? choose another with --web-listen)")?;
    let login = match &password {
        Some(password) => format!(
            "log in as admin with the password\n\n\x20 {password}\n\n\
             \x20 (shown this once; `tether user passwd admin` sets another)"
        ),
        None => "log in as admin with the password shown at the first start \
                 (`tether user passwd admin` sets another)"
            .to_string(),
    };
    eprintln!(
        "\nTether dev is running: core on {addr}, data in {root}/, a node for this machine\n\
         (auto-approved) connected to it, and the web UI.\n\n\
         Web UI: {url}  {login}\n\n\
         {metrics}\
         In another terminal try:\n\n\
         \x20 export TETHER_IDENTITY={identity}\n\
         \x20 tether node list\n\
         \x20 tether node show <ID>            (any unique prefix of the id)\n\
         \x20 tether exec --all -- uptime\n\
         \x20 tether tty <HOSTNAME>           (a terminal, recorded; `tether tty list`, `tty play`)\n\n\
         From a source checkout, `cargo run -q -p tether-client --bin tether --` stands for `tether`.\n\
         To enroll another machine, make core reachable (--listen 0.0.0.0:{port} --public-addr HOST:{port})\n\
         and run there:  tether-node run --token $(tether-core key show --data {root}/core)\n\n\
         Ctrl-C stops everything.\n",
        root = root.display(),
        identity = identity.display(),
        url = bridge.url(),
        port = addr.port(),
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
    bridge.shutdown().await;
    core.shutdown().await;
    Ok(())
}

/// On the first start: a `bridge` user and its identity (kept as `bridge.identity`, 0600),
/// and a password for `admin`, returned to be shown once. Later starts reuse the identity and
/// leave the password alone.
async fn web_setup(
    admin_identity: &Path,
    dial: &str,
    root: &Path,
) -> anyhow::Result<(AdminIdentity, Option<String>)> {
    let admin = AdminIdentity::load(admin_identity)?;
    let client = AdminClient::connect(&admin, Some(dial)).await?;
    let result = async {
        let path = root.join("bridge.identity");
        let bridge = match AdminIdentity::load(&path) {
            Ok(identity) => identity,
            Err(_) => {
                let add = client
                    .request(&AdminRequest::UserAdd(NewUser {
                        name: BRIDGE_USER.to_string(),
                        role: Role::Bridge,
                        email: None,
                        password: None,
                    }))
                    .await;
                match add {
                    Ok(_) => {}
                    // Made by an earlier start whose identity file went missing.
                    Err(tether_client::ClientError::Core { code, .. })
                        if code == tether_wire::ErrorCode::CONFLICT => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
                let (identity, _) = client
                    .issue_identity(&admin, BRIDGE_USER, BRIDGE_CERT_LIFETIME)
                    .await?;
                identity.save(&path)?;
                identity
            }
        };
        let shown = client
            .request(&AdminRequest::UserShow {
                name: "admin".to_string(),
            })
            .await?;
        let has_password = matches!(
            shown.first(),
            Some(AdminResponse::User(user)) if user.has_password
        );
        let password = if has_password {
            None
        } else {
            let password = tether_client::generate_password();
            client
                .request(&AdminRequest::UserPasswd {
                    name: "admin".to_string(),
                    password: Secret::new(password.clone()),
                    current: None,
                })
                .await?;
            Some(password)
        };
        Ok((bridge, password))
    }
    .await;
    client.close().await;
    result
}
