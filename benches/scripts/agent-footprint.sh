#!/usr/bin/env bash
# The real agent, idle: resident memory and CPU of `tether-node` (built with the `agent` profile,
# as shipped) connected to a local core, heartbeat every 30 s, over DURATION seconds.
#
#   benches/scripts/agent-footprint.sh            defaults: AGENTS=3 DURATION=600
#
# AGENTS agents run side by side (one state directory each: separate nodes), so one window gives
# AGENTS samples; the figures are min / median / max over them. RSS is sampled every 10 s (the
# peak and the last sample are reported); CPU is the agent's own scheduled time from
# /proc/PID/schedstat (nanoseconds) between the first heartbeat and the end. At the end, where the
# memory goes: resident kilobytes per mapping from /proc/PID/smaps. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
agents=${AGENTS:-3}
duration=${DURATION:-600}
out=${OUT:-target/agent-footprint.json}

cargo build --release -q -p tether-core --bin tether-core
cargo build --profile agent -q -p tether-node --bin tether-node
core_bin=target/release/tether-core
agent_bin=target/agent/tether-node
work=$(mktemp -d /tmp/agent-footprint.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$((20000 + RANDOM % 20000))
"$core_bin" serve --data "$work/core" --listen "127.0.0.1:$port" --auto-approve \
    --heartbeat-interval 30s 2> "$work/core.log" &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/core/core.addr" ] && break; sleep 0.1; done
token=$("$core_bin" key show --data "$work/core" 2> /dev/null)

agent_pids=()
for i in $(seq "$agents"); do
    "$agent_bin" run --state-dir "$work/agent-$i" --core "127.0.0.1:$port" --token "$token" \
        --hostname "footprint-$i" 2> "$work/agent-$i.log" &
    pids+=($!)
    agent_pids+=($!)
done
for i in $(seq "$agents"); do
    for _ in $(seq 200); do grep -q "online" "$work/agent-$i.log" && break; sleep 0.1; done
    grep -q "online" "$work/agent-$i.log" || { echo "agent $i did not come online" >&2; tail "$work/agent-$i.log" >&2; exit 1; }
done
size=$(stat -c %s "$agent_bin")
echo "agent binary: $size bytes; $agents agents online; sampling for ${duration}s" >&2

cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A cpu0 peak
for pid in "${agent_pids[@]}"; do cpu0[$pid]=$(cpu_ns "$pid"); peak[$pid]=0; done
t0=$(date +%s%N)
end=$(( $(date +%s) + duration ))
while [ "$(date +%s)" -lt "$end" ]; do
    for pid in "${agent_pids[@]}"; do
        kill -0 "$pid" 2> /dev/null || { echo "agent $pid died" >&2; exit 1; }
        r=$(rss_kib "$pid"); [ "$r" -gt "${peak[$pid]}" ] && peak[$pid]=$r
    done
    sleep 10
done
t1=$(date +%s%N)

: > "$work/samples.jsonl"
for pid in "${agent_pids[@]}"; do
    cpu=$(( $(cpu_ns "$pid") - cpu0[$pid] ))
    # Resident KiB per mapping, largest first: the executable, shared libraries, heap, the rest
    # (anonymous: thread stacks, allocator arenas).
    maps=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anonymous]" : $6)} /^Rss:/ {rss[name] += $2}
        END {for (n in rss) if (rss[n] > 0) printf "%s\t%d\n", n, rss[n]}' "/proc/$pid/smaps" \
        | sort -t$'\t' -k2 -rn | jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {mapping: .[0], rss_kib: (.[1] | tonumber)})')
    status=$(awk '/^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM|Threads):/ {printf "%s %s\n", $1, $2}' "/proc/$pid/status" \
        | jq -R -s 'split("\n") | map(select(length > 0) | split(" ")) | map({key: (.[0] | rtrimstr(":")), value: (.[1] | tonumber)}) | from_entries')
    jq -n -c --argjson cpu_ns "$cpu" --argjson wall_ns "$((t1 - t0))" --argjson peak "${peak[$pid]}" \
        --argjson maps "$maps" --argjson status "$status" \
        '{cpu_s: ($cpu_ns / 1e9), wall_s: ($wall_ns / 1e9), cpu_percent_of_one_core: ($cpu_ns / $wall_ns * 100),
          rss_kib: $status.VmRSS, rss_peak_sampled_kib: $peak, rss_anon_kib: $status.RssAnon, rss_file_kib: $status.RssFile,
          threads: $status.Threads, mappings: $maps[0:8]}' >> "$work/samples.jsonl"
done
jq -s --arg date "$(date -u +%FT%TZ)" --arg kernel "$(uname -r)" --argjson size "$size" \
    --arg cpu "$(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" '
    def med: sort | .[length / 2 | floor];
    def spread(f): [.[] | f] | {min: min, median: med, max: max};
    {date: $date, kernel: $kernel, cpu: $cpu, binary_bytes: $size, agents: length,
     rss_kib: spread(.rss_kib), rss_peak_sampled_kib: spread(.rss_peak_sampled_kib),
     rss_anon_kib: spread(.rss_anon_kib), rss_file_kib: spread(.rss_file_kib),
     cpu_percent_of_one_core: spread(.cpu_percent_of_one_core), cpu_s: spread(.cpu_s),
     samples: .}' "$work/samples.jsonl" > "$out"
jq -r '"agent binary \(.binary_bytes) bytes; \(.agents) agents, \(.samples[0].wall_s | round) s each",
    "RSS KiB (min / median / max): \(.rss_kib.min) / \(.rss_kib.median) / \(.rss_kib.max); sampled peak \(.rss_peak_sampled_kib.max)",
    "  of which file-backed \(.rss_file_kib.median), anonymous \(.rss_anon_kib.median) (medians)",
    "CPU % of one core: \(.cpu_percent_of_one_core.min) / \(.cpu_percent_of_one_core.median) / \(.cpu_percent_of_one_core.max)",
    "Largest mappings (first agent):", (.samples[0].mappings[] | "  \(.rss_kib) KiB  \(.mapping)")' "$out"
echo "JSON: $out" >&2
