#!/usr/bin/env bash
# Enrollment rate: enrollments per second core accepts with --auto-approve.
#
#   benches/scripts/enrollment-rate.sh            RUNS=3 runs of COUNT=10000 enrollments
#
# Each run starts a fresh core (new data directory) pinned to CPU 0; tether-enroll-rate, pinned
# to CPU 1, signs COUNT requests for new node ids first (the node's RSA work is not core's),
# then enrolls them CONCURRENCY at a time, each on a QUIC connection of its own. Reported:
# enrollments per second of wall time (core has one CPU), and per CPU-second core used (what
# one dedicated core takes in, whether or not the client kept it busy), with core's own count
# of approvals from `tether status`. Loopback only; bounded in time.
#
# Environment: RUNS=3, COUNT=10000, CONCURRENCY=256, OUT=target/enrollment-rate.json, CORE_BIN
# (default: this tree's release build) to measure another build.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
count=${COUNT:-10000}
concurrency=${CONCURRENCY:-256}
out=${OUT:-target/enrollment-rate.json}
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs" >&2; exit 1; }

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-core -p tether-client -p tether-benches --bin tether-core --bin tether --bin tether-enroll-rate
core_bin=${CORE_BIN:-target/release/tether-core}
cli_bin=target/release/tether
client_bin=target/release/tether-enroll-rate
work=$(mktemp -d /tmp/enrollment-rate.XXXXXX)
cleanup() { kill -9 $(jobs -p) 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

: > "$work/results.jsonl"
for run in $(seq "$runs"); do
    data="$work/core-$run"
    port=$((20000 + RANDOM % 20000))
    start_core "$core_bin" "$data" "$port" "$work/core.log" taskset -c 0
    token=$(join_token "$core_bin" "$data" "$port")
    cpu_before=$(proc_cpu_s "$core")
    TETHER_TOKEN="$token" taskset -c 1 timeout 600 "$client_bin" --core "127.0.0.1:$port" --count "$count" \
        --concurrency "$concurrency" --state-dir "$work/client" > "$work/client.json" 2> "$work/client.log"
    cpu_after=$(proc_cpu_s "$core")
    approved_by_core=$(core_status "$cli_bin" "$data" "$port" | jq .enrollments_approved)
    kill -TERM "$core"; wait "$core" 2> /dev/null || true
    jq -c --argjson run "$run" --argjson cpu "$(awk -v a="$cpu_after" -v b="$cpu_before" 'BEGIN {printf "%.3f", a - b}')" \
        --argjson by_core "$approved_by_core" '
        {run: $run, count, approved, approved_by_core: $by_core, failures, elapsed_s,
         per_s: .approved_per_s, core_cpu_s: $cpu, per_core_cpu_s: (.approved / $cpu)}' \
        "$work/client.json" | tee -a "$work/results.jsonl" >&2
done
jq -s --arg date "$(date -u +%FT%TZ)" --argjson count "$count" --argjson concurrency "$concurrency" '
    def med: sort | .[length / 2 | floor];
    def stats: {min: min, median: med, max: max};
    {date: $date, count: $count, concurrency: $concurrency,
     per_s: ([.[].per_s] | stats), per_core_cpu_s: ([.[].per_core_cpu_s] | stats), runs: .}' \
    "$work/results.jsonl" > "$out"
jq -r '"| enrollments / s, wall (min / median / max) | per core CPU-second (min / median / max) |", "|---|---|",
    "| \(.per_s | "\(.min | round) / \(.median | round) / \(.max | round)") | \(.per_core_cpu_s | "\(.min | round) / \(.median | round) / \(.max | round)") |"' "$out"
echo "JSON: $out" >&2
