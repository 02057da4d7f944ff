#!/usr/bin/env bash
# `make demo`: the main job on an embedded default, start to finish on one machine.
#
# 1. starts our distccd on 127.0.0.1 (a free port) with a temporary masquerade dir as its
#    compiler whitelist;
# 2. builds the bundled sample (tests/demo/sample) with `make -j4`, the Gentoo way: a
#    masquerade dir of links gcc/cc → distcc first in PATH;
# 3. shows distccmon-text while the build runs;
# 4. runs the program, prints how many compile jobs ran remotely, and stops the daemon.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${DISTCC_BIN:-$top/target/release/distcc}
[ -x "$bin" ] || { echo "demo: $bin is missing; run 'make' first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/distcc-demo.XXXXXX")
# Started as root, distccd drops to the `distcc` user, which must be able to see the
# whitelist (masquerade) dir.
chmod 755 "$work"
pidfile=$work/distccd.pid
cleanup() {
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Applets are links to the one binary; the masquerade dir doubles as the daemon's whitelist.
mkdir -p "$work/bin" "$work/masq" "$work/distcc"
for applet in distccd distccmon-text; do ln -s "$bin" "$work/bin/$applet"; done
# The client sends `cc` as the real compiler's name (gcc → <triple>-gcc, like distcc), so
# the daemon's whitelist needs those names too.
triple=$(gcc -dumpmachine)
for cc in gcc cc "$triple-gcc"; do ln -s "$bin" "$work/masq/$cc"; done

# A free port on loopback: the first one nothing answers on.
port=
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free port found" >&2; exit 1; }

echo "== starting distccd on 127.0.0.1:$port"
DISTCCD_MASQUERADE_DIRS=$work/masq "$work/bin/distccd" --daemon --no-detach \
    --listen 127.0.0.1 --allow 127.0.0.1 --port "$port" --jobs 4 \
    --pid-file "$pidfile" --log-file "$work/distccd.log" --log-level info &
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done

echo "== building the sample with make -j4 through the masquerade dir"
cp -r "$top/tests/demo/sample" "$work/sample"
export DISTCC_DIR=$work/distcc DISTCC_HOSTS="127.0.0.1:$port/4,lzo"
(
    while sleep 0.2; do
        out=$("$work/bin/distccmon-text" 2>/dev/null) || true
        [ -n "${out//[$'\n']/}" ] && printf '%s\n' "$out" | sed 's/^/   monitor: /'
    done
) &
monitor=$!
PATH="$work/masq:$PATH" make -C "$work/sample" -j4 --no-print-directory
kill "$monitor" 2>/dev/null || true
wait "$monitor" 2>/dev/null || true

echo "== running the result"
"$work/sample/hello-distcc"

remote=$(grep -c 'COMPILE_OK' "$work/distccd.log" || true)
grep -E 'refused|denied|ERROR' "$work/distccd.log" | sed 's/^/   daemon: /' || true
objects=$(ls "$work"/sample/*.o | wc -l)
echo "== $remote of $objects compile jobs ran on the daemon (see its summary lines):"
grep 'COMPILE_OK' "$work/distccd.log" | sed 's/^/   /' || true
echo "== stopping distccd (pid $(cat "$pidfile"))"
