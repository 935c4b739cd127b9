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
