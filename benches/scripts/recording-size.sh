#!/usr/bin/env bash
# Bytes on disk per minute of terminal recording: a flood (`yes`) and a typical interactive
# session, each recorded three ways in one run on one machine:
#   plain   — asciicast v2 as Tether wrote it before compression (measured as the decompressed
#             size of the recording: the same events, byte for byte)
#   zstd    — as Tether writes it now, with no size limit
#   capped  — as Tether writes it now, with the default tty_recording_max (64 MiB of output)
#
#   benches/scripts/recording-size.sh [-y YES_SECONDS] [-i INTERACTIVE_SECONDS]
#
# Needs zstd(1) to measure the decompressed size.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/scripts/lib.sh

yes_secs=15
interactive_secs=60
while getopts "y:i:" opt; do
    case $opt in
        y) yes_secs=$OPTARG ;;
        i) interactive_secs=$OPTARG ;;
        *) exit 2 ;;
    esac
done
command -v zstd > /dev/null || { echo "needs zstd(1): apt-get install zstd" >&2; exit 1; }

cargo build -q --release --bin tether-core --bin tether --bin tether-node
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$work"' EXIT

# One core per recording limit, each with a local node.
run_core() { # NAME PORT LIMIT
    local data=$work/$1
    "$bin/tether-core" serve --data "$data" --listen "127.0.0.1:$2" --auto-approve \
        --tty-recording-max "$3" --tty-recordings-max-total 1000GiB 2>> "$work/$1.log" &
    local token
    token=$(join_token "$bin/tether-core" "$data" "$2")
    "$bin/tether-node" run --token "$token" --state-dir "$work/$1-node" --hostname "bench-$1" \
        --shell /bin/sh 2>> "$work/$1-node.log" &
    for _ in $(seq 100); do
        "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$2" node show \
            "bench-$1" > /dev/null 2>&1 && return
        sleep 0.2
    done
    echo "the node of $1 did not come online" >&2
    exit 1
}

# Runs COMMAND in a recorded terminal on core NAME; prints the recording's size on disk and its
# decompressed size, in bytes.
record() { # NAME PORT COMMAND
    local data=$work/$1
    "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$2" tty "bench-$1" \
        --record --command "$3" < /dev/null > /dev/null
    sleep 1
    local file
    file=$(ls -t "$data"/recordings/*.cast.zst | head -1)
    echo "$(stat -c %s "$file") $(zstd -dc "$file" | wc -c)"
}

port=$((20000 + RANDOM % 20000))
run_core unlimited $port 1000GiB
run_core capped $((port + 1)) 64MiB

interactive="for i in \$(seq 1 $((interactive_secs / 5))); do ls -la /usr/bin | head -40; \
ps aux | head -30; cat /etc/services | head -60; sleep 5; done"
flood="timeout $yes_secs yes"

per_minute() { echo $(( $1 * 60 / $2 )); }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

read -r flood_zstd flood_plain <<< "$(record unlimited $port "$flood")"
read -r flood_capped _ <<< "$(record capped $((port + 1)) "$flood")"
read -r inter_zstd inter_plain <<< "$(record unlimited $port "$interactive")"
read -r inter_capped _ <<< "$(record capped $((port + 1)) "$interactive")"

echo "recording bytes on disk per minute ($(date -u +%FT%TZ), $(nproc) cores)"
printf '%-26s %16s %16s %16s\n' "" "plain (before)" "zstd" "zstd + 64 MiB cap"
# The capped flood is not scaled: the cap bounds the whole session, however long.
printf '%-26s %16s %16s %16s\n' "yes, ${yes_secs} s → per minute" \
    "$(mib "$(per_minute "$flood_plain" "$yes_secs")")" \
    "$(mib "$(per_minute "$flood_zstd" "$yes_secs")")" \
    "$(kib "$flood_capped") total"
printf '%-26s %16s %16s %16s\n' "interactive, ${interactive_secs} s → per minute" \
    "$(kib "$(per_minute "$inter_plain" "$interactive_secs")")" \
    "$(kib "$(per_minute "$inter_zstd" "$interactive_secs")")" \
    "$(kib "$(per_minute "$inter_capped" "$interactive_secs")")"
