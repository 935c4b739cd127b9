//! Naming things on the command line: nodes by id, unique id prefix or exact hostname, and
//! applications, executions and terminal sessions by id or unique id prefix. Every request that
//! names a node goes through [`node`], so `tether node show vm`, `tether exec vm`, `tether tty
//! vm` and `--node vm` agree on what `vm` means.

use tether_store::{NodeRecord, Resolved, StoreError};
use tether_wire::{ApplicationId, ErrorCode, NodeId};

use super::{Refusal, internal};
use crate::server::Shared;

/// Turns a store lookup of an id or id prefix into one id or a refusal naming the problem.
pub(crate) fn resolve<T: std::fmt::Display>(
    kind: &str,
    text: &str,
    resolved: Resolved<T>,
) -> Result<T, Refusal> {
    match resolved {
        Resolved::One(id) => Ok(id),
        Resolved::NotFound => Err((ErrorCode::NOT_FOUND, format!("no {kind} matches {text:?}"))),
        Resolved::Ambiguous(ids) => Err((
            ErrorCode::AMBIGUOUS,
            format!(
                "{text:?} matches several {kind}s ({}); give more of the id",
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Resolved::Invalid(message) => Err((ErrorCode::INVALID_ARGUMENT, message)),
    }
}

/// An application by id or unique prefix.
pub(crate) fn application(shared: &Shared, text: &str) -> Result<ApplicationId, Refusal> {
    resolve(
        "application",
        text,
        shared.store.resolve_application(text).map_err(internal)?,
    )
}

/// A node by id, unique id prefix, or exact hostname (see [`choose`] for which wins).
pub(crate) fn node(shared: &Shared, text: &str) -> Result<NodeId, Refusal> {
    if text.is_empty() {
        return Err((ErrorCode::INVALID_ARGUMENT, "the node name is empty".into()));
    }
    choose(text, |text| lookup(shared, text)).map_err(|e| match e {
        Choice::Store(e) => internal(e),
        Choice::Refused(refusal) => refusal,
    })
}

/// What the store holds for a name: nodes with that exact hostname, and the id lookup.
struct Found {
    by_hostname: Vec<NodeRecord>,
    by_id: Resolved<NodeId>,
    /// Hostnames of the nodes `by_id` found ambiguously, for the message.
    id_candidates: Vec<(NodeId, String)>,
    /// Hostname of the node `by_id` found alone, for the message.
    id_hostname: Option<String>,
}

fn lookup(shared: &Shared, text: &str) -> Result<Found, StoreError> {
    let by_hostname = shared.store.nodes_by_hostname(text)?;
    let by_id = shared.store.resolve_node(text)?;
    let id_hostname = match &by_id {
        Resolved::One(id) => shared.store.node(*id)?.map(|n| n.record.hostname),
        _ => None,
    };
    let id_candidates = match &by_id {
        Resolved::Ambiguous(ids) => ids
            .iter()
            .map(|id| {
                let hostname = shared
                    .store
                    .node(*id)?
                    .map_or_else(String::new, |n| n.record.hostname);
                Ok((*id, hostname))
            })
            .collect::<Result<_, StoreError>>()?,
        _ => Vec::new(),
    };
    Ok(Found {
        by_hostname,
        by_id,
        id_candidates,
        id_hostname,
    })
}

enum Choice {
    Store(StoreError),
    Refused(Refusal),
}

/// The rule, in order: a whole id; an exact hostname of a node not deleted; a unique id prefix;
/// an exact hostname of a deleted node. Several nodes at the first rule that matches:
/// ambiguous, listing them. A live node's hostname that is also the beginning of *another*
/// node's id is ambiguous too: hostnames come from the nodes themselves, and no node may take
/// over the short id an admin copies from `tether node list` by calling itself that.
fn choose(
    text: &str,
    lookup: impl FnOnce(&str) -> Result<Found, StoreError>,
) -> Result<NodeId, Choice> {
    let found = lookup(text).map_err(Choice::Store)?;
    let whole_id = text.len() >= 32 && text.parse::<NodeId>().is_ok();
    if let (true, Resolved::One(id)) = (whole_id, &found.by_id) {
        return Ok(*id);
    }
    let (live, deleted): (Vec<&NodeRecord>, Vec<&NodeRecord>) =
        found.by_hostname.iter().partition(|n| !n.deleted);
    let candidates = |nodes: &[&NodeRecord]| -> Vec<(NodeId, String)> {
        nodes.iter().map(|n| (n.id, n.hostname.clone())).collect()
    };
    match live.as_slice() {
        [one] => {
            let others: Vec<(NodeId, String)> = match &found.by_id {
                Resolved::One(id) if *id != one.id => {
                    vec![(*id, found.id_hostname.clone().unwrap_or_default())]
                }
                Resolved::Ambiguous(_) => found
                    .id_candidates
                    .iter()
                    .filter(|(id, _)| *id != one.id)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            if others.is_empty() {
                return Ok(one.id);
            }
            let mut all = candidates(&[*one]);
            all.extend(others);
            return Err(ambiguous(text, &all));
        }
        [] => {}
        several => return Err(ambiguous(text, &candidates(several))),
    }
    match found.by_id {
        Resolved::One(id) => return Ok(id),
        Resolved::Ambiguous(_) => return Err(ambiguous(text, &found.id_candidates)),
        Resolved::NotFound | Resolved::Invalid(_) => {}
    }
    match deleted.as_slice() {
        [one] => Ok(one.id),
        [] => Err(Choice::Refused((
            ErrorCode::NOT_FOUND,
            format!(
                "no node matches {text:?} (a node is named by its id, a unique beginning of \
                 its id, or its exact hostname)"
            ),
        ))),
        several => Err(ambiguous(text, &candidates(several))),
    }
}

fn ambiguous(text: &str, candidates: &[(NodeId, String)]) -> Choice {
    let listed: Vec<String> = candidates
        .iter()
        .map(|(id, hostname)| format!("{id} ({hostname})"))
        .collect();
    Choice::Refused((
        ErrorCode::AMBIGUOUS,
        format!(
            "{text:?} matches {} nodes: {}; name one by its id",
            candidates.len(),
            listed.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_wire::admin::NodeStatus;

    fn record(id: &str, hostname: &str, deleted: bool) -> NodeRecord {
        NodeRecord {
            id: id.parse().unwrap(),
            hostname: hostname.into(),
            public_key_pem: String::new(),
            labels: Default::default(),
            maintenance: false,
            deleted,
            application_id: ApplicationId::random(),
            created_at_ms: 0,
            updated_at_ms: 0,
            connectivity: NodeStatus::Offline,
            connectivity_changed_ms: 0,
            public_addr: None,
            agent_version: String::new(),
            clock_skew_ms: None,
            deleted_at_ms: None,
        }
    }

    const A: &str = "db010000-0000-4000-8000-000000000000";
    const B: &str = "bbbb0000-0000-4000-8000-000000000000";

    fn run(
        text: &str,
        by_hostname: Vec<NodeRecord>,
        by_id: Resolved<NodeId>,
    ) -> Result<NodeId, String> {
        choose(text, |_| {
            Ok(Found {
                by_hostname,
                by_id,
                id_candidates: vec![
                    (A.parse().unwrap(), "a".into()),
                    (B.parse().unwrap(), "b".into()),
                ],
                id_hostname: Some("a".into()),
            })
        })
        .map_err(|e| match e {
            Choice::Refused((code, message)) => format!("{}: {message}", code.name()),
            Choice::Store(e) => e.to_string(),
        })
    }

    #[test]
    fn the_order_of_the_rules() {
        let a: NodeId = A.parse().unwrap();
        let b: NodeId = B.parse().unwrap();
        // A whole id wins, even over a node whose hostname is that text.
        assert_eq!(run(A, vec![record(B, A, false)], Resolved::One(a)), Ok(a));
        // A hostname that is also the beginning of another node's id: ambiguous, so that no
        // node can take over a short id by calling itself that...
        let taken = run("db01", vec![record(B, "db01", false)], Resolved::One(a)).unwrap_err();
        assert!(
            taken.starts_with("ambiguous") && taken.contains(A) && taken.contains(B),
            "{taken}"
        );
        // ...unless it is the beginning of its own id.
        assert_eq!(
            run("db01", vec![record(A, "db01", false)], Resolved::One(a)),
            Ok(a)
        );
        // A hostname that begins no id.
        assert_eq!(
            run("web-1", vec![record(B, "web-1", false)], Resolved::NotFound),
            Ok(b)
        );
        // Without such a host, the prefix.
        assert_eq!(run("db01", vec![], Resolved::One(a)), Ok(a));
        // A live node's hostname beats a deleted node's; a deleted one is still found alone.
        assert_eq!(
            run(
                "vm",
                vec![record(A, "vm", true), record(B, "vm", false)],
                Resolved::NotFound
            ),
            Ok(b)
        );
        assert_eq!(
            run("vm", vec![record(A, "vm", true)], Resolved::NotFound),
            Ok(a)
        );
    }

    #[test]
    fn ambiguity_lists_the_candidates() {
        let twins = vec![record(A, "vm", false), record(B, "vm", false)];
        let message = run("vm", twins, Resolved::NotFound).unwrap_err();
        assert!(message.starts_with("ambiguous"), "{message}");
        assert!(message.contains(A) && message.contains(B), "{message}");
        let prefix = run(
            "db",
            vec![],
            Resolved::Ambiguous(vec![A.parse().unwrap(), B.parse().unwrap()]),
        )
        .unwrap_err();
        assert!(prefix.contains(&format!("{A} (a)")), "{prefix}");
        let none = run("nope", vec![], Resolved::Invalid("not hex".into())).unwrap_err();
        assert!(none.starts_with("not_found"), "{none}");
        assert!(none.contains("exact hostname"), "{none}");
    }
}
