#!/usr/bin/env bash
# `tether exec --all -- true` against N simulated nodes: wall time until the last result, core
# CPU seconds per run, core peak memory. Everything on loopback; bounded in count and time.
#
#   benches/scripts/exec-fanout.sh [N ...]        default: 100 1000 10000; RUNS=5 per size
#
# Prints one markdown row per size: min / median / max over the runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 10000)
runs=${RUNS:-5}

. benches/scripts/lib.sh
raise_limits
echo "net.core.rmem_max = $(sysctl -n net.core.rmem_max 2>/dev/null || echo unknown)" >&2

cargo build --release -q --bin tether-core --bin tether --bin tether-loadgen
bin=target/release
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}'; }

echo "| nodes | wall ms (min / median / max) | core CPU s per run (min / median / max) | core RSS before / peak MiB | nodes online after |"
echo "|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    port=$((20000 + RANDOM % 20000))
    data="$work/core-$n"
    start_core "$bin/tether-core" "$data" "$port" "$work/core-$n.log"
    token=$(join_token "$bin/tether-core" "$data" "$port")
    TETHER_TOKEN="$token" "$bin/tether-loadgen" --core "127.0.0.1:$port" --nodes "$n" --ramp 500 \
        --state-dir "$work/loadgen-$n" --duration 30m > "$work/loadgen-$n.json" 2> "$work/loadgen-$n.log" &
    loadgen=$!
    online_after=""
    for _ in $(seq 600); do
        online_after=$(grep -o "all $n nodes online after [0-9.]*s" "$work/loadgen-$n.log" | awk '{print $6}' || true)
        [ -n "$online_after" ] && break
        sleep 1
    done
    [ -n "$online_after" ] || { echo "| $n | not all nodes came online; see $work/loadgen-$n.log | | | |"; exit 1; }
    export TETHER_IDENTITY="$data/admin.identity"
    rss_before=$(peak_kib "$core")
    : > "$work/wall" ; : > "$work/cpu"
    for _ in $(seq "$runs"); do
        c0=$(cpu_ticks "$core"); t0=$(date +%s%3N)
        "$bin/tether" --core "127.0.0.1:$port" exec --all -- true > /dev/null 2> "$work/exec.err" \
            || { echo "exec failed: $(cat "$work/exec.err")" >&2; exit 1; }
        t1=$(date +%s%3N); c1=$(cpu_ticks "$core")
        echo $((t1 - t0)) >> "$work/wall"
        echo "scale=2; ($c1 - $c0) / $ticks" | bc >> "$work/cpu"
        sleep 1
    done
    peak=$(peak_kib "$core")
    echo "| $n | $(stats < "$work/wall") | $(stats < "$work/cpu") | $((rss_before / 1024)) / $((peak / 1024)) | ${online_after} |"
    kill -INT "$loadgen"; wait "$loadgen" 2>/dev/null || true
    kill -TERM "$core"; wait "$core" 2>/dev/null || true
done
