#!/usr/bin/env bash
# Core's resident memory per connected idle node: RSS with N simulated nodes online minus RSS with
# none, divided by N. Each run starts a new core process, the nodes connect (real authentication,
# heartbeats every 30 s), and RSS is read after they have all been online for SETTLE seconds.
# The runs of one size share core's data and the generator's identities: the first run enrolls
# the nodes, the others only reconnect them. Loopback only; every step bounded in time.
#
#   benches/scripts/core-memory.sh [N ...]      default: 1000 10000; RUNS=3 per size
#
# Environment: RUNS, SETTLE=30, RAMP=1000 new connections per second, CORE_BIN (default: this
# tree's release build) to measure another build, OUT=target/core-memory.json.
# Raises the open-files limit and, as root, the UDP buffer limits (as core asks for 8 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
runs=${RUNS:-3}
settle=${SETTLE:-30}
ramp=${RAMP:-1000}
out=${OUT:-target/core-memory.json}

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-core -p tether-benches --bin tether-core --bin tether-loadgen
core_bin=${CORE_BIN:-target/release/tether-core}
loadgen_bin=target/release/tether-loadgen
work=$(mktemp -d /tmp/core-memory.XXXXXX)
cleanup() { kill $(jobs -p) 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

: > "$work/results.jsonl"
for n in "${sizes[@]}"; do
    for run in $(seq "$runs"); do
        port=$((20000 + RANDOM % 20000))
        data="$work/core-$n"
        start_core "$core_bin" "$data" "$port" "$work/core.log"
        token=$(join_token "$core_bin" "$data" "$port")
        sleep 1
        idle=$(proc_kib "$core" VmRSS)
        # Identities are cached per size, with the core data they were enrolled in.
        TETHER_TOKEN="$token" timeout $((n / ramp * 4 + 300)) "$loadgen_bin" --core "127.0.0.1:$port" \
            --nodes "$n" --ramp "$ramp" --heartbeat-interval 30s --state-dir "$work/loadgen-$n" \
            --duration $((n / ramp * 4 + settle + 240))s > /dev/null 2> "$work/loadgen.log" &
        loadgen=$!
        online=""
        for _ in $(seq $((n / ramp * 4 + 240))); do
            online=$(grep -o "all $n nodes online after [0-9.]*s" "$work/loadgen.log" | awk '{print $6}' || true)
            [ -n "$online" ] && break
            sleep 1
        done
        [ -n "$online" ] || { echo "$n nodes: not all online; see the loadgen log:" >&2; tail -3 "$work/loadgen.log" >&2; exit 1; }
        sleep "$settle"
        loaded=$(proc_kib "$core" VmRSS)
        count=$(tail -1 "$work/loadgen.log" | grep -o "[0-9]*/$n online" | cut -d/ -f1)
        kill -INT "$loadgen" 2> /dev/null || true
        wait "$loadgen" 2> /dev/null || true
        kill -TERM "$core"; wait "$core" 2> /dev/null || true
        jq -n -c --argjson n "$n" --argjson run "$run" --argjson idle "$idle" --argjson loaded "$loaded" \
            --arg online "$online" --argjson still "${count:-0}" \
            '{nodes: $n, run: $run, rss_idle_kib: $idle, rss_loaded_kib: $loaded, online_after_s: ($online | rtrimstr("s") | tonumber),
              online_at_measurement: $still, kib_per_node: (($loaded - $idle) / $n)}' | tee -a "$work/results.jsonl" >&2
    done
done
jq -s --arg date "$(date -u +%FT%TZ)" --arg core_bin "$core_bin" '
    def med: sort | .[length / 2 | floor];
    {date: $date, core_bin: $core_bin,
     sizes: (group_by(.nodes) | map({nodes: .[0].nodes, runs: length,
        kib_per_node: ([.[].kib_per_node] | {min: min, median: med, max: max}),
        rss_loaded_mib: ([.[].rss_loaded_kib / 1024] | {min: min, median: med, max: max}),
        online_after_s: ([.[].online_after_s] | {min: min, median: med, max: max})})),
     runs: .}' "$work/results.jsonl" > "$out"
jq -r '"| nodes | KiB per node (min / median / max) | core RSS MiB (median) | all online after s (median) |", "|---|---|---|---|",
    (.sizes[] | "| \(.nodes) | \(.kib_per_node.min | . * 10 | round / 10) / \(.kib_per_node.median | . * 10 | round / 10) / \(.kib_per_node.max | . * 10 | round / 10) | \(.rss_loaded_mib.median | round) | \(.online_after_s.median) |")' "$out"
echo "JSON: $out" >&2
