#!/usr/bin/env bash
# Two builds side by side on one fan-out: `tether exec --all -- true` against N simulated nodes,
# alternating runs (before, after, before, after, ...) so that both builds meet the same moments
# of a noisy machine. Wall time from starting the CLI until it exits after the last result, and
# core's CPU seconds for the run (`/proc/PID/stat`), as in exec-fanout.sh. Loopback only; every
# step bounded in count and time.
#
#   benches/scripts/audit-overhead.sh BEFORE_BIN_DIR AFTER_BIN_DIR
#
# Each directory holds tether-core, tether and tether-loadgen of one build, e.g.
#   git worktree add --detach /tmp/tether-before 825ef24
#   (cd /tmp/tether-before && CARGO_TARGET_DIR=/tmp/target-before \
#       cargo build --release --bin tether-core --bin tether --bin tether-loadgen)
#   ... the same for the after build, then
#   benches/scripts/audit-overhead.sh /tmp/target-before/release /tmp/target-after/release
#
# Each side gets its own core (own data directory and port), its own generator fleet of N nodes
# and its own CLI: a build's loadgen, CLI and admin identity are only used against that build's
# core (the wire and identity formats may change between commits). Both sides are up for the
# whole measurement; the side not being measured is idle (heartbeats every 30 s), and its CPU
# during the other side's runs is printed, so its share of the noise can be seen.
#
# Environment: N=1000 nodes per side, RUNS=10 measured runs per side, WARMUP=1 unmeasured run per
# side first (a node's first command also opens its output streams), PAUSE=1 s between runs,
# RAMP=500 new connections per second, EXEC_TIMEOUT=120 s for one run, CMD="exec --all -- true"
# (the CLI's arguments for each run; e.g. CMD=ping times one request with no fan-out), FIRST=before
# (FIRST=after runs after, before, after, before, ...: to see whether going second matters).
# After the runs, the after side's last audit records (`tether audit --limit 5 --json`) and the
# chain check (`tether audit verify --json`) go to stderr when its CLI has the `audit` command.
# Raises the open-files limit and, as root, the UDP buffer limits (core asks for 8 MiB).
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
before_dir=$(cd "$1" && pwd)
after_dir=$(cd "$2" && pwd)
cd "$(dirname "$0")/../.."
n=${N:-1000}
runs=${RUNS:-10}
warmup=${WARMUP:-1}
pause=${PAUSE:-1}
ramp=${RAMP:-500}
exec_timeout=${EXEC_TIMEOUT:-120}
read -r -a cmd <<< "${CMD:-exec --all -- true}"
for dir in "$before_dir" "$after_dir"; do
    for bin in tether-core tether tether-loadgen; do
        [ -x "$dir/$bin" ] || { echo "$dir/$bin: missing or not executable" >&2; exit 2; }
    done
done

. benches/scripts/lib.sh
raise_limits
echo "net.core.rmem_max = $(sysctl -n net.core.rmem_max 2> /dev/null || echo unknown)" >&2

work=$(mktemp -d /tmp/audit-overhead.XXXXXX)
cleanup() { kill $(jobs -p) 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Medians of an even count are the mean of the two middle values.
# median [PRINTF_FORMAT]
median() { sort -n | awk -v f="${1:-%g}" '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf f "\n", m}'; }
# min / median / max: stats [PRINTF_FORMAT]
stats() {
    local v f=${1:-%g}
    v=$(sort -n)
    printf "$f / $f / $f" "$(head -1 <<< "$v")" "$(median "$f" <<< "$v")" "$(tail -1 <<< "$v")"
}
# Time budget for the generators (their --duration, so $! is the generator itself): ramp, the
# runs, and a margin; then they stop by themselves.
online_wait=$((n / ramp * 4 + 240))
loadgen_life=$((2 * online_wait + (warmup + runs) * 2 * (pause + exec_timeout) + 120))

sides=(before after)
declare -A dir port data core loadgen online
dir[before]=$before_dir
dir[after]=$after_dir

# One side at a time: its core, then its N nodes, until all are online.
for side in "${sides[@]}"; do
    port[$side]=$((20000 + RANDOM % 20000))
    while [ "$side" = after ] && [ "${port[after]}" = "${port[before]}" ]; do
        port[after]=$((20000 + RANDOM % 20000))
    done
    data[$side]="$work/core-$side"
    start_core "${dir[$side]}/tether-core" "${data[$side]}" "${port[$side]}" "$work/core-$side.log"
    core[$side]=$core
    token=$(join_token "${dir[$side]}/tether-core" "${data[$side]}" "${port[$side]}")
    [ -n "$token" ] || { echo "$side: core did not start; see its log:" >&2; tail -5 "$work/core-$side.log" >&2; exit 1; }
    TETHER_TOKEN="$token" "${dir[$side]}/tether-loadgen" \
        --core "127.0.0.1:${port[$side]}" --nodes "$n" --ramp "$ramp" --heartbeat-interval 30s \
        --state-dir "$work/loadgen-$side" --duration "${loadgen_life}s" \
        > /dev/null 2> "$work/loadgen-$side.log" &
    loadgen[$side]=$!
    online[$side]=""
    for _ in $(seq "$online_wait"); do
        online[$side]=$(grep -o "all $n nodes online after [0-9.]*s" "$work/loadgen-$side.log" | awk '{print $6}' || true)
        [ -n "${online[$side]}" ] && break
        sleep 1
    done
    [ -n "${online[$side]}" ] || { echo "$side: not all $n nodes came online; see the loadgen log:" >&2; tail -3 "$work/loadgen-$side.log" >&2; exit 1; }
    echo "$side: $n nodes online after ${online[$side]} (core pid ${core[$side]}, port ${port[$side]})" >&2
done

other() { [ "$1" = before ] && echo after || echo before; }

# One `tether $CMD` on SIDE; with RECORD, appends wall ms, core CPU s and the idle
# side's CPU s (core and generator) to that side's files.
run_once() {
    local side=$1 record=$2 idle c0 c1 i0 i1 t0 t1
    idle=$(other "$side")
    c0=$(cpu_ticks "${core[$side]}")
    i0=$(( $(cpu_ticks "${core[$idle]}") + $(cpu_ticks "${loadgen[$idle]}") ))
    t0=$(date +%s%3N)
    TETHER_IDENTITY="${data[$side]}/admin.identity" timeout "$exec_timeout" "${dir[$side]}/tether" \
        --core "127.0.0.1:${port[$side]}" "${cmd[@]}" > /dev/null 2> "$work/exec-$side.err" \
        || { echo "$side: exec failed: $(tail -3 "$work/exec-$side.err")" >&2; exit 1; }
    t1=$(date +%s%3N)
    c1=$(cpu_ticks "${core[$side]}")
    i1=$(( $(cpu_ticks "${core[$idle]}") + $(cpu_ticks "${loadgen[$idle]}") ))
    if [ "$record" = 1 ]; then
        echo $((t1 - t0)) >> "$work/wall-$side"
        awk -v d=$((c1 - c0)) -v t="$ticks" 'BEGIN {printf "%.2f\n", d / t}' >> "$work/cpu-$side"
        awk -v d=$((i1 - i0)) -v t="$ticks" 'BEGIN {printf "%.2f\n", d / t}' >> "$work/idle-$side"
        echo "$((c1 - c0))" >> "$work/cputicks-$side"
    fi
    sleep "$pause"
}

for side in "${sides[@]}"; do : > "$work/wall-$side"; : > "$work/cpu-$side"; : > "$work/idle-$side"; : > "$work/cputicks-$side"; done
order=(before after)
[ "${FIRST:-before}" = after ] && order=(after before)
for _ in $(seq "$warmup"); do
    for side in "${order[@]}"; do run_once "$side" 0; done
done
for round in $(seq "$runs"); do
    for side in "${order[@]}"; do run_once "$side" 1; done
    echo "round $round/$runs: before $(tail -1 "$work/wall-before") ms, after $(tail -1 "$work/wall-after") ms" >&2
done
echo "last summary line of each side's CLI: before: $(tail -1 "$work/exec-before.err"); after: $(tail -1 "$work/exec-after.err")" >&2

# Lost sessions during the whole measurement, per side.
for side in "${sides[@]}"; do
    echo "$side: generator disconnects so far: $(loadgen_disconnects "$work/loadgen-$side.log")" >&2
done

# The audit log on the after side, when its CLI has one.
if "${dir[after]}/tether" audit --help > /dev/null 2>&1; then
    export TETHER_IDENTITY="${data[after]}/admin.identity"
    echo "after: tether audit --limit 5 --json:" >&2
    "${dir[after]}/tether" --core "127.0.0.1:${port[after]}" audit --limit 5 --json >&2 || true
    echo "after: exec records: $("${dir[after]}/tether" --core "127.0.0.1:${port[after]}" audit --resource exec --limit 100000 --json 2> /dev/null | jq length || echo '?')" >&2
    echo "after: tether audit verify --json:" >&2
    "${dir[after]}/tether" --core "127.0.0.1:${port[after]}" audit verify --json >&2 || true
    unset TETHER_IDENTITY
fi

mean_cpu() { awk -v t="$ticks" '{s += $1} END {printf "%.3f", s / NR / t}' "$work/cputicks-$1"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.1f %%", (a - b) / b * 100}'; }
wb=$(median < "$work/wall-before"); wa=$(median < "$work/wall-after")
cb=$(mean_cpu before); ca=$(mean_cpu after)
# The median of the paired differences (run k after minus run k before), as a second view.
paired=$(paste "$work/wall-before" "$work/wall-after" | awk '{print ($2 - $1) / $1 * 100}' | median)

echo
echo "\`tether ${cmd[*]}\`, $n nodes per side, $runs runs per side alternating, ${order[0]} first (after $warmup unmeasured), $(date -u +'%Y-%m-%d %H:%M UTC')"
echo
echo "| build | wall ms (min / median / max) | core CPU s per run (min / median / max) | core CPU s per run (mean) | idle side's CPU s during a run (median) | all online after |"
echo "|---|---|---|---|---|---|"
for side in "${sides[@]}"; do
    echo "| $side | $(stats < "$work/wall-$side") | $(stats %.3f < "$work/cpu-$side") | $(mean_cpu "$side") | $(median %.3f < "$work/idle-$side") | ${online[$side]} |"
done
echo "| after vs before | median $(pct "$wa" "$wb") (paired runs: median $(awk -v p="$paired" 'BEGIN {printf "%+.1f %%", p}')) | | mean $(pct "$ca" "$cb") | | |"
