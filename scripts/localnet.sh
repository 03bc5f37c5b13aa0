#!/usr/bin/env bash
# A local seedmesh network on 127.0.0.1; see usage() below, or run it with --help.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/localnet.sh [N] [--until-converged]

Builds seedmesh and runs a local network on 127.0.0.1: one dns (the seed server) and N nodes
(default 5, at least 2), each with its own directory and log under ./localnet. It prints each
process's known count whenever one changes, until every node knows the N-1 others, and keeps
running so that you can curl the processes or kill a node and watch it vanish from every list.
The dns also answers DNS for the zone seed.test (DNS seeding, docs/dns-seeding.md):
  dig @127.0.0.1 -p 5353 _seedmesh._tcp.seed.test SRV
Ctrl-C stops them all cleanly. The first run builds for about 45 s.

  N                  how many nodes to start (default 5)
  --until-converged  exit 0 once every node knows all the others, 1 after 60 s without (CI)
  -h, --help         print this help

Environment:
  DNS_PORT          the seed's port (default 42020; 0 for any free port)
  SEED_DNS_PORT     the seed's DNS port on 127.0.0.1, UDP and TCP (default 5353; 0 for any
                    free port)
  LOCALNET_DIR      where directories and logs go (default ./localnet); one network per
                    directory: a second start there is refused while the first runs
  SEEDMESH_PROFILE  release (default) or debug: which build to run
  SEEDMESH_BIN_DIR  run the dns and node binaries in this directory, without building
EOF
}

count=5
until_converged=false
for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        --until-converged) until_converged=true ;;
        '' | *[!0-9]*) echo "localnet: unknown argument '$arg'; see --help" >&2; exit 2 ;;
        *) count=$arg ;;
    esac
done
(( count >= 2 )) || { echo "localnet: need at least 2 nodes" >&2; exit 2; }

cd "$(dirname "$0")/.."
dir=${LOCALNET_DIR:-localnet}
dns_port=${DNS_PORT:-42020}
seed_dns_port=${SEED_DNS_PORT:-5353}

# One network per directory. The lock is held by this script and inherited by every process it
# starts, so it stays held while any of them runs, and the kernel frees it when all are gone.
mkdir -p "$dir"
exec 9>>"$dir/localnet.lock"
if ! flock -n 9; then
    holder=$(cat "$dir/localnet.pid" 2>/dev/null || echo "?")
    echo "localnet: a local network is already running in $dir (script pid $holder); stop it" >&2
    echo "first (Ctrl-C in its terminal, or kill $holder), or set LOCALNET_DIR to another directory" >&2
    exit 1
fi
echo $$ > "$dir/localnet.pid"

if [[ -n ${SEEDMESH_BIN_DIR:-} ]]; then
    bin=$SEEDMESH_BIN_DIR
else
    profile=${SEEDMESH_PROFILE:-release}
    echo "building the $profile binaries (about 45 s the first time)..."
    if [[ $profile == release ]]; then
        cargo build --release --quiet --bins
    else
        cargo build --quiet --bins
    fi
    bin=target/$profile
fi

# The previous network's state and logs; it is not running (we hold the lock).
find "$dir" -mindepth 1 -maxdepth 1 ! -name localnet.lock ! -name localnet.pid -exec rm -rf {} +

pids=()
stop() {
    trap - EXIT INT TERM
    if (( ${#pids[@]} > 0 )); then
        echo
        # Those still running: the user may have stopped some (the dns is the first).
        local alive=() pid what
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive+=("$pid")
        done
        local nodes=${#alive[@]}
        if [[ ${alive[0]:-} == "${pids[0]}" ]]; then
            what="the dns and "
            nodes=$(( nodes - 1 ))
        else
            what=""
        fi
        echo "stopping ${what}$nodes node$( (( nodes == 1 )) || echo s) (SIGTERM)..."
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
        echo "stopped; logs and state are in $dir/"
    fi
    rm -f "$dir/localnet.pid"
}
trap stop EXIT
trap 'exit 130' INT TERM

# Waits for the "listening on IP:PORT" line of process $1 (dns, node1...) and prints the port;
# if the process ends or does not start within 5 s, shows the end of its log and exits.
port_of() {
    local name=$1 pid=$2 line
    for _ in $(seq 100); do
        if read -r line 2>/dev/null < "$dir/$name.out" && [[ $line == "listening on "* ]]; then
            echo "${line##*:}"
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    {
        echo "localnet: $name did not start; the end of $dir/$name.log:"
        tail -n 15 "$dir/$name.log" | sed 's/^/    /'
    } >&2
    exit 1
}

# Waits for the dns's second line, "dns seeding on IP:PORT", and prints IP:PORT.
seeding_of() {
    local line
    for _ in $(seq 100); do
        line=$(sed -n 's/^dns seeding on //p' "$dir/dns.out")
        [[ -n $line ]] && { echo "$line"; return; }
        sleep 0.05
    done
    echo "localnet: the dns did not say where it answers DNS; see $dir/dns.log" >&2
    exit 1
}

# Known nodes of the process on port $1, by counting the entries of GET /nodes/.
known() {
    local body
    body=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET /nodes/ HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null) || { echo "?"; return; }
    { grep -o '"port"' <<<"$body" || true; } | wc -l | tr -d ' '
}

"$bin/dns" -i 127.0.0.1 -p "$dns_port" -d "$dir/dns" -u 2 \
    --seed_zone seed.test --seed_listen "127.0.0.1:$seed_dns_port" > "$dir/dns.out" 2> "$dir/dns.log" &
pids+=($!)
dns_port=$(port_of dns "${pids[0]}")
seed_dns=$(seeding_of)
echo "dns      127.0.0.1:$dns_port  (pid ${pids[0]}, log $dir/dns.log); DNS seeding on $seed_dns"

# A node stops asking for more once it knows --kn_limit (10) nodes (SPEC §7); so that every
# node comes to know all the others quickly, a network of more than 11 asks until it does.
kn_limit=$(( count - 1 > 10 ? count - 1 : 10 ))
ports=()
for i in $(seq "$count"); do
    "$bin/node" -d "$dir/node$i" -u 2 -k "$kn_limit" --dns "127.0.0.1:$dns_port" > "$dir/node$i.out" 2> "$dir/node$i.log" &
    pids+=($!)
    ports+=("$(port_of "node$i" "${pids[-1]}")")
    echo "node$i    127.0.0.1:${ports[-1]}  (pid ${pids[-1]}, log $dir/node$i.log)"
done
echo
echo "known nodes per process, printed when a count changes (each node should reach $((count - 1))); Ctrl-C to stop"
echo "try: curl -s localhost:$dns_port/nodes/ ; kill ${pids[1]}  (node1 vanishes from every list)"
echo "     dig @127.0.0.1 -p ${seed_dns##*:} _seedmesh._tcp.seed.test SRV  (the nodes the seed's last sweep,"
echo "     every 2 s, found online)"

started=$SECONDS
converged=false
last=""
while true; do
    counts="dns:$(known "$dns_port")"
    all=true
    for i in "${!ports[@]}"; do
        k=$(known "${ports[$i]}")
        counts+="  node$((i + 1)):$k"
        [[ $k == "$((count - 1))" ]] || all=false
    done
    if [[ $counts != "$last" ]]; then
        echo "t=$((SECONDS - started))s  $counts"
        last=$counts
    fi
    if $all && ! $converged; then
        converged=true
        echo "converged after $((SECONDS - started)) s: every node knows the $((count - 1)) others"
        $until_converged && exit 0
    fi
    $all || converged=false
    if $until_converged && (( SECONDS - started > 60 )); then
        echo "localnet: did not converge within 60 s" >&2
        exit 1
    fi
    sleep 1
done
