#!/usr/bin/env bash
# One scheduled task across N simulated nodes: from the tick (the run's due time) to the last
# node's result, core CPU per run (above its idle cost with N nodes heartbeating), and core's
# peak memory. Everything on loopback; bounded in count and time.
#
#   benches/scripts/task-fanout.sh [N ...]        default: 1000 10000; RUNS=5 per size
#
# The task is `tether task add bench --cron '*/20 * * * * *' --all -- true`: a run every 20
# seconds, each an execution on every node. Prints one markdown row per size: min / median /
# max over the runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
runs=${RUNS:-5}
every=20

. benches/scripts/lib.sh
raise_limits

# BIN_DIR: binaries built already (a side-by-side comparison, or a rerun); else a release build.
if [ -n "${BIN_DIR:-}" ]; then
    bin=$BIN_DIR
else
    cargo build --release -q --bin tether-core --bin tether --bin tether-loadgen
    bin=target/release
fi
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "| nodes | tick → last result ms (min / median / max) | core CPU s per run, above idle (mean) | same core: \`exec --all -- true\` ms (median), CPU s per run above idle | core RSS before / peak MiB | all nodes ok |"
echo "|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    port=$((20000 + RANDOM % 20000))
    data="$work/core-$n"
    start_core "$bin/tether-core" "$data" "$port" "$work/core-$n.log"
    token=$(join_token "$bin/tether-core" "$data" "$port")
    TETHER_TOKEN="$token" "$bin/tether-loadgen" --core "127.0.0.1:$port" --nodes "$n" --ramp 500 \
        --state-dir "$work/loadgen-$n" --duration 60m > "$work/loadgen-$n.json" 2> "$work/loadgen-$n.log" &
    loadgen=$!
    online=""
    for _ in $(seq 900); do
        online=$(grep -o "all $n nodes online after [0-9.]*s" "$work/loadgen-$n.log" || true)
        [ -n "$online" ] && break
        sleep 1
    done
    [ -n "$online" ] || { echo "| $n | not all nodes came online; see $work/loadgen-$n.log | | | |"; exit 1; }
    tether() { "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$port" "$@"; }

    # Core's cost with N nodes heartbeating and no task: the baseline taken off each run.
    sleep 5
    c0=$(proc_cpu_s "$core"); t0=$(date +%s%3N)
    sleep 30
    c1=$(proc_cpu_s "$core"); t1=$(date +%s%3N)
    idle_per_s=$(echo "($c1 - $c0) * 1000 / ($t1 - $t0)" | bc -l)
    rss_before=$(proc_kib "$core" VmHWM)

    tether task add bench --cron "*/$every * * * * *" --all --timeout 60s -- true > /dev/null
    c0=$(proc_cpu_s "$core"); t0=$(date +%s%3N)
    # Polled with `task show` (the last run only): `task history` reads every node's result of
    # every run listed, which at 10,000 nodes would be most of what is measured.
    for _ in $(seq $(( (runs + 2) * every * 2 ))); do
        done_runs=$(tether task show bench --json 2> /dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)
last = t.get("last") or {}
print(t["task"]["last_run"] - (1 if last.get("state") == "running" else 0))' || echo 0)
        [ "$done_runs" -ge "$runs" ] && break
        sleep 1
    done
    tether task disable bench > /dev/null
    c1=$(proc_cpu_s "$core"); t1=$(date +%s%3N)
    peak=$(proc_kib "$core" VmHWM)
    # Side by side on the same core: the same command across the same nodes by hand, counted
    # the same way (CPU above the idle rate over each run's own wall time).
    sleep 5
    : > "$work/exec-$n"
    for _ in $(seq "$runs"); do
        e0=$(proc_cpu_s "$core"); w0=$(date +%s%3N)
        tether exec --all --timeout 60s -- true > /dev/null 2>&1 || true
        e1=$(proc_cpu_s "$core"); w1=$(date +%s%3N)
        echo "$((w1 - w0)) $(echo "$e1 - $e0 - $idle_per_s * ($w1 - $w0) / 1000" | bc -l)" >> "$work/exec-$n"
        sleep 2
    done
    tether task history bench --limit 50 --json > "$work/history-$n.json"
    # KEEP=DIR keeps each size's run records (per node: status, times) for a closer look.
    [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$work/history-$n.json" "$KEEP/"; \
        for r in $(python3 -c 'import json,sys; [print(e) for r in json.load(open(sys.argv[1])) for e in r["executions"]]' "$work/history-$n.json"); do \
            tether exec show "$r" --json > "$KEEP/exec-$r.json" 2> /dev/null || true; done; }
    python3 - "$work/history-$n.json" "$runs" "$c0" "$c1" "$t0" "$t1" "$idle_per_s" "$n" \
        "$((rss_before / 1024))" "$((peak / 1024))" "$work/exec-$n" <<'PY'
import json, sys
from datetime import datetime
path, runs, c0, c1, t0, t1, idle, n, before, peak, execs = sys.argv[1:]
ex = [tuple(map(float, line.split())) for line in open(execs) if line.strip()]
ex_wall = sorted(w for w, _ in ex)[(len(ex) - 1) // 2]
ex_cpu = sum(c for _, c in ex) / len(ex)
history = [r for r in json.load(open(path)) if r["state"] != "running"][-int(runs):]
ms = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
walls = sorted(ms(r["finished_at"]) - ms(r["due_at"]) for r in history)
done = len(history)
cpu = (float(c1) - float(c0) - float(idle) * (int(t1) - int(t0)) / 1000) / max(done, 1)
ok = all(r["counts"]["ok"] == int(n) for r in history)
mid = walls[(len(walls) - 1) // 2]
print(f"| {int(n):,} | {walls[0]:.0f} / {mid:.0f} / {walls[-1]:.0f} | {cpu:.2f} ({done} runs) | {ex_wall:.0f}, {ex_cpu:.2f} | {before} / {peak} | {'yes' if ok else 'NO'} |")
PY
    kill -INT "$loadgen"; wait "$loadgen" 2>/dev/null || true
    kill -TERM "$core"; wait "$core" 2>/dev/null || true
done
