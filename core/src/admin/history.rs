//! Records of what was done: past executions, terminal sessions, and ending a live session.

use tether_wire::NodeId;
use tether_wire::admin::AdminResponse;

use super::{Reply, chunks, internal, resolve};
use crate::server::Shared;
use crate::tty::Caller;

fn limit(asked: u32) -> usize {
    usize::try_from(asked.clamp(1, 10_000)).unwrap_or(100)
}

fn node_filter(shared: &Shared, node: Option<String>) -> Result<Option<NodeId>, super::Refusal> {
    node.map(|text| resolve::node(shared, &text)).transpose()
}

/// `ExecHistory`.
pub(crate) fn executions(shared: &Shared, node: Option<String>, asked: u32) -> Reply {
    let node = node_filter(shared, node)?;
    let records = shared
        .store
        .executions(node, limit(asked))
        .map_err(internal)?;
    Ok(chunks(
        records
            .into_iter()
            .map(crate::exec::execution_view)
            .collect(),
        AdminResponse::Executions,
    ))
}

/// `ListTty`.
pub(crate) fn terminals(shared: &Shared, active: bool, node: Option<String>, asked: u32) -> Reply {
    let node = node_filter(shared, node)?;
    let records = shared
        .store
        .tty_sessions(node, active, limit(asked))
        .map_err(internal)?;
    Ok(chunks(
        records.into_iter().map(crate::tty::view).collect(),
        AdminResponse::TtySessions,
    ))
}

/// `ShowTty`.
pub(crate) fn terminal(shared: &Shared, text: &str) -> Reply {
    let record = crate::tty::find_session(shared, text)?;
    Ok(vec![AdminResponse::TtySession(crate::tty::view(record))])
}

/// `KillTty`.
pub(crate) async fn kill_terminal(shared: &Shared, caller: &Caller, text: &str) -> Reply {
    let view = crate::tty::kill(shared, caller, text).await?;
    Ok(vec![AdminResponse::TtySession(view)])
}
