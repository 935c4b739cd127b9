//! `tether audit`: read the audit log, and verify its hash chain.

use std::time::SystemTime;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse};
use tether_wire::users::{AuditQuery, AuditView};

use crate::output::{self, print_json, rfc3339};

/// Read the audit log (admins): every admin request, allowed or refused, newest first.
///
/// Each record carries a hash of the one before: `tether audit verify` recomputes the chain and
/// names the first record that does not fit. Times for --since and --until are RFC 3339
/// (`2026-11-29T10:00:00Z`, without the zone for UTC, or a date alone for its midnight UTC) or a
/// duration ago (`24h`, `7days`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only this user's requests.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only this action (`nodes.edit`), or a family of them (`nodes`, `users`).
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Only this resource: a kind (`node`, `user`, `cert`, `exec`, `tty`, ...) or KIND:ID
    /// (an id prefix matches).
    #[arg(long, value_name = "KIND[:ID]")]
    resource: Option<String>,
    /// From this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// Only refused and failed requests.
    #[arg(long)]
    failed: bool,
    /// At most this many records (1 to 100000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
    /// Only the record with this sequence number.
    #[arg(long, value_name = "SEQ")]
    seq: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain from the first record kept to the last, and name the first
    /// record that was edited, removed or cut off. Exit status 1 when the chain is broken.
    ///
    /// It prints the hash of the last record: note it elsewhere now and then; someone able to
    /// rewrite core's database could recompute a whole chain, but not match a hash you kept.
    Verify {
        /// Also check that record SEQ still has the hash you noted (from an earlier `audit
        /// verify`): a log rewritten whole, its chain recomputed, no longer matches. Repeat for
        /// several.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_expect)]
        expect: Vec<(u64, String)>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `SEQ:HASH`, as `audit verify` prints the head.
fn parse_expect(text: &str) -> Result<(u64, String), String> {
    let (seq, hash) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not SEQ:HASH"))?;
    let seq = seq
        .trim()
        .parse()
        .map_err(|_| format!("{seq:?} is not a sequence number"))?;
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hash:?} is not a SHA-256 hash (64 hex digits)"));
    }
    Ok((seq, hash))
}

/// RFC 3339, or a duration ago: unix ms.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(tether_wire::units::unix_ms(time));
    }
    // A date alone is its midnight, UTC.
    if let Ok(time) = humantime::parse_rfc3339_weak(&format!("{text}T00:00:00")) {
        return Ok(tether_wire::units::unix_ms(time));
    }
    match tether_wire::units::parse_duration(text) {
        Ok(ago) => Ok(tether_wire::units::unix_ms(SystemTime::now() - ago)),
        Err(_) => Err(format!(
            "{text:?} is neither a time (2026-11-29T10:00:00Z) nor a duration ago (24h)"
        )),
    }
}

fn record_json(record: &AuditView) -> serde_json::Value {
    let e = &record.entry;
    json!({
        "seq": record.seq,
        "time": rfc3339(e.time_ms),
        "user": e.user,
        "role": e.role.map(|r| r.as_str()),
        "action": e.action,
        "request": e.request,
        "resource_kind": e.resource_kind,
        "resource_id": e.resource_id,
        "details": e.details.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "source_addr": e.source_addr,
        "client_addr": e.client_addr,
        "user_agent": e.user_agent,
        "result": e.result.as_str(),
        "error": e.error,
        "hash": record.hash,
    })
}

pub async fn run(client: &AdminClient, args: AuditArgs) -> anyhow::Result<u8> {
    if let Some(AuditCommand::Verify { expect, json }) = args.command {
        let answers = client.request(&AdminRequest::AuditVerify).await?;
        let mut report = crate::single(answers, |r| match r {
            AdminResponse::AuditVerified(report) => Some(report),
            _ => None,
        })?;
        for (seq, hash) in expect {
            if report.broken.is_some() {
                break;
            }
            let query = AuditQuery {
                seq: Some(seq),
                limit: 1,
                ..Default::default()
            };
            let found = client
                .request(&AdminRequest::Audit(query))
                .await?
                .into_iter()
                .find_map(|r| match r {
                    AdminResponse::AuditRecords(mut chunk) => chunk.pop(),
                    _ => None,
                });
            let reason = match found {
                Some(record) if record.hash == hash => continue,
                Some(record) => format!(
                    "record {seq} has hash {}, not the {hash} you noted: the log was rewritten",
                    record.hash
                ),
                None if report.first_seq.is_some_and(|first| seq < first) => {
                    eprintln!("record {seq} was pruned by retention; it can no longer be checked");
                    continue;
                }
                None => format!("record {seq}, whose hash you noted, is not in the log"),
            };
            report.broken = Some(tether_wire::users::AuditBreak { seq, reason });
        }
        if json {
            print_json(&json!({
                "ok": report.broken.is_none(),
                "records": report.records,
                "first_seq": report.first_seq,
                "last_seq": report.last_seq,
                "head_hash": report.head_hash,
                "pruned_before": report.pruned_before,
                "broken_at": report.broken.as_ref().map(|b| b.seq),
                "reason": report.broken.as_ref().map(|b| b.reason.clone()),
            }))?;
        }
        return Ok(match &report.broken {
            None => {
                let range = match (report.first_seq, report.last_seq) {
                    (Some(first), Some(last)) => format!(" ({first} to {last})"),
                    _ => String::new(),
                };
                let pruned = report
                    .pruned_before
                    .map(|seq| format!("; records before {seq} were pruned by retention"))
                    .unwrap_or_default();
                eprintln!(
                    "the audit chain is whole: {} records{range}{pruned}.\nhead: {}:{} \
                     (note it elsewhere; `tether audit verify --expect` checks it later)",
                    report.records,
                    report.last_seq.unwrap_or(0),
                    report.head_hash.as_deref().unwrap_or("-")
                );
                0
            }
            Some(broken) => {
                eprintln!(
                    "the audit chain is BROKEN at record {}: {} ({} records before it check out)",
                    broken.seq, broken.reason, report.records
                );
                1
            }
        });
    }
    if args.since.zip(args.until).is_some_and(|(s, u)| s >= u) {
        bail!("--since must be before --until");
    }
    let query = AuditQuery {
        user: args.user,
        action: args.action,
        resource: args.resource,
        since_ms: args.since,
        until_ms: args.until,
        failed: args.failed,
        limit: args.limit,
        seq: args.seq,
    };
    let limit = query.limit;
    let mut records = Vec::new();
    for response in client.request(&AdminRequest::Audit(query)).await? {
        if let AdminResponse::AuditRecords(chunk) = response {
            records.extend(chunk);
        }
    }
    if records.len() as u64 >= u64::from(limit) {
        eprintln!("(the newest {limit} records; --limit N shows more)");
    }
    if args.json {
        print_json(&records.iter().map(record_json).collect::<Vec<_>>())?;
        return Ok(0);
    }
    output::table(
        &[
            "SEQ", "TIME", "USER", "REQUEST", "RESOURCE", "RESULT", "FROM", "DETAILS",
        ],
        records
            .iter()
            .map(|r| {
                let e = &r.entry;
                let resource = match &e.resource_id {
                    Some(id) => format!("{}:{id}", e.resource_kind),
                    None => e.resource_kind.clone(),
                };
                let result = match &e.error {
                    Some(error) => format!("{} ({error})", e.result),
                    None => e.result.to_string(),
                };
                let details = e
                    .details
                    .iter()
                    .filter(|(k, v)| k != "cert" && !v.is_empty())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                vec![
                    r.seq.to_string(),
                    rfc3339(e.time_ms),
                    e.user.clone(),
                    e.request.clone(),
                    resource,
                    result,
                    e.client_addr
                        .clone()
                        .or_else(|| e.source_addr.clone())
                        .unwrap_or_else(|| "-".into()),
                    details,
                ]
            })
            .collect(),
    )?;
    Ok(0)
}
