#!/usr/bin/env bash
# Heartbeat ingest: heartbeats per second core takes in with its CPU saturated, against a bare
# quinn server (same TLS, same transport settings) that only reads datagrams, side by side.
#
#   benches/scripts/heartbeat-ingest.sh            RUNS=3 pairs (core, then bare)
#
# How: the server (tether-bench-server --mode core|bare) is pinned to CPU 0, the load generator
# to CPU 1. NODES simulated nodes connect first (no heartbeats), then each sends a heartbeat
# every INTERVAL. A two-core machine cannot generate enough load to saturate a whole core of
# quinn, so HOGS busy loops share CPU 0 with the server: the server can use only part of it and
# is saturated. The figure is heartbeats per CPU-second of the server (what one dedicated core
# would take in), measured over WINDOW seconds; the ratio compares the two in the same run.
# Loopback only; every process is bounded in time and killed on exit.
#
# Environment: RUNS=3, NODES=4000, INTERVAL=40ms, HOGS=2, WINDOW=10, OUT=target/heartbeat-ingest.json
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
nodes=${NODES:-4000}
interval=${INTERVAL:-40ms}
hogs=${HOGS:-2}
window=${WINDOW:-10}
out=${OUT:-target/heartbeat-ingest.json}
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs" >&2; exit 1; }

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-benches --bin tether-bench-server --bin tether-loadgen
server_bin=target/release/tether-bench-server
loadgen_bin=target/release/tether-loadgen
work=$(mktemp -d /tmp/heartbeat-ingest.XXXXXX)
cleanup() { kill $(jobs -p) 2> /dev/null || true; pkill -P $$ 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

udp_drops() { awk '/^Udp:/ { if (++n == 2) print $6 }' /proc/net/snmp; }   # RcvbufErrors
last() { tail -1 "$1" | jq -r ".$2"; }

: > "$work/results.jsonl"
for run in $(seq "$runs"); do
    for mode in core bare; do
        data="$work/$mode-$run"
        rm -f "$work/token"
        taskset -c 0 timeout 300 "$server_bin" --mode "$mode" --data "$data" --token-file "$work/token" \
            > "$work/server.out" 2> "$work/server.log" &
        server=$!
        for _ in $(seq 100); do [ -s "$work/token" ] && break; sleep 0.1; done
        flag=""; [ "$mode" = bare ] && flag=--bare
        ramp_s=$((nodes / 1000 + 15))
        # Fresh identities each run (the RSA key is kept): core enrolls every node.
        rm -f "$work/loadgen/identities"
        TETHER_TOKEN="$(cat "$work/token")" taskset -c 1 timeout 300 "$loadgen_bin" $flag --nodes "$nodes" --ramp 1000 \
            --heartbeat-interval "$interval" --heartbeats-after "${ramp_s}s" --state-dir "$work/loadgen" \
            --duration $((ramp_s + window + 15))s > /dev/null 2> "$work/loadgen.log" &
        loadgen=$!
        for _ in $(seq $((ramp_s * 10))); do
            [ "$(last "$work/server.out" connections 2> /dev/null || echo 0)" = "$nodes" ] && break
            sleep 0.1
        done
        connected=$(last "$work/server.out" connections)
        [ "$connected" = "$nodes" ] || echo "$mode run $run: only $connected of $nodes connected" >&2
        # Wait for the heartbeats to start, start the hogs, let things settle, then measure.
        while [ "$(last "$work/server.out" heartbeats)" = 0 ]; do sleep 0.2; done
        for _ in $(seq "$hogs"); do taskset -c 0 timeout $((window + 20)) sh -c 'while :; do :; done' & done
        sleep 4
        a=$(tail -1 "$work/server.out"); drops_a=$(udp_drops); sent_a=$(grep -o '[0-9]* heartbeats' "$work/loadgen.log" | tail -1 | cut -d' ' -f1)
        sleep "$window"
        b=$(tail -1 "$work/server.out"); drops_b=$(udp_drops); sent_b=$(grep -o '[0-9]* heartbeats' "$work/loadgen.log" | tail -1 | cut -d' ' -f1)
        pkill -P $$ -f 'while :' 2> /dev/null || true
        kill -INT "$loadgen" 2> /dev/null || true; wait "$loadgen" 2> /dev/null || true
        kill -INT "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true
        jq -n -c --arg mode "$mode" --argjson run "$run" --argjson a "$a" --argjson b "$b" \
            --argjson drops $((drops_b - drops_a)) --argjson sent $((sent_b - sent_a)) --argjson nodes "$connected" '
            ($b.elapsed_s - $a.elapsed_s) as $secs | ($b.heartbeats - $a.heartbeats) as $got | ($b.cpu_s - $a.cpu_s) as $cpu |
            {mode: $mode, run: $run, nodes: $nodes, seconds: $secs, heartbeats: $got, per_second: ($got / $secs),
             cpu_share: ($cpu / $secs), per_cpu_second: ($got / $cpu), offered_per_second_approx: ($sent / $secs),
             udp_receive_drops: $drops, rss_kib: $b.rss_kib}' | tee -a "$work/results.jsonl" >&2
    done
done
jq -s --arg date "$(date -u +%FT%TZ)" --arg interval "$interval" --argjson hogs "$hogs" '
    def med: sort | .[length / 2 | floor];
    def stats: {min: min, median: med, max: max};
    (map(select(.mode == "core")) | sort_by(.run)) as $core | (map(select(.mode == "bare")) | sort_by(.run)) as $bare |
    {date: $date, interval: $interval, hogs: $hogs,
     core: ([$core[].per_cpu_second] | stats), bare: ([$bare[].per_cpu_second] | stats),
     core_cpu_share: ([$core[].cpu_share] | stats), bare_cpu_share: ([$bare[].cpu_share] | stats),
     ratio: ([range($core | length) | $core[.].per_cpu_second / $bare[.].per_cpu_second] | stats),
     runs: .}' "$work/results.jsonl" > "$out"
jq -r '"| server | heartbeats per CPU-second (min / median / max) | CPU share while measured (median) |", "|---|---|---|",
    "| core | \(.core.min | round) / \(.core.median | round) / \(.core.max | round) | \(.core_cpu_share.median * 100 | round) % |",
    "| bare quinn | \(.bare.min | round) / \(.bare.median | round) / \(.bare.max | round) | \(.bare_cpu_share.median * 100 | round) % |",
    "", "ratio core / bare, per run: \(.ratio.min * 100 | round / 100) / \(.ratio.median * 100 | round / 100) / \(.ratio.max * 100 | round / 100)"' "$out"
echo "JSON: $out" >&2
