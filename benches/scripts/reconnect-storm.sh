#!/usr/bin/env bash
# Reconnect storm: N simulated nodes online, core killed with SIGKILL and started again at once on
# the same data and port. Measures the time until every node is online again, the connection
# attempts that failed meanwhile, and core's peak resident memory (VmHWM) during the storm.
#
#   benches/scripts/reconnect-storm.sh [N ...]     default: 10000; RUNS=3 kills per size
#
# Nodes are tether-loadgen's: real authentication, reconnecting with full-jitter backoff (0.5 s
# doubling to 30 s) like the agent. One core data directory and one load generator per size; the
# kills follow each other once everyone is back. Loopback only; bounded in time.
#
# "Back" is core's view (`tether status`: nodes authenticated on the new process), not the
# generator's: a node that has not yet noticed the old connection is gone is not back.
# The generator's log of each size is kept next to OUT, to see how the sessions ended.
#
# Environment: RUNS=3, CORE_BIN (default: this tree's release build), OUT=target/reconnect-storm.json,
# STATE=DIR to keep core's data and the generator's identities there (and reuse them: a second
# run at 100,000 nodes then skips 100,000 enrollments; fleet-hold.sh takes the same STATE).
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000)
runs=${RUNS:-3}
out=${OUT:-target/reconnect-storm.json}

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-core -p tether-client -p tether-benches --bin tether-core --bin tether --bin tether-loadgen
core_bin=${CORE_BIN:-target/release/tether-core}
cli_bin=target/release/tether
loadgen_bin=target/release/tether-loadgen
work=$(mktemp -d /tmp/reconnect-storm.XXXXXX)
state=${STATE:-$work}
# `timeout` does not pass SIGKILL on: its children go first.
cleanup() {
    for job in $(jobs -p); do pkill -9 -P "$job" 2> /dev/null || true; done
    kill -9 $(jobs -p) 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
progress() { loadgen_progress "$work/loadgen.log"; }
online() { progress | grep -o '[0-9]*/[0-9]* online' | cut -d/ -f1; }
# (No failure yet is an empty map: the greps find nothing, which is not an error here.)
failures() { progress | { grep -o 'failures {.*}' || true; } | { grep -o ': [0-9]*' || true; } | tr -d ': ' | awk '{s += $1} END {print s + 0}'; }
disconnects() { loadgen_disconnects "$work/loadgen.log"; }
# Nodes authenticated on the running core process (0 while it starts).
core_nodes() { core_status "$cli_bin" "$data" "$port" | jq -r '.nodes_connected // 0'; }

: > "$work/results.jsonl"
for n in "${sizes[@]}"; do
    port=$((20000 + RANDOM % 20000))
    data="$state/core-$n"
    start_core "$core_bin" "$data" "$port" "$work/core.log"
    token=$(join_token "$core_bin" "$data" "$port")
    # Handshakes bound the way back: about 650 a second with both ends on this machine.
    back_within=$((n / 250 + 120))
    budget=$((n / 200 + runs * (back_within + 60) + 120))
    TETHER_TOKEN="$token" timeout "$budget" "$loadgen_bin" --core "127.0.0.1:$port" --nodes "$n" --ramp 1000 \
        --heartbeat-interval 30s --state-dir "$state/loadgen-$n" --duration "${budget}s" \
        > /dev/null 2> "$work/loadgen.log" &
    loadgen=$!
    for _ in $(seq $((n / 200 + 120))); do [ "$(online)" = "$n" ] && break; sleep 1; done
    [ "$(online)" = "$n" ] || { echo "$n nodes: not all online before the first kill" >&2; progress >&2; exit 1; }
    for run in $(seq "$runs"); do
        sleep 5
        failed_before=$(failures); disconnects_before=$(disconnects)
        kill -9 "$core"; wait "$core" 2> /dev/null || true
        killed_at=$(now)
        start_core "$core_bin" "$data" "$port" "$work/core.log"
        # Every node has to notice (a stateless reset answers its next packet), then come back.
        back=""
        while [ "$(echo "$(now) - $killed_at < $back_within" | bc)" = 1 ]; do
            if [ "$(core_nodes)" = "$n" ]; then back=$(now); break; fi
            sleep 0.2
        done
        peak=$(proc_kib "$core" VmHWM)
        [ -n "$back" ] || { echo "$n nodes, run $run: not all back within $back_within s" >&2; progress >&2; }
        # The generator catches up on its side before the next kill.
        for _ in $(seq $((back_within * 5))); do [ "$(online)" = "$n" ] && break; sleep 0.2; done
        jq -n -c --argjson n "$n" --argjson run "$run" --arg killed "$killed_at" --arg back "$back" \
            --argjson failed $(($(failures) - failed_before)) --argjson disconnects $(($(disconnects) - disconnects_before)) \
            --argjson peak "$peak" --arg detail "$(progress)" '
            {nodes: $n, run: $run, all_back_after_s: (if $back == "" then null else (($back | tonumber) - ($killed | tonumber)) end),
             failed_attempts: $failed, disconnects: $disconnects, core_peak_rss_mib: ($peak / 1024), loadgen: $detail}' \
            | tee -a "$work/results.jsonl" >&2
    done
    kill -INT "$loadgen" 2> /dev/null || true; wait "$loadgen" 2> /dev/null || true
    cp "$work/loadgen.log" "${out%.json}-$n.loadgen.log"
    kill -TERM "$core" 2> /dev/null || true; wait "$core" 2> /dev/null || true
done
jq -s --arg date "$(date -u +%FT%TZ)" '
    def med: sort | .[length / 2 | floor];
    def stats: {min: min, median: med, max: max};
    {date: $date,
     sizes: (group_by(.nodes) | map({nodes: .[0].nodes, runs: length,
        all_back_after_s: ([.[].all_back_after_s // 1e9] | stats),
        failed_attempts: ([.[].failed_attempts] | stats),
        core_peak_rss_mib: ([.[].core_peak_rss_mib] | stats)})),
     runs: .}' "$work/results.jsonl" > "$out"
jq -r '"| nodes | all back after s (min / median / max) | failed attempts (min / median / max) | core peak RSS MiB (median) |", "|---|---|---|---|",
    (.sizes[] | "| \(.nodes) | \(.all_back_after_s | "\(.min * 10 | round / 10) / \(.median * 10 | round / 10) / \(.max * 10 | round / 10)") | \(.failed_attempts | "\(.min) / \(.median) / \(.max)") | \(.core_peak_rss_mib.median | round) |")' "$out"
echo "JSON: $out" >&2
