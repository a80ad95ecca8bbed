#!/usr/bin/env bash
# The wheel's tests: builds it once (scripts/wheel.sh), then runs the
# ignored tests of tests/integration/dist.rs with RPROF_WHEEL set: the
# glibc floor of the binary and of the embedded shim (at most 2.17), a
# fresh venv of every interpreter found with the wheel pip-installed, and
# `rprof run` / `rprof attach` / `python -m rprof` from that venv's bin/;
# and the refusal of a musl target (built with the wheel build's zig; needs
# musl's loader, installed here with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
echo "== building the wheel"
wheel=$(bash scripts/wheel.sh)
echo "$wheel: $(du -k "$wheel" | cut -f1) KiB (built in $((SECONDS - start)) s)"

if [ ! -e /lib/ld-musl-x86_64.so.1 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing musl (for the musl-target test)"
        apt-get install -y -qq musl >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null && apt-get install -y -qq musl >/dev/null; }
    else
        echo "musl's loader is missing: install the musl package (the musl-target test needs it)" >&2
        exit 1
    fi
fi

echo "== wheel tests: glibc floor, venv installs, musl refusal"
RPROF_WHEEL="$PWD/$wheel" cargo test -p rprof --test integration dist:: -- --ignored --nocapture --test-threads 1
echo "== wheel step done in $((SECONDS - start)) s"
