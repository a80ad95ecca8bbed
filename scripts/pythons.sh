#!/usr/bin/env bash
# Unpacks the interpreters of ../shared/pythons (CPython 3.14.7, its
# free-threaded build 3.14.7t, Debian's 3.15.2 with its own glibc) into
# /opt, where the test suite and the benchmark discover them:
#   /opt/cpython-3.14/bin/python3.14
#   /opt/cpython-3.14t/bin/python3.14t
#   /opt/debian-python3.15/usr/bin/python3.15   (must live in /opt: its ELF
#                                                interpreter path says so)
# Idempotent: an archive already unpacked (same size and mtime, recorded in
# a stamp file) is not unpacked again. Nothing is downloaded. Prints one
# line per archive: unpacked, already there, or skipped and why.
# RPROF_SHARED_PYTHONS overrides the archive folder.
set -euo pipefail
cd "$(dirname "$0")/.."

src=${RPROF_SHARED_PYTHONS:-../shared/pythons}
dest=/opt

if [ ! -d "$src" ]; then
    echo "pythons: skipped all: $src not found (it holds 3.14, 3.14t and 3.15)"
    exit 0
fi
if [ ! -w "$dest" ]; then
    echo "pythons: skipped all: $dest is not writable (run as root)"
    exit 0
fi

unpack() {
    local archive=$1 dir=$2 exe=$3
    local path="$src/$archive"
    if [ ! -f "$path" ]; then
        echo "pythons: skipped $archive: not in $src"
        return
    fi
    local stamp="$dest/$dir/.rprof-unpacked"
    local want
    want=$(stat -c '%s %Y' "$path")
    if [ -x "$dest/$dir/$exe" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        echo "pythons: $dest/$dir already unpacked"
        return
    fi
    rm -rf "${dest:?}/$dir"
    tar -C "$dest" -xJf "$path"
    if [ ! -x "$dest/$dir/$exe" ]; then
        echo "pythons: $archive did not contain $dir/$exe" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
    echo "pythons: unpacked $archive into $dest/$dir"
}

unpack cpython-3.14.7-x86_64-linux-gnu.tar.xz cpython-3.14 bin/python3.14
unpack cpython-3.14.7t-x86_64-linux-gnu.tar.xz cpython-3.14t bin/python3.14t
unpack debian-python3.15.2-x86_64.tar.xz debian-python3.15 usr/bin/python3.15
