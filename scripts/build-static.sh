#!/usr/bin/env bash
# Builds dns and node as fully static executables for small VMs, then checks them: ldd must say
# "not a dynamic executable", and the static dns must start and answer GET /.
#
#   scripts/build-static.sh [TARGET]
#
# TARGET defaults to the host's glibc target (x86_64-unknown-linux-gnu here), linked with
# `crt-static` against the distribution's static glibc (Debian: libc6-dev). A musl target
# (`rustup target add x86_64-unknown-linux-musl`) works too and needs no static libc.
# The executables are non-PIE (`relocation-model=static`): loaded at a fixed address, which is
# what makes ldd say "not a dynamic executable" (a static-pie is "statically linked").
# They go to target/static/TARGET/release/.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-$(rustc -vV | sed -n 's/^host: //p')}
flags="-C relocation-model=static"
case $target in
    *-linux-gnu*) flags+=" -C target-feature=+crt-static" ;;
    *-linux-musl*) ;;
    *) echo "static builds are for Linux targets, not $target" >&2; exit 2 ;;
esac
# --target keeps these flags off build scripts and proc macros, which must stay dynamic.
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --quiet --bins --target "$target" \
    --target-dir target/static
out=target/static/$target/release

for bin in dns node; do
    verdict=$(ldd "$out/$bin" 2>&1 | tr -s '[:space:]' ' ' || true)
    verdict=${verdict# }
    verdict=${verdict% }
    if [[ $verdict != *"not a dynamic executable"* ]]; then
        echo "$out/$bin is not static; ldd says: $verdict" >&2
        exit 1
    fi
    printf '%-28s %8d bytes  ldd: %s\n' "$out/$bin" "$(stat -c %s "$out/$bin")" "$verdict"
done

# It must also run: start the static dns on a free port and ask it GET /.
dir=$(mktemp -d)
"$out/dns" -i 127.0.0.1 -p 0 -d "$dir/state" -q > "$dir/out" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    [[ -s $dir/out ]] && break
    sleep 0.05
done
line=$(head -n 1 "$dir/out")
port=${line##*:}
[[ $line == "listening on 127.0.0.1:"* ]] || { echo "the static dns did not start: $line" >&2; exit 1; }
status=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -n 1 <&3")
[[ $status == "HTTP/1.0 200"* || $status == "HTTP/1.1 200"* ]] || {
    echo "the static dns answered: $status" >&2
    exit 1
}
echo "the static dns starts and answers GET /: ok"
