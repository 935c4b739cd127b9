//! `Watch`: live figures for a page (the web bridge's dashboard, node list and node detail).
//! Core looks every interval and sends only what changed, on the request's own stream, so an
//! open browser tab costs one stream and one audit record, not a request every few seconds.
//! Before each look it checks that the caller may still ask (session or certificate, user,
//! role): a logout, a disable or a role change ends the watch with an error frame.

use std::sync::Arc;
use std::time::Duration;

use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::fleet::WatchSpec;
use tether_wire::stream::FramedSend;
use tether_wire::{ErrorCode, NodeId};
use tracing::debug;

use super::audit::Pending;
use super::{Refusal, fleet, nodes, refuse, resolve, roles};
use crate::auth::{Caller, still_valid};
use crate::server::Shared;

/// What was sent last, to send only changes.
#[derive(Default)]
struct Sent {
    overview: Option<AdminResponse>,
    nodes: Option<AdminResponse>,
    node: Option<AdminResponse>,
}

/// Serves one watch until the client stops reading or the caller may no longer ask.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    caller: Caller,
    spec: WatchSpec,
    mut send: FramedSend,
    pending: Pending,
) {
    let node = match check(&shared, &spec) {
        Ok(node) => node,
        Err(refusal) => {
            pending.done(Err(&refusal)).await;
            refuse(&mut send, refusal).await;
            return;
        }
    };
    if !pending.done(Ok(None)).await {
        let refusal = (
            ErrorCode::INTERNAL,
            "core could not write this request's audit record, so it does not answer it".into(),
        );
        refuse(&mut send, refusal).await;
        return;
    }
    let interval = Duration::from_millis(u64::from(spec.interval_ms));
    let request = AdminRequest::Watch(spec.clone());
    let mut sent = Sent::default();
    loop {
        let allowed = still_valid(&shared, &caller)
            .and_then(|role| roles::permit(role, &caller.user, &request));
        if let Err(refusal) = allowed {
            debug!(user = %caller.user, "watch ended: {}", refusal.1);
            refuse(&mut send, refusal).await;
            return;
        }
        let looked = look(&shared, &spec, node, &mut sent);
        let frames = match looked {
            Ok(frames) => frames,
            Err(refusal) => {
                refuse(&mut send, refusal).await;
                return;
            }
        };
        for frame in frames {
            if send.send(&frame).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            // The client stopped reading (a closed page): nothing more to do.
            _ = send.stream_mut().stopped() => return,
        }
    }
}

/// The watched node, resolved once: a watch follows one node even if its hostname changes.
fn check(shared: &Shared, spec: &WatchSpec) -> Result<Option<NodeId>, Refusal> {
    spec.check().map_err(|m| (ErrorCode::INVALID_ARGUMENT, m))?;
    spec.node
        .as_deref()
        .map(|text| resolve::node(shared, text))
        .transpose()
}

/// One look: the frames that differ from what was sent last.
fn look(
    shared: &Shared,
    spec: &WatchSpec,
    node: Option<NodeId>,
    sent: &mut Sent,
) -> Result<Vec<AdminResponse>, Refusal> {
    let mut frames = Vec::new();
    let mut changed = |slot: &mut Option<AdminResponse>, frame: AdminResponse| {
        if slot.as_ref() != Some(&frame) {
            *slot = Some(frame.clone());
            frames.push(frame);
        }
    };
    if spec.overview {
        changed(
            &mut sent.overview,
            AdminResponse::Overview(fleet::overview(shared)?),
        );
    }
    if let Some(query) = &spec.nodes {
        changed(
            &mut sent.nodes,
            AdminResponse::NodePage(fleet::page(shared, query)?),
        );
    }
    if let Some(id) = node {
        let mut reply = nodes::show_id(shared, id)?;
        if let Some(frame) = reply.pop() {
            changed(&mut sent.node, frame);
        }
    }
    Ok(frames)
}
