//! Alert rules, alerts and channels (`tether alert ...`). The store keeps them; a change to the
//! rules is handed to `crate::alerts`, which evaluates them.

use tether_store::AlertRefusal;
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::alerts::AlertRule;

use super::{Refusal, Reply, internal, invalid, resolve};
use crate::auth::Caller;
use crate::server::Shared;

/// Alerts shown at most by one `AlertList`.
const MAX_LIST: u32 = 10_000;

fn refused(refusal: AlertRefusal) -> Refusal {
    let code = match refusal {
        AlertRefusal::NotFound(_) => ErrorCode::NOT_FOUND,
        AlertRefusal::Limit(..) => ErrorCode::LIMIT_REACHED,
        AlertRefusal::UnknownChannel(_) => ErrorCode::INVALID_ARGUMENT,
        _ => ErrorCode::CONFLICT,
    };
    (code, refusal.to_string())
}

/// Every alert request.
pub(crate) async fn handle(shared: &Shared, caller: &Caller, request: AdminRequest) -> Reply {
    let store = &shared.store;
    let now_ms = shared.now_ms();
    match request {
        AdminRequest::AlertRuleAdd { mut rule, nodes } => {
            rule.check().map_err(invalid)?;
            // Nodes named by id, prefix or hostname are kept by id.
            rule.targets.nodes.clear();
            for node in &nodes {
                let id = resolve::node(shared, node)?;
                if !rule.targets.nodes.contains(&id) {
                    rule.targets.nodes.push(id);
                }
            }
            // Groups are kept by name; each must exist now (a group deleted later matches
            // nothing).
            rule.targets.groups.sort_unstable();
            rule.targets.groups.dedup();
            crate::admin::groups::select(shared, &rule.targets.groups)?;
            rule.created_by = caller.user.clone();
            rule.created_at_ms = now_ms;
            let rule = store
                .add_alert_rule(rule)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            changed(shared, &rule)?;
            Ok(vec![AdminResponse::AlertRule(rule)])
        }
        AdminRequest::AlertRuleList => Ok(vec![AdminResponse::AlertRules(
            store.alert_rules().map_err(internal)?,
        )]),
        AdminRequest::AlertRuleShow { name } => match store.alert_rule(&name).map_err(internal)? {
            Some(rule) => Ok(vec![AdminResponse::AlertRule(rule)]),
            None => Err(refused(AlertRefusal::NotFound(format!("rule {name:?}")))),
        },
        AdminRequest::AlertRuleEnable { name, enabled } => {
            let rule = store
                .set_alert_rule_enabled(&name, enabled)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            if !enabled {
                shared.alerts.retire(
                    &name,
                    now_ms,
                    &format!("the rule was disabled by {}", caller.user),
                );
            }
            changed(shared, &rule)?;
            Ok(vec![AdminResponse::AlertRule(rule)])
        }
        AdminRequest::AlertRuleDelete { name } => {
            let rule = store
                .delete_alert_rule(&name)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            shared.alerts.retire(
                &name,
                now_ms,
                &format!("the rule was deleted by {}", caller.user),
            );
            shared.alerts.reload(store).map_err(internal)?;
            Ok(vec![AdminResponse::AlertRule(rule)])
        }
        AdminRequest::AlertList(query) => {
            let node = match &query.node {
                Some(text) => Some(resolve::node(shared, text)?),
                None => None,
            };
            let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIST) as usize;
            let alerts = store.alerts(query.firing, node, limit).map_err(internal)?;
            Ok(super::chunks(alerts, AdminResponse::Alerts))
        }
        AdminRequest::AlertShow { id } => match store.alert(id).map_err(internal)? {
            Some(detail) => Ok(vec![AdminResponse::AlertDetail(detail)]),
            None => Err(refused(AlertRefusal::NotFound(format!("alert {id}")))),
        },
        AdminRequest::AlertAck { id } => {
            let alert = store
                .ack_alert(id, caller.user.clone(), now_ms)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            Ok(vec![AdminResponse::Alert(alert)])
        }
        AdminRequest::AlertChannelAdd(mut channel) => {
            channel.check().map_err(invalid)?;
            channel.created_by = caller.user.clone();
            channel.created_at_ms = now_ms;
            let channel = store
                .add_alert_channel(channel)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            Ok(vec![AdminResponse::AlertChannel(channel.redacted())])
        }
        AdminRequest::AlertChannelList => Ok(vec![AdminResponse::AlertChannels(
            store
                .alert_channels()
                .map_err(internal)?
                .iter()
                .map(|c| c.redacted())
                .collect(),
        )]),
        AdminRequest::AlertChannelDelete { name } => {
            let channel = store
                .delete_alert_channel(&name)
                .await
                .map_err(internal)?
                .map_err(refused)?;
            Ok(vec![AdminResponse::AlertChannel(channel.redacted())])
        }
        AdminRequest::AlertChannelTest { name } => {
            let channel = store
                .alert_channel(&name)
                .map_err(internal)?
                .ok_or_else(|| refused(AlertRefusal::NotFound(format!("channel {name:?}"))))?;
            let delivery = crate::alerts::notify::test(shared, &channel).await;
            Ok(vec![AdminResponse::AlertDelivery(delivery)])
        }
        _ => Err((ErrorCode::UNEXPECTED_MESSAGE, "not an alert request".into())),
    }
}

/// After a rule was added or enabled: the evaluator reads the rules again, and an offline rule
/// starts counting for the nodes offline now.
fn changed(shared: &Shared, rule: &AlertRule) -> Result<(), Refusal> {
    shared.alerts.reload(&shared.store).map_err(internal)?;
    shared.alerts.watch_offline(shared, rule).map_err(internal)
}
