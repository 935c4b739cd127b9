#!/usr/bin/env bash
# Where a keystroke's echo spends its time, process by process: runs `tty-latency` on a terminal
# client under `perf sched record` and follows every timed key along the chain of wake-ups, from
# the key's write to the echo's arrival: the terminal's kworker wakes the client, the client
# wakes core (or sshd), and so on. For each step, the median time from a process being woken to
# its waking the next one: its wake-up latency plus its work.
#
#   benches/scripts/tty-hops.sh [-k KEYS] [-g MIN-MAX] -- CLIENT ARGS...   as root, with perf
#
# -g sets tty-latency's random gap between keys in milliseconds (default 5-20: caches go cold
# between keys, as when a person types; 0-1 keeps them warm).
#
#   benches/scripts/tty-hops.sh -- target/release/tether tty NODE --no-record \
#       --command 'stty raw -echo; echo LAT-READY; exec cat'
#
# A process woken twice on the way (a node: the key in, the echo out) shows as NAME#1, NAME#2.
# Wake-ups between threads of one process count as its own work. perf adds a few µs per
# scheduler event: compare steps within one run, or runs made the same way.
set -euo pipefail
cd "$(dirname "$0")/../.."
keys=200
gap=5-20
while [ $# -gt 0 ]; do
    case $1 in
        -k) keys=$2; shift 2 ;;
        -g) gap=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: $0 [-k KEYS] [-g MIN-MAX] -- CLIENT ARGS..." >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-k KEYS] [-g MIN-MAX] -- CLIENT ARGS..." >&2; exit 2; }
[[ $gap =~ ^[0-9]+-[0-9]+$ ]] || { echo "-g wants MIN-MAX in milliseconds, such as 0-1" >&2; exit 2; }
command -v perf > /dev/null || { echo "perf is needed (Debian: apt-get install linux-perf)" >&2; exit 2; }
cargo build --release -q -p tether-benches --bin tty-latency
work=$(mktemp -d /tmp/tty-hops.XXXXXX)
trap 'rm -rf "$work"' EXIT
perf sched record -q -o "$work/sched.data" -- target/release/tty-latency --keys "$keys" \
    --gap-min-ms "${gap%-*}" --gap-max-ms "${gap#*-}" -- "$@" \
    2> "$work/latency.err" | tail -1 > "$work/latency.json" || { cat "$work/latency.err" >&2; exit 1; }
perf sched timehist -i "$work/sched.data" -w 2> /dev/null > "$work/timehist.txt"
python3 - "$work/timehist.txt" << 'EOF'
import collections, re, statistics, sys

# "TIME [CPU] WAKER[TID/PID] ... awakened: WAKEE[TID/PID]"
line = re.compile(r'^\s*([\d.]+)\s+\[\d+\]\s+(.*?)\[(\d+)(?:/(\d+))?\]\s+awakened: (.*?)\[(\d+)(?:/(\d+))?\]')
events = []
for text in open(sys.argv[1]):
    m = line.match(text)
    if m:
        events.append((float(m.group(1)), m.group(2).strip(), int(m.group(4) or m.group(3)),
                       m.group(5).strip(), int(m.group(7) or m.group(6))))

def name(comm):
    return 'kworker' if comm.startswith('kworker') else comm

steps = collections.defaultdict(list)
order = []
totals = []
i = 0
while i < len(events):
    at, waker, _, wakee, wakee_pid = events[i]
    # A timed key: tty-latency writes to the PTY, which wakes a kworker.
    if waker.startswith('tty-latency') and wakee.startswith('kworker'):
        current, last, path, j, done = wakee_pid, at, [], i + 1, False
        while j < len(events) and events[j][0] - at < 0.005:
            t, waker_j, waker_pid, wakee_j, wakee_pid_j = events[j]
            if waker_pid == current and wakee_pid_j != current:
                path.append((name(waker_j), t - last))
                last, current = t, wakee_pid_j
                if wakee_j.startswith('tty-latency'):
                    done = True
                    break
            j += 1
        if done:
            totals.append(last - at)
            seen = collections.Counter()
            for step, took in path:
                seen[step] += 1
                key = f'{step}#{seen[step]}'
                if key not in steps:
                    order.append(key)
                steps[key].append(took * 1e6)
        i = j
    i += 1
if not totals:
    sys.exit('no key could be followed from its write to its echo')
print(f'{len(totals)} keys followed; median key to echo {statistics.median(totals) * 1e6:.0f} µs (under perf)')
for key in order:
    took = steps[key]
    if len(took) >= len(totals) // 2:
        print(f'  {key:24s} {statistics.median(took):6.0f} µs   ({len(took)} keys)')
EOF
