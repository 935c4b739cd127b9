#!/usr/bin/env bash
# A deploy of an agent release to N simulated nodes (tether-loadgen speaks the update protocol:
# it fetches the file on a stream of its own, reports as an agent does, and comes back as the
# new version). The release is the real agent binary (a release build, signed). Measured: from
# the deploy's start to `done`, core CPU above its idle cost, core peak memory, and the bytes
# of release file the nodes received. Everything on loopback; bounded in count and time.
#
#   benches/scripts/deploy-fanout.sh [N ...]     default: 1000 10000
#
# STRATEGY (default all), MAX_DOWNLOADS (core's, default 200), BIN_DIR (binaries built
# already; else a release build). Prints one markdown row per size.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
strategy=${STRATEGY:-all}
max_downloads=${MAX_DOWNLOADS:-200}

. benches/scripts/lib.sh
raise_limits

if [ -n "${BIN_DIR:-}" ]; then
    bin=$BIN_DIR
else
    cargo build --release -q --bin tether-core --bin tether --bin tether-loadgen --bin tether-node
    bin=target/release
fi
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The release: the agent itself, signed with a key made for the run.
public=$("$bin/tether" release keygen --out "$work/release.key" 2> /dev/null)
"$bin/tether" release sign "$bin/tether-node" --key "$work/release.key" --version bench-2 \
    --out "$work/release.toml" 2> /dev/null
size=$(stat -c %s "$bin/tether-node")

echo "| nodes | release MiB | strategy, downloads at once | deploy → done s | core CPU s above idle | core RSS before / peak MiB | received GiB (expected) | nodes updated | status polls unanswered (1 s apart) |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    port=$((20000 + RANDOM % 20000))
    data="$work/core-$n"
    "$bin/tether-core" serve --data "$data" --listen "127.0.0.1:$port" --auto-approve \
        --max-pending-applications 1000000 --release-key "$public" \
        --max-downloads "$max_downloads" 2>> "$work/core-$n.log" &
    core=$!
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
    [ -n "$online" ] || { echo "| $n | not all nodes came online; see $work/loadgen-$n.log |"; exit 1; }
    tether() { "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$port" "$@"; }
    tether release upload "$bin/tether-node" --manifest "$work/release.toml" > /dev/null

    # Core's cost with N nodes heartbeating and nothing deploying: the baseline.
    sleep 5
    c0=$(proc_cpu_s "$core"); t0=$(date +%s%3N)
    sleep 20
    c1=$(proc_cpu_s "$core"); t1=$(date +%s%3N)
    idle_per_s=$(echo "($c1 - $c0) * 1000 / ($t1 - $t0)" | bc -l)
    rss_before=$(proc_kib "$core" VmHWM)

    c0=$(proc_cpu_s "$core"); t0=$(date +%s%3N)
    id=$(tether release deploy bench-2 --all --strategy "$strategy" 2> /dev/null)
    state=""
    # Polled with the list (counts only): a deploy's full status lists every node.
    for _ in $(seq 3600); do
        # A busy core may not answer a poll in time: count it, and poll again.
        state=$(tether release status --json 2>> "$work/polls-$n.log" | python3 -c '
import json, sys
d = [d for d in json.load(sys.stdin) if d["id"] == int(sys.argv[1])][0]
print(d["state"], d["counts"]["success"])' "$id" 2> /dev/null || echo "unanswered 0")
        case "$state" in running*|paused*|unanswered*) sleep 1 ;; *) break ;; esac
    done
    t1=$(date +%s%3N); c1=$(proc_cpu_s "$core")
    peak=$(proc_kib "$core" VmHWM)
    # A deploy that did not end done: why, and what its nodes said (to stderr; the work
    # directory and its logs go with the script).
    case "$state" in
        done*) ;;
        *) tether release status "$id" --json 2> /dev/null | python3 -c '
import collections, json, sys
d = json.load(sys.stdin)
print("deploy", d["deploy"]["state"], "-", d["deploy"]["reason"], file=sys.stderr)
errors = collections.Counter((n["state"], n["error"]) for n in d["nodes"])
for (state, error), count in errors.most_common(10):
    print(f"  {count} {state}: {error}", file=sys.stderr)' || true ;;
    esac
    unanswered=$(grep -c "timed out" "$work/polls-$n.log" 2> /dev/null || true)
    kill -INT "$loadgen"; wait "$loadgen" 2>/dev/null || true
    received=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["update_bytes"])' "$work/loadgen-$n.json")
    python3 - "$n" "$size" "$strategy" "$max_downloads" "$t0" "$t1" "$c0" "$c1" "$idle_per_s" \
        "$((rss_before / 1024))" "$((peak / 1024))" "$received" "$state" "${unanswered:-0}" <<'PY'
import sys
n, size, strategy, downloads, t0, t1, c0, c1, idle, before, peak, received, state, unanswered = sys.argv[1:]
n, size = int(n), int(size)
wall = (int(t1) - int(t0)) / 1000
cpu = float(c1) - float(c0) - float(idle) * wall
gib = 1 << 30
status, success = state.split()
print(f"| {n:,} | {size / (1 << 20):.1f} | {strategy}, {downloads} | {wall:.1f} | {cpu:.1f} | {before} / {peak} | {int(received) / gib:.1f} ({n * size / gib:.1f}) | {success} ({status}) | {unanswered} |")
PY
    kill -TERM "$core"; wait "$core" 2>/dev/null || true
done
