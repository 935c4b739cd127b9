#!/usr/bin/env bash
# Interactive terminals, Tether vs OpenSSH, side by side in one run on this machine: throughput of
# a large output through the terminal, and keystroke-to-echo latency.
#
#   benches/scripts/tty-vs-ssh.sh            as root, on Debian
#
# Environment: RUNS=3 throughput runs per client, SIZE=200M input to `base64` (its output, about
# 1.35 x SIZE, is what crosses the terminal), LAT_RUNS=3 latency runs of KEYS=1000 keystrokes per
# client, TIME_LIMIT=1200 seconds for the whole run, OUT=target/tty-vs-ssh.json for the results.
#
# Latency is also measured for two yardsticks (`tty-floor`): the leanest possible terminal over
# plaintext UDP with blocking calls, direct (client and agent: the shape of ssh) and through a
# relay (client, relay, agent: the shape of Tether). They show what the machine allows, and what
# a relay alone costs on it.
#
# OpenSSH: Debian's openssh-server (installed if missing, without starting the system's service),
# as a private sshd on a spare localhost port with its own config, host key and authorized key in
# a temporary directory; the system's sshd and its config are never touched. The client runs with
# its own config file (-F) that sets no cipher (OpenSSH's defaults), no compression, no
# multiplexing. Tether: a fresh core (`serve --auto-approve`) and node on another spare port, in
# the same temporary directory. Runs alternate between the two clients. Everything is removed at
# the end, however the script ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

runs=${RUNS:-3}
size=${SIZE:-200M}
keys=${KEYS:-1000}
lat_runs=${LAT_RUNS:-3}
limit=${TIME_LIMIT:-1200}
out=${OUT:-$root/target/tty-vs-ssh.json}

[ "$(id -u)" = 0 ] || { echo "run as root (installs openssh-server, runs sshd)" >&2; exit 2; }

if [ ! -x /usr/sbin/sshd ] || ! command -v jq > /dev/null; then
    # Keep the package scripts from starting the system's sshd: a policy-rc.d that says no, if
    # there is none already (removed right after).
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client jq > /dev/null
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

cargo build --release -q -p tether-core -p tether-client -p tether-node -p tether-benches \
    --bin tether-core --bin tether --bin tether-node --bin tty-latency --bin tty-rate --bin tty-floor
bin=$root/target/release

work=$(mktemp -d /tmp/tty-vs-ssh.XXXXXX)
chmod 755 "$work"
rmem_max=$(sysctl -n net.core.rmem_max)
wmem_max=$(sysctl -n net.core.wmem_max)
sshd=""; core=""; node=""; watchdog=""; floor_pids=""
cleanup() {
    set +e
    # The watchdog's `sleep` first: it holds our stdout, and whoever reads it would wait it out.
    [ -z "$watchdog" ] || pkill -P "$watchdog" 2> /dev/null
    for pid in $node $core $sshd $watchdog $floor_pids; do kill -TERM "$pid" 2> /dev/null; done
    for pid in $node $core $sshd; do
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2> /dev/null
    done
    wait 2> /dev/null
    sysctl -q -w net.core.rmem_max="$rmem_max" net.core.wmem_max="$wmem_max"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The whole run is bounded: each step has its own `timeout`, and this ends the script between
# steps if they add up to more than the limit.
( sleep "$limit"; echo "tty-vs-ssh: time limit of ${limit}s reached" >&2; kill -TERM $$ ) &
watchdog=$!

# Core asks for an 8 MiB UDP receive buffer; let the kernel grant it, as in exec-fanout.sh.
sysctl -q -w net.core.rmem_max=16777216 net.core.wmem_max=16777216

# A port nobody listens on (TCP and UDP, IPv4 and IPv6).
spare_port() {
    local port hex
    while :; do
        port=$((20000 + RANDOM % 20000))
        hex=$(printf ':%04X ' "$port")
        grep -q "$hex" /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2> /dev/null || break
    done
    echo "$port"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
child_ticks() { awk '{print $16 + $17}' "/proc/$1/stat"; }
# CPU busy ticks of the whole machine (user + nice + system + irq + softirq + steal).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
ticks=$(getconf CLK_TCK)
secs() { echo "scale=3; $1 / $ticks" | bc; }

# ---- OpenSSH -----------------------------------------------------------------------------------
ssh_port=$(spare_port)
mkdir -m 700 "$work/ssh"
ssh-keygen -q -t ed25519 -N '' -C tty-vs-ssh-host -f "$work/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -C tty-vs-ssh-client -f "$work/ssh/client_key"
cp "$work/ssh/client_key.pub" "$work/ssh/authorized_keys"
cat > "$work/ssh/sshd_config" << EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/ssh/host_key
PidFile $work/ssh/sshd.pid
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel ERROR
EOF
cat > "$work/ssh/ssh_config" << EOF
Host bench
    HostName 127.0.0.1
    Port $ssh_port
    User root
    IdentityFile $work/ssh/client_key
    IdentitiesOnly yes
    UserKnownHostsFile $work/ssh/known_hosts
    StrictHostKeyChecking accept-new
    BatchMode yes
    Compression no
    ControlMaster no
    ControlPath none
EOF
mkdir -p /run/sshd # sshd's privilege-separation directory (Debian's package expects it)
/usr/sbin/sshd -t -f "$work/ssh/sshd_config"
/usr/sbin/sshd -D -e -f "$work/ssh/sshd_config" 2> "$work/ssh/sshd.log" &
sshd=$!
ssh_cmd=(ssh -F "$work/ssh/ssh_config")
for _ in $(seq 50); do
    timeout 10 "${ssh_cmd[@]}" bench true < /dev/null 2> /dev/null && break
    sleep 0.2
done
timeout 10 "${ssh_cmd[@]}" bench true < /dev/null
cipher=$(timeout 10 "${ssh_cmd[@]}" -v bench true < /dev/null 2>&1 \
    | sed -n 's/.*kex: server->client cipher: \([^ ]*\) MAC: \([^ ]*\) compression: \([^ ]*\).*/\1, MAC \2, compression \3/p' | head -1)
kex=$(timeout 10 "${ssh_cmd[@]}" -v bench true < /dev/null 2>&1 | sed -n 's/.*kex: algorithm: \(.*\)/\1/p' | head -1)
ssh_version=$(ssh -V 2>&1)
echo "OpenSSH: $ssh_version on port $ssh_port; negotiated: $cipher; kex $kex" >&2

# ---- Tether ------------------------------------------------------------------------------------
quic_port=$(spare_port)
data=$work/core
"$bin/tether-core" serve --data "$data" --listen "127.0.0.1:$quic_port" --auto-approve \
    2> "$work/core.log" &
core=$!
for _ in $(seq 100); do [ -f "$data/core.addr" ] && break; sleep 0.1; done
token=$("$bin/tether-core" key show --data "$data" 2> /dev/null)
"$bin/tether-node" run --state-dir "$work/node" --core "127.0.0.1:$quic_port" --token "$token" \
    --hostname tty-bench 2> "$work/node.log" &
node=$!
export TETHER_IDENTITY=$data/admin.identity
tether_cmd=("$bin/tether" --core "127.0.0.1:$quic_port")
online=""
for _ in $(seq 100); do
    if "${tether_cmd[@]}" node list --json 2> /dev/null \
        | jq -e '.[] | select(.hostname == "tty-bench" and .status == "online")' > /dev/null 2>&1; then
        online=1
        break
    fi
    sleep 0.2
done
[ -n "$online" ] || { echo "the node did not come online; see $work/node.log" >&2; tail "$work/node.log" "$work/core.log" >&2; exit 1; }
# A first session end to end. (`true` with stdin at end of file: the CLI's end-of-input frame can
# race the exit and the CLI then reports a failed session; give the command a moment.)
timeout 20 "${tether_cmd[@]}" tty tty-bench --no-record --command 'sleep 0.3' < /dev/null
echo "Tether: core pid $core and node pid $node on UDP port $quic_port" >&2

# ---- Throughput --------------------------------------------------------------------------------
load="head -c $size /dev/zero | base64"
# One run: CLIENT LABEL. The client's stdout goes to a pipe into tty-rate; its CPU is measured by
# `time` in a shell of its own; core's and the node's (own, and their reaped children's: the
# shell, head and base64) and sshd's (with every session process it reaped: that includes the
# workload) from /proc around the run; and the whole machine's busy CPU.
throughput() {
    local label=$1 i=$2; shift 2
    local b0 b1 c0 c1 n0 n1 nc0 nc1 s0 s1 t0 t1
    b0=$(busy_ticks); c0=$(cpu_ticks "$core"); n0=$(cpu_ticks "$node"); nc0=$(child_ticks "$node")
    s0=$(( $(cpu_ticks "$sshd") + $(child_ticks "$sshd") )); t0=$(date +%s%N)
    local status=0
    TIMEFORMAT='%3U %3S' timeout 300 bash -c 'time "$@" < /dev/null' _ "$@" \
        2> "$work/client-$label-$i.err" | "$bin/tty-rate" --label "$label" > "$work/tp-$label-$i.json" \
        || status=$?
    if [ "$status" != 0 ]; then
        echo "$label run $i: the client exited with status $status: $(head -c 500 "$work/client-$label-$i.err")" >&2
    fi
    t1=$(date +%s%N); b1=$(busy_ticks); c1=$(cpu_ticks "$core"); n1=$(cpu_ticks "$node")
    nc1=$(child_ticks "$node"); s1=$(( $(cpu_ticks "$sshd") + $(child_ticks "$sshd") ))
    local client_cpu
    client_cpu=$(tail -1 "$work/client-$label-$i.err" | awk '{printf "%.3f", $1 + $2}')
    jq -c --arg run "$i" --arg wall "$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc)" \
        --arg busy "$(secs $((b1 - b0)))" --arg client "$client_cpu" \
        --arg core "$(secs $((c1 - c0)))" --arg node "$(secs $((n1 - n0)))" \
        --arg workload "$(secs $((nc1 - nc0)))" --arg sshd "$(secs $((s1 - s0)))" \
        --arg status "$status" \
        '. + {run: ($run | tonumber), client_status: ($status | tonumber), wall_s: ($wall | tonumber), machine_busy_cpu_s: ($busy | tonumber),
              client_cpu_s: ($client | tonumber)}
         + (if .label == "tether" then {core_cpu_s: ($core | tonumber), node_cpu_s: ($node | tonumber),
              node_children_cpu_s: ($workload | tonumber)}
            else {sshd_cpu_s_with_children: ($sshd | tonumber)} end)' \
        "$work/tp-$label-$i.json" >> "$work/throughput.jsonl"
    jq -r '"\(.label) run \(.run): \(.bytes) bytes in \(.transfer_s | . * 1000 | round / 1000) s = \(.mb_per_s | . * 10 | round / 10) MB/s; client CPU \(.client_cpu_s) s, machine busy \(.machine_busy_cpu_s) s"' \
        <<< "$(tail -1 "$work/throughput.jsonl")" >&2
}
: > "$work/throughput.jsonl"
for i in $(seq "$runs"); do
    throughput ssh "$i" "${ssh_cmd[@]}" -tt bench "$load"
    throughput tether "$i" "${tether_cmd[@]}" tty tty-bench --no-record --command "$load"
done

# ---- Keystroke latency -------------------------------------------------------------------------
echo_cmd='stty raw -echo; echo LAT-READY; exec cat'
: > "$work/latency.jsonl"
for i in $(seq "$lat_runs"); do
    timeout 300 "$bin/tty-latency" --keys "$keys" --label ssh -- \
        "${ssh_cmd[@]}" -tt bench "$echo_cmd" | jq -c --arg run "$i" '. + {run: ($run | tonumber)}' >> "$work/latency.jsonl"
    timeout 300 "$bin/tty-latency" --keys "$keys" --label tether -- \
        "${tether_cmd[@]}" tty tty-bench --no-record --command "$echo_cmd" \
        | jq -c --arg run "$i" '. + {run: ($run | tonumber)}' >> "$work/latency.jsonl"
    # The yardsticks: a fresh agent (and relay) per run; they serve one client.
    for shape in direct relayed; do
        agent_port=$(spare_port)
        "$bin/tty-floor" agent --listen "127.0.0.1:$agent_port" -- sh -c "$echo_cmd" &
        floor_pids="$!"
        to=$agent_port
        if [ "$shape" = relayed ]; then
            to=$(spare_port)
            "$bin/tty-floor" relay --listen "127.0.0.1:$to" --agent "127.0.0.1:$agent_port" &
            floor_pids="$floor_pids $!"
        fi
        sleep 0.2
        timeout 300 "$bin/tty-latency" --keys "$keys" --label "floor_$shape" -- \
            "$bin/tty-floor" client --to "127.0.0.1:$to" \
            | jq -c --arg run "$i" '. + {run: ($run | tonumber)}' >> "$work/latency.jsonl"
        # shellcheck disable=SC2086 # a list of pids
        kill $floor_pids 2> /dev/null
        # shellcheck disable=SC2086
        wait $floor_pids 2> /dev/null || true
        floor_pids=""
    done
done

# ---- Results -----------------------------------------------------------------------------------
jq -n --slurpfile tp "$work/throughput.jsonl" --slurpfile lat "$work/latency.jsonl" \
    --arg date "$(date -u +%FT%TZ)" --arg kernel "$(uname -r)" --arg cpu "$(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" \
    --arg ssh_version "$ssh_version" --arg cipher "$cipher" --arg kex "$kex" --arg size "$size" --arg keys "$keys" '
    def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def spread(f): [.[] | f] | {min: min, median: med, max: max};
    def pooled(p): (map(.samples_us[]) | sort) as $s | $s[((p / 100 * ($s | length)) | ceil) - 1];
    def tpsum: {runs: length, mb_per_s: spread(.mb_per_s), mb_per_s_with_setup: spread(.mb_per_s_with_setup),
        bytes: .[0].bytes, client_cpu_s: spread(.client_cpu_s), machine_busy_cpu_s: spread(.machine_busy_cpu_s)};
    def latsum: {runs: length, keys_per_run: .[0].keys, p50_us: spread(.p50_us), p90_us: spread(.p90_us),
        p99_us: spread(.p99_us), max_us: spread(.max_us),
        pooled: {keys: (map(.samples_us | length) | add), p50_us: pooled(50), p90_us: pooled(90), p99_us: pooled(99), max_us: pooled(100)}};
    ($tp | map(select(.label == "ssh"))) as $tps | ($tp | map(select(.label == "tether"))) as $tpt |
    ($lat | map(select(.label == "ssh"))) as $ls | ($lat | map(select(.label == "tether"))) as $lt |
    ($lat | map(select(.label == "floor_direct"))) as $lfd | ($lat | map(select(.label == "floor_relayed"))) as $lfr |
    {date: $date, kernel: $kernel, cpu: $cpu, openssh: {version: $ssh_version, cipher: $cipher, kex: $kex},
     input: "head -c \($size) /dev/zero | base64", keys: ($keys | tonumber),
     throughput: {ssh: ($tps | tpsum), tether: ($tpt | tpsum),
        tether_extra: {core_cpu_s: ($tpt | spread(.core_cpu_s)), node_cpu_s: ($tpt | spread(.node_cpu_s)),
            node_children_cpu_s: ($tpt | spread(.node_children_cpu_s))},
        ssh_extra: {sshd_cpu_s_with_children: ($tps | spread(.sshd_cpu_s_with_children))}},
     latency: {ssh: ($ls | latsum), tether: ($lt | latsum), floor_direct: ($lfd | latsum), floor_relayed: ($lfr | latsum)},
     runs: {throughput: $tp, latency: ($lat | map(del(.samples_us)))}}
    | .ratios = {throughput_median: (.throughput.tether.mb_per_s.median / .throughput.ssh.mb_per_s.median),
        latency_p50_median: (.latency.tether.p50_us.median / .latency.ssh.p50_us.median),
        latency_p99_median: (.latency.tether.p99_us.median / .latency.ssh.p99_us.median),
        latency_p50_pooled: (.latency.tether.pooled.p50_us / .latency.ssh.pooled.p50_us),
        latency_p99_pooled: (.latency.tether.pooled.p99_us / .latency.ssh.pooled.p99_us),
        floor_relayed_p50_median: (.latency.floor_relayed.p50_us.median / .latency.ssh.p50_us.median),
        tether_over_floor_relayed_p50_median: (.latency.tether.p50_us.median / .latency.floor_relayed.p50_us.median)}
    ' > "$out"

jq -r '
    def f0: . * 1 | round; def f1: . * 10 | round / 10; def f2: . * 100 | round / 100;
    def s1: "\(.min | f1) / \(.median | f1) / \(.max | f1)";
    def s0: "\(.min | f0) / \(.median | f0) / \(.max | f0)";
    def s2: "\(.min | f2) / \(.median | f2) / \(.max | f2)";
    "OpenSSH: \(.openssh.version); cipher \(.openssh.cipher); kex \(.openssh.kex)",
    "Machine: \(.cpu), Linux \(.kernel); \(.date)", "",
    "Throughput: \(.input) (\(.throughput.ssh.bytes) bytes through the terminal), \(.throughput.ssh.runs) runs each",
    "| client | MB/s (min / median / max) | MB/s incl. session setup | client CPU s | machine busy CPU s |",
    "|---|---|---|---|---|",
    (.throughput | "| OpenSSH | \(.ssh.mb_per_s | s1) | \(.ssh.mb_per_s_with_setup | s1) | \(.ssh.client_cpu_s | s2) | \(.ssh.machine_busy_cpu_s | s2) |",
                   "| Tether | \(.tether.mb_per_s | s1) | \(.tether.mb_per_s_with_setup | s1) | \(.tether.client_cpu_s | s2) | \(.tether.machine_busy_cpu_s | s2) |"),
    (.throughput | "Tether core CPU s \(.tether_extra.core_cpu_s | s2), node \(.tether_extra.node_cpu_s | s2), node children (shell, head, base64) \(.tether_extra.node_children_cpu_s | s2); sshd with its session processes (includes the workload) \(.ssh_extra.sshd_cpu_s_with_children | s2)"),
    "",
    "Keystroke to echo: \(.latency.ssh.keys_per_run) keys per run, \(.latency.ssh.runs) runs each (per-run figures min / median / max; pooled over all runs)",
    "| client | p50 µs | p90 µs | p99 µs | max µs | pooled p50 / p99 µs |",
    "|---|---|---|---|---|---|",
    (.latency | "| OpenSSH | \(.ssh.p50_us | s0) | \(.ssh.p90_us | s0) | \(.ssh.p99_us | s0) | \(.ssh.max_us | s0) | \(.ssh.pooled.p50_us | f0) / \(.ssh.pooled.p99_us | f0) |",
                "| Tether | \(.tether.p50_us | s0) | \(.tether.p90_us | s0) | \(.tether.p99_us | s0) | \(.tether.max_us | s0) | \(.tether.pooled.p50_us | f0) / \(.tether.pooled.p99_us | f0) |",
                "| floor, direct | \(.floor_direct.p50_us | s0) | \(.floor_direct.p90_us | s0) | \(.floor_direct.p99_us | s0) | \(.floor_direct.max_us | s0) | \(.floor_direct.pooled.p50_us | f0) / \(.floor_direct.pooled.p99_us | f0) |",
                "| floor, relayed | \(.floor_relayed.p50_us | s0) | \(.floor_relayed.p90_us | s0) | \(.floor_relayed.p99_us | s0) | \(.floor_relayed.max_us | s0) | \(.floor_relayed.pooled.p50_us | f0) / \(.floor_relayed.pooled.p99_us | f0) |"),
    "",
    "Tether ÷ OpenSSH: throughput \(.ratios.throughput_median | f2) (medians); latency p50 \(.ratios.latency_p50_median | f2), p99 \(.ratios.latency_p99_median | f2) (medians of runs); pooled p50 \(.ratios.latency_p50_pooled | f2), p99 \(.ratios.latency_p99_pooled | f2)",
    "Relayed floor ÷ OpenSSH p50 \(.ratios.floor_relayed_p50_median | f2); Tether ÷ relayed floor p50 \(.ratios.tether_over_floor_relayed_p50_median | f2)"
' "$out"
echo "JSON: $out" >&2
