#!/usr/bin/env bash
# The web bridge in front of a large fleet: N simulated nodes (`tether-loadgen`, real enrollment,
# authentication and heartbeats every 30 s) on one core, the bridge, and then
#   - the API alone: GET /api/v1/nodes?limit=50 sorted by hostname, by last seen, with a search,
#     a deep page, and /api/v1/overview (`tether-web-bench api`), with core's CPU per request;
#   - the nodes page's first rows in headless Chromium (`tether-web-bench first-rows`), with the
#     generator running and again with it stopped;
#   - the nodes page and the dashboard left open HOLD seconds (`tether-web-bench watch`): the
#     bridge's RSS, each page's JS heap, core's CPU against a baseline with no page open.
#
#   benches/scripts/web-fleet.sh [N]      default 100000
#
# Environment: HOLD=600 (0 skips the watch), EVERY=30, BASELINE=60, API_RUNS=10, ROW_RUNS=5,
# RAMP_BUDGET=N/150+120 seconds for every node to connect,
# RAMP=500, STATE=DIR to keep (and reuse) core's data and the generator's identities (see
# fleet-hold.sh), OUT=target/web-fleet-N.json. Binaries are built in ${CARGO_TARGET_DIR:-target}.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-100000}
hold=${HOLD:-600}
every=${EVERY:-30}
baseline=${BASELINE:-60}
api_runs=${API_RUNS:-10}
row_runs=${ROW_RUNS:-5}
ramp=${RAMP:-500}
target_dir=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target_dir/web-fleet-$n.json}

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-core -p tether-client -p tether-web-bridge -p tether-benches \
    --bin tether-core --bin tether --bin tether-bridge --bin tether-loadgen --bin tether-web-bench
bin=$(realpath "$target_dir/release")
work=$(mktemp -d /tmp/web-fleet.XXXXXX)
state=${STATE:-$work}
core=""; loadgen=""; bridge=""
cleanup() {
    set +e
    kill -INT $bridge $loadgen 2> /dev/null
    kill -TERM $core 2> /dev/null
    wait 2> /dev/null
    for log in "$work"/*.log; do cp "$log" "${out%.json}.$(basename "$log")" 2> /dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$((20000 + RANDOM % 20000))
data=$state/core-$n
. benches/scripts/web-lib.sh
start_core "$bin/tether-core" "$data" "$port" "$work/core.log"
token=$(join_token "$bin/tether-core" "$data" "$port")
ramp_budget=${RAMP_BUDGET:-$((n / 150 + 120))}
total=$((ramp_budget + hold + baseline + 1800))
started=$(date +%s)
TETHER_TOKEN="$token" timeout "$total" "$bin/tether-loadgen" --core "127.0.0.1:$port" \
    --nodes "$n" --ramp "$ramp" --heartbeat-interval 30s --state-dir "$state/loadgen-$n" \
    --duration "$((total - 30))s" > /dev/null 2> "$work/loadgen.log" &
loadgen=$!
connected=0
while [ $(($(date +%s) - started)) -lt "$ramp_budget" ]; do
    connected=$(core_status "$bin/tether" "$data" "$port" | jq -r '.nodes_connected // 0')
    [ "$connected" = "$n" ] && break
    sleep 5
done
[ "$connected" = "$n" ] || { echo "only $connected of $n connected after $ramp_budget s" >&2; exit 1; }
all_after=$(($(date +%s) - started))
echo "all $n connected after $all_after s" >&2
# The last arrivals' first heartbeats.
sleep 35
web_users
start_bridge
echo "core $core, bridge $bridge at $url" >&2
bench=("$bin/tether-web-bench")

c0=$(proc_cpu_s "$core"); t0=$(date +%s%N)
"${bench[@]}" api --url "$url" --runs "$api_runs" > "$work/api.json"
api_core_cpu=$(awk -v a="$(proc_cpu_s "$core")" -v b="$c0" 'BEGIN {print a - b}')
api_wall=$(awk -v a="$(date +%s%N)" -v b="$t0" 'BEGIN {print (a - b) / 1e9}')
"${bench[@]}" first-rows --url "$url" --runs "$row_runs" > "$work/rows.json"
# The same with the generator stopped (SIGSTOP; its connections stay open for core's idle
# timeout): on this machine the 100,000 simulated nodes share two CPUs with core, the bridge and
# Chromium, which real nodes would not. Core still holds every session.
kill -STOP "$loadgen"
"${bench[@]}" first-rows --url "$url" --runs "$row_runs" > "$work/rows-quiet.json" || true
kill -CONT "$loadgen"
if [ "$hold" -gt 0 ]; then
    "${bench[@]}" watch --url "$url" --duration "$hold" --every "$every" --baseline "$baseline" \
        --bridge-pid "$bridge" --core-pid "$core" > "$work/watch.json"
else
    echo '{}' > "$work/watch.json"
fi
lost=$(loadgen_disconnects "$work/loadgen.log")
jq -n --slurpfile api "$work/api.json" --slurpfile rows "$work/rows.json" \
    --slurpfile quiet "$work/rows-quiet.json" --slurpfile watch "$work/watch.json" \
    --arg date "$(date -u +%FT%TZ)" --argjson n "$n" --argjson all_after "$all_after" \
    --arg api_core_cpu "$api_core_cpu" --arg api_wall "$api_wall" --arg lost "${lost:-0}" \
    --arg cpu "$(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" '
    {date: $date, cpu: $cpu, nodes: $n, all_connected_after_s: $all_after, sessions_lost: ($lost | tonumber),
     api: ($api[0] + {core_cpu_s: ($api_core_cpu | tonumber), wall_s: ($api_wall | tonumber),
                      requests: $api[0].requests}),
     first_rows: $rows[0], first_rows_generator_stopped: $quiet[0], watch: $watch[0]}' | tee "$out"
