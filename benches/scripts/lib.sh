# Shared by the benchmark scripts: source it, after `cd` to the repository root.

# Raises the limits a many-connection benchmark needs, from the script itself:
# - open files: the soft limit as far as the hard one allows (many sockets and descriptors);
# - UDP buffers, as root: bursts from thousands of connections overflow the default (~208 KiB)
#   and the drops become QUIC retransmission stalls. Core asks for 8 MiB; let the kernel grant it.
raise_limits() {
    ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
    if [ "$(id -u)" = 0 ]; then
        sysctl -q -w net.core.rmem_max=16777216 net.core.wmem_max=16777216 || true
    fi
}

# Waits (up to 20 s) for a core just started on DATA to have bound its UDP PORT (its data directory
# may be older than the process), then prints its join token:
#   token=$(join_token CORE_BIN DATA PORT)
join_token() {
    for _ in $(seq 200); do
        [ -f "$2/core.addr" ] && ss -Hlun "sport = :$3" | grep -q . && break
        sleep 0.1
    done
    "$1" key show --data "$2" 2> /dev/null
}

# Starts `CORE_BIN serve` in the background on DATA and 127.0.0.1:PORT, approving every enrollment,
# its stderr appended to LOG; its pid in $core. Further arguments go in front (e.g. taskset -c 0).
start_core() {
    local bin=$1 data=$2 port=$3 log=$4
    shift 4
    "$@" "$bin" serve --data "$data" --listen "127.0.0.1:$port" --auto-approve \
        --max-pending-applications 1000000 2>> "$log" &
    core=$!
}

# A field of /proc/PID/status in KiB: proc_kib PID VmRSS (or VmHWM, ...).
proc_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }

# The generator's latest progress line (it prints one a second) in its stderr LOG.
loadgen_progress() { grep 'tether-loadgen: \[' "$1" | tail -1; }

# Sessions the generator has lost so far, from its LOG.
loadgen_disconnects() { loadgen_progress "$1" | grep -o '[0-9]* disconnects' | cut -d' ' -f1; }

# CPU seconds (user and system) PID has used so far.
proc_cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

# `tether status --json` from the core on DATA and PORT, or {} when it does not answer (a busy
# core can outlast the CLI's patience):  core_status CLI_BIN DATA PORT
core_status() {
    "$1" --identity "$2/admin.identity" --core "127.0.0.1:$3" status --json 2> /dev/null || echo '{}'
}
