#!/usr/bin/env bash
# The web bridge with one real node: terminal output rate into xterm.js (headless Chromium) beside
# `tether tty` on the same node, keystroke-to-echo latency in the page beside the CLI's, and the
# bridge's memory per open live socket and per open terminal.
#
#   benches/scripts/web-bench.sh
#
# Environment: RUNS=3 flood runs per client (interleaved), BYTES=50000000 read from /dev/SOURCE
# (SOURCE=urandom) and base64'd, LAT_RUNS=2 latency runs of KEYS=1000 per client (interleaved),
# COUNTS=0,10,50 sockets, OUT=target/web-bench.json. Binaries are built in ${CARGO_TARGET_DIR:-target}.
# A fresh core (terminals recorded, as by default), a `tether-node` and `tether-bridge`, each a
# process of its own on loopback, in a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
bytes=${BYTES:-50000000}
source_dev=${SOURCE:-urandom}
lat_runs=${LAT_RUNS:-2}
keys=${KEYS:-1000}
counts=${COUNTS:-0,10,50}
target_dir=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target_dir/web-bench.json}

. benches/scripts/lib.sh
raise_limits
cargo build --release -q -p tether-core -p tether-client -p tether-node -p tether-web-bridge -p tether-benches \
    --bin tether-core --bin tether --bin tether-node --bin tether-bridge --bin tether-web-bench \
    --bin tty-rate --bin tty-latency
bin=$(realpath "$target_dir/release")
work=$(mktemp -d /tmp/web-bench.XXXXXX)
core=""; node=""; bridge=""
cleanup() {
    set +e
    for pid in $bridge $node $core; do kill -TERM "$pid" 2> /dev/null; done
    wait 2> /dev/null
    cp "$work"/*.log "$(dirname "$out")/" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$((20000 + RANDOM % 20000))
data=$work/core
. benches/scripts/web-lib.sh
# Room for 50 terminals of one user at once.
"$bin/tether-core" serve --data "$data" --listen "127.0.0.1:$port" --auto-approve \
    --tty-max-per-node 128 --tty-max-per-user 128 --tty-authorize-per-minute 1000 2> "$work/core.log" &
core=$!
token=$(join_token "$bin/tether-core" "$data" "$port")
"$bin/tether-node" run --state-dir "$work/node" --core "127.0.0.1:$port" --token "$token" \
    --hostname web-bench 2> "$work/node.log" &
node=$!
web_users
node_id=""
for _ in $(seq 100); do
    node_id=$(tether_admin node list --json 2> /dev/null \
        | jq -r '.[] | select(.hostname == "web-bench" and .status == "online") | .id' || true)
    [ -n "$node_id" ] && break
    sleep 0.2
done
[ -n "$node_id" ] || { echo "the node did not come online" >&2; exit 1; }
start_bridge --max-sockets-per-session 64
echo "core $core, node $node ($node_id), bridge $bridge at $url" >&2
bench=("$bin/tether-web-bench")

# ---- Output rate: the page's terminal and the CLI, interleaved ---------------------------------
load="head -c $bytes /dev/$source_dev | base64"
: > "$work/flood.jsonl"
for i in $(seq "$runs"); do
    "${bench[@]}" tty-flood --url "$url" --node "$node_id" --bytes "$bytes" --source "$source_dev" \
        --runs 1 --bridge-pid "$bridge" | jq -c '{label: "web", run: .runs[0]}' >> "$work/flood.jsonl"
    c0=$(proc_cpu_s "$core")
    timeout 600 "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$port" \
        tty web-bench --command "$load" < /dev/null | "$bin/tty-rate" --label cli \
        | jq -c --arg core "$(proc_cpu_s "$core")" --arg c0 "$c0" \
            '{label: "cli", run: ., core_cpu_s: (($core | tonumber) - ($c0 | tonumber))}' >> "$work/flood.jsonl"
    tail -2 "$work/flood.jsonl" >&2
done

# ---- Keystroke to echo -------------------------------------------------------------------------
: > "$work/latency.jsonl"
for i in $(seq "$lat_runs"); do
    "${bench[@]}" tty-latency --url "$url" --node "$node_id" --keys "$keys" \
        | jq -c '. + {label: "web"}' >> "$work/latency.jsonl"
    timeout 300 "$bin/tty-latency" --keys "$keys" --label cli -- \
        "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$port" \
        tty web-bench --command 'stty raw -echo; echo LAT-READY; exec cat' \
        | jq -c 'del(.samples_us)' >> "$work/latency.jsonl"
    tail -2 "$work/latency.jsonl" >&2
done

# ---- Bridge memory per socket (a fresh bridge for each kind) -----------------------------------
: > "$work/sockets.jsonl"
for kind in live tty; do
    stop_bridge
    start_bridge --max-sockets-per-session 64
    sleep 2
    "${bench[@]}" sockets --url "$url" --kind "$kind" --node "$node_id" --counts "$counts" \
        --bridge-pid "$bridge" | jq -c . >> "$work/sockets.jsonl"
    tail -1 "$work/sockets.jsonl" >&2
done

jq -n --slurpfile flood "$work/flood.jsonl" --slurpfile lat "$work/latency.jsonl" \
    --slurpfile sockets "$work/sockets.jsonl" --arg date "$(date -u +%FT%TZ)" \
    --arg cpu "$(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" \
    --arg load "$load" '
    def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def spread: {min: min, median: med, max: max};
    {date: $date, cpu: $cpu, load: $load,
     flood: {web_mb_per_s: ($flood | map(select(.label == "web") | .run.mb_per_s) | spread),
             cli_mb_per_s: ($flood | map(select(.label == "cli") | .run.mb_per_s) | spread),
             web_bridge_rss_max_kib: ($flood | map(select(.label == "web") | .run.bridge_rss_kib.max) | spread),
             runs: $flood},
     latency: {web_p50_us: ($lat | map(select(.label == "web") | .p50_us) | spread),
               web_p99_us: ($lat | map(select(.label == "web") | .p99_us) | spread),
               cli_p50_us: ($lat | map(select(.label == "cli") | .p50_us) | spread),
               cli_p99_us: ($lat | map(select(.label == "cli") | .p99_us) | spread),
               runs: $lat},
     sockets: $sockets}' | tee "$out"
