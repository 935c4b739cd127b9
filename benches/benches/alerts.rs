//! Alert rules' cost per heartbeat: what core adds to each accepted heartbeat when rules exist
//! (`tether_core::alerts::evaluate` with the node's labels looked up in an index of 100,000
//! nodes, as core does), with 10 rules against none.
//!
//! `cargo bench -p tether-benches --bench alerts`

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tether_benches::sim;
use tether_core::alerts::engine::Engine;
use tether_core::alerts::{Rule, evaluate};
use tether_wire::NodeId;
use tether_wire::alerts::{AlertRule, Condition, Field, Op, Severity, Targets};
use tether_wire::heartbeat::Metrics;

const NODES: usize = 100_000;

fn rule(name: &str, condition: Condition, labels: &[(&str, &str)]) -> Arc<Rule> {
    Rule::new(AlertRule {
        name: name.into(),
        condition,
        for_ms: 300_000,
        severity: Severity::Warning,
        targets: Targets {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nodes: vec![],
            groups: vec![],
        },
        channels: vec![],
        enabled: true,
        created_by: "bench".into(),
        created_at_ms: 0,
    })
}

fn threshold(field: &str, op: Op, threshold: f64) -> Condition {
    Condition::Threshold {
        field: field.parse::<Field>().unwrap(),
        op,
        threshold,
    }
}

/// Ten rules of the kinds operators write: most for every node, some for labelled ones.
fn ten_rules() -> Vec<Arc<Rule>> {
    vec![
        rule("cpu-high", threshold("cpu", Op::Gt, 90.0), &[]),
        rule("mem-high", threshold("mem", Op::Gt, 90.0), &[]),
        rule("disk-full", threshold("disk", Op::Gte, 85.0), &[]),
        rule("root-full", threshold("disk:/", Op::Gt, 90.0), &[]),
        rule(
            "load-prod",
            threshold("load1", Op::Gt, 8.0),
            &[("env", "prod")],
        ),
        rule("rx-flood", threshold("net_rx", Op::Gt, 1e8), &[]),
        rule("procs", threshold("procs", Op::Gt, 2000.0), &[]),
        rule("tcp", threshold("tcp", Op::Gt, 5000.0), &[("env", "prod")]),
        rule("hot", threshold("temperature", Op::Gt, 80.0), &[]),
        rule("clock", Condition::ClockSkew { max_ms: 30_000 }, &[]),
    ]
}

/// Nodes' labels by id, as core's index holds them.
type Index = HashMap<NodeId, BTreeMap<String, String>>;

fn fleet() -> (Vec<NodeId>, Index, Vec<Metrics>) {
    let ids: Vec<NodeId> = (0..NODES).map(|_| NodeId::random()).collect();
    let index = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let env = if i % 2 == 0 { "prod" } else { "staging" };
            let labels = BTreeMap::from([
                ("env".to_string(), env.to_string()),
                ("role".to_string(), format!("role-{}", i % 7)),
            ]);
            (*id, labels)
        })
        .collect();
    // A handful of distinct reports, some of them over a threshold now and then.
    let metrics = (0..64).map(|seq| sim::metrics_at(seq, 7)).collect();
    (ids, index, metrics)
}

fn per_heartbeat(c: &mut Criterion) {
    let (ids, index, metrics) = fleet();
    let mut group = c.benchmark_group("alerts per heartbeat, 100000 nodes");
    for (label, rules) in [("no rules", Vec::new()), ("10 rules", ten_rules())] {
        let mut engine = Engine::default();
        let mut out = Vec::new();
        let mut i = 0usize;
        let mut now_ms = 1_790_000_000_000i64;
        group.bench_function(label, |b| {
            b.iter(|| {
                // Core's path: find the node's record, then evaluate (an empty rule list
                // returns before the lookup).
                i = (i + 1) % NODES;
                now_ms += 1;
                let id = ids[i];
                if rules.is_empty() {
                    return;
                }
                let labels = &index[&id];
                out.clear();
                evaluate(
                    &mut engine,
                    &rules,
                    id,
                    labels,
                    &[],
                    Some(&metrics[i % metrics.len()]),
                    None,
                    now_ms,
                    600_000,
                    &mut out,
                );
                std::hint::black_box(&out);
            })
        });
        let (tracked, announced) = engine.sizes();
        eprintln!("{label}: {tracked} pairs tracked, {announced} announced");
    }
    group.finish();
}

criterion_group!(benches, per_heartbeat);
criterion_main!(benches);
