# Shared by web-bench.sh and web-fleet.sh: source it after lib.sh, with $work, $bin (release
# binaries), $data (core's data directory) and $port (core's UDP port) set.

# The password of the user who logs in through the pages (and the bench's clients).
web_password='web bench password 1'
export TETHER_WEB_PASSWORD=$web_password

# A TCP port nobody listens on.
spare_tcp_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        ss -Htln "sport = :$port" | grep -q . || break
    done
    echo "$port"
}

# The admin CLI against the running core, as core's bootstrap admin.
tether_admin() { "$bin/tether" --identity "$data/admin.identity" --core "127.0.0.1:$port" "$@"; }

# Creates alice (admin, with $web_password) and the bridge's user `web` with its identity file
# $work/bridge.identity (once per data directory: both survive in core's database).
web_users() {
    if ! tether_admin user show alice > /dev/null 2>&1; then
        tether_admin user add alice --role admin --password-stdin <<< "$web_password" > /dev/null
    fi
    if ! tether_admin user show web > /dev/null 2>&1; then
        tether_admin user add web --role bridge > /dev/null
    fi
    rm -f "$work/bridge.identity"
    tether_admin user cert web --out "$work/bridge.identity" > /dev/null
}

# Starts the bridge on a spare port ($bridge: its pid, $url: its address) and waits for its
# /health to say it reached core. Further arguments go to tether-bridge.
start_bridge() {
    local bport
    bport=$(spare_tcp_port)
    url="http://127.0.0.1:$bport"
    "$bin/tether-bridge" --identity "$work/bridge.identity" --core "127.0.0.1:$port" \
        --listen "127.0.0.1:$bport" "$@" 2>> "$work/bridge.log" &
    bridge=$!
    for _ in $(seq 300); do
        curl -fsS "$url/health" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the bridge did not reach core; see $work/bridge.log" >&2
    tail "$work/bridge.log" >&2
    return 1
}

stop_bridge() {
    kill -INT "$bridge" 2> /dev/null || true
    wait "$bridge" 2> /dev/null || true
    bridge=""
}
