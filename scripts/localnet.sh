#!/usr/bin/env bash
# Builds seedmesh and runs a local network on 127.0.0.1: one dns (seed server) and N nodes
# (default 5), each in its own directory under ./localnet. Prints every node's known count each
# second as they find each other; Ctrl-C stops them all cleanly.
#
#   scripts/localnet.sh [N] [--until-converged]
#
# --until-converged exits (0) once every node knows all the others, or fails after 60 s;
# CI uses it. SEEDMESH_PROFILE=debug uses the debug build instead of the release one.
# DNS_PORT (default 42020; 0 for any free port) and LOCALNET_DIR (default ./localnet) can be
# set too.
set -euo pipefail
cd "$(dirname "$0")/.."

count=5
until_converged=false
for arg in "$@"; do
    case "$arg" in
        --until-converged) until_converged=true ;;
        '' | *[!0-9]*) echo "usage: $0 [N] [--until-converged]" >&2; exit 2 ;;
        *) count=$arg ;;
    esac
done
(( count >= 2 )) || { echo "need at least 2 nodes" >&2; exit 2; }

profile=${SEEDMESH_PROFILE:-release}
if [[ $profile == release ]]; then
    cargo build --release --quiet --bins
else
    cargo build --quiet --bins
fi
bin=target/$profile
dir=${LOCALNET_DIR:-localnet}
dns_port=${DNS_PORT:-42020}
rm -rf "$dir"
mkdir -p "$dir"

pids=()
stop() {
    trap - EXIT INT TERM
    echo
    echo "stopping ${#pids[@]} processes (SIGTERM)..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    echo "stopped; logs and state are in $dir/"
}
trap stop EXIT
trap 'exit 130' INT TERM

# Waits for a process's "listening on IP:PORT" line and prints the port.
port_of() {
    local out=$1 line
    for _ in $(seq 100); do
        if read -r line < "$out" 2>/dev/null && [[ $line == "listening on "* ]]; then
            echo "${line##*:}"
            return
        fi
        sleep 0.05
    done
    echo "a process did not start; see ${out%.out}.log" >&2
    exit 1
}

# Known nodes of the process on port $1, by counting the entries of GET /nodes/.
known() {
    local body
    body=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET /nodes/ HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null) || { echo "?"; return; }
    { grep -o '"port"' <<<"$body" || true; } | wc -l | tr -d ' '
}

"$bin/dns" -i 127.0.0.1 -p "$dns_port" -d "$dir/dns" -u 2 > "$dir/dns.out" 2> "$dir/dns.log" &
pids+=($!)
dns_port=$(port_of "$dir/dns.out")
echo "dns      127.0.0.1:$dns_port  (pid ${pids[0]}, log $dir/dns.log)"

ports=()
for i in $(seq "$count"); do
    "$bin/node" -d "$dir/node$i" -u 2 --dns "127.0.0.1:$dns_port" > "$dir/node$i.out" 2> "$dir/node$i.log" &
    pids+=($!)
    ports+=("$(port_of "$dir/node$i.out")")
    echo "node$i    127.0.0.1:${ports[-1]}  (pid ${pids[-1]}, log $dir/node$i.log)"
done
echo
echo "known nodes per process, every second (each node should reach $((count - 1))); Ctrl-C to stop"
echo "try: curl -s localhost:$dns_port/nodes/ ; kill ${pids[1]}  (node1 vanishes from every list)"

started=$SECONDS
converged=false
while true; do
    line="t=$((SECONDS - started))s  dns:$(known "$dns_port")"
    all=true
    for i in "${!ports[@]}"; do
        k=$(known "${ports[$i]}")
        line+="  node$((i + 1)):$k"
        [[ $k == "$((count - 1))" ]] || all=false
    done
    echo "$line"
    if $all && ! $converged; then
        converged=true
        echo "converged after $((SECONDS - started)) s: every node knows the $((count - 1)) others"
        $until_converged && exit 0
    fi
    if $until_converged && (( SECONDS - started > 60 )); then
        echo "did not converge within 60 s" >&2
        exit 1
    fi
    sleep 1
done
