#!/usr/bin/env bash
# Nodes held: N simulated nodes connected to one core, heartbeats every 30 s, held for HOLD
# seconds. Every POLL seconds core is asked (`tether status`) how many nodes it has connected and
# online; the hold passes if neither ever drops below N and no simulated node lost its session.
# Also reports core's resident memory with N nodes against none (KiB per node) and its CPU.
#
#   benches/scripts/fleet-hold.sh [N]      default 100000; HOLD=600
#
# Environment: HOLD=600, POLL=10, RAMP=1000, OUT=target/fleet-hold.json, STATE=DIR to keep (and
# reuse) core's data and the generator's identities (see reconnect-storm.sh). Loopback only;
# bounded in time; raises the open-files limit and, as root, UDP buffer limits.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-100000}
hold=${HOLD:-600}
poll=${POLL:-10}
ramp=${RAMP:-1000}
out=${OUT:-target/fleet-hold.json}

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-core -p tether-client -p tether-benches --bin tether-core --bin tether --bin tether-loadgen
core_bin=target/release/tether-core
cli_bin=target/release/tether
loadgen_bin=target/release/tether-loadgen
work=$(mktemp -d /tmp/fleet-hold.XXXXXX)
state=${STATE:-$work}
# The logs are kept next to OUT whatever happens, to see why a run ended.
cleanup() {
    kill $(jobs -p) 2> /dev/null || true; wait 2> /dev/null || true
    cp "$work/loadgen.log" "${out%.json}-$n.loadgen.log" 2> /dev/null || true
    cp "$work/core.log" "${out%.json}-$n.core.log" 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress() { loadgen_progress "$work/loadgen.log"; }
disconnects() { loadgen_disconnects "$work/loadgen.log"; }
# One failed call is a missing sample, not the end of the run.
status() { core_status "$cli_bin" "$data" "$port"; }
# A count from a status sample, or DEFAULT when the sample is missing.
field() { jq -r ".$1 // \"$2\"" <<< "$3"; }

port=$((20000 + RANDOM % 20000))
data="$state/core-$n"
start_core "$core_bin" "$data" "$port" "$work/core.log"
token=$(join_token "$core_bin" "$data" "$port")
sleep 2
rss_idle=$(proc_kib "$core" VmRSS)
# Enrolling from scratch is bounded by the generator's RSA work (a few hundred a second here).
ramp_budget=$((n / 150 + 120))
started=$(date +%s)
TETHER_TOKEN="$token" timeout $((ramp_budget + hold + 120)) "$loadgen_bin" --core "127.0.0.1:$port" \
    --nodes "$n" --ramp "$ramp" --heartbeat-interval 30s --state-dir "$state/loadgen-$n" \
    --duration $((ramp_budget + hold + 60))s > /dev/null 2> "$work/loadgen.log" &
loadgen=$!
connected=0
while [ $(($(date +%s) - started)) -lt "$ramp_budget" ]; do
    connected=$(field nodes_connected 0 "$(status)")
    [ "$connected" = "$n" ] && break
    sleep 5
done
[ "$connected" = "$n" ] || { echo "only $connected of $n connected after $ramp_budget s" >&2; progress >&2; exit 1; }
all_after=$(($(date +%s) - started))
echo "all $n connected after $all_after s; holding $hold s" >&2
# Let the last arrivals' first heartbeats land before the hold starts.
sleep 35
disconnects_before=$(disconnects)
cpu_before=$(proc_cpu_s "$core")
missed=0; min_connected=$n; min_online=$n; heartbeats_before=$(field heartbeats_received 0 "$(status)")
hold_start=$(date +%s)
# Core's RSS at each poll (seconds into the hold, KiB): whether it still grows while nothing changes.
rss_samples="$work/rss.tsv"
: > "$rss_samples"
while [ $(($(date +%s) - hold_start)) -lt "$hold" ]; do
    sleep "$poll"
    echo "$(($(date +%s) - hold_start)) $(proc_kib "$core" VmRSS)" >> "$rss_samples"
    s=$(status)
    [ "$s" = '{}' ] && missed=$((missed + 1))
    c=$(field nodes_connected "$min_connected" "$s"); o=$(field nodes_online "$min_online" "$s")
    [ "$c" -lt "$min_connected" ] && min_connected=$c
    [ "$o" -lt "$min_online" ] && min_online=$o
done
held=$(($(date +%s) - hold_start))
cpu=$(awk -v a="$(proc_cpu_s "$core")" -v b="$cpu_before" 'BEGIN {printf "%.3f", a - b}')
heartbeats=$(($(field heartbeats_received "$heartbeats_before" "$(status)") - heartbeats_before))
rss_loaded=$(proc_kib "$core" VmRSS)
lost=$(($(disconnects) - disconnects_before))
kill -INT "$loadgen" 2> /dev/null || true; wait "$loadgen" 2> /dev/null || true
kill -TERM "$core"; wait "$core" 2> /dev/null || true
jq -n --arg date "$(date -u +%FT%TZ)" --argjson n "$n" --argjson held "$held" --argjson all_after "$all_after" \
    --argjson min_connected "$min_connected" --argjson min_online "$min_online" --argjson lost "$lost" --argjson missed "$missed" \
    --argjson heartbeats "$heartbeats" --argjson cpu "$cpu" --argjson idle "$rss_idle" --argjson loaded "$rss_loaded" \
    --argjson rss "$(jq -R -s -c 'split("\n") | map(select(length > 0) | split(" ") | {at_s: (.[0] | tonumber), rss_kib: (.[1] | tonumber)})' "$rss_samples")" '
    {date: $date, nodes: $n, held_s: $held, all_connected_after_s: $all_after,
     min_nodes_connected: $min_connected, min_nodes_online: $min_online, sessions_lost: $lost, status_samples_missed: $missed,
     heartbeats_during_hold: $heartbeats, core_cpu_percent: (100 * $cpu / $held),
     rss_idle_mib: ($idle / 1024), rss_loaded_mib: ($loaded / 1024), kib_per_node: (($loaded - $idle) / $n),
     rss_during_hold_mib: ($rss | map(.rss_kib / 1024) | {first: first, min: min, max: max, last: last}),
     rss_samples: $rss,
     held: ($min_connected == $n and $min_online == $n and $lost == 0)}' | tee "$out"
