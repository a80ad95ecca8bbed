#!/usr/bin/env bash
# Builds the pip-installable wheel into target/wheels/ (and prints its path):
# `rprof` as a maturin `bin` wheel with the shim embedded, tagged
# manylinux_2_17_x86_64. Both the binary and the shim (built by
# crates/rprof-controller/build.rs, which inherits the zig linker that
# maturin sets up) are linked with zig against glibc 2.17, so the shim loads
# into targets with any glibc from 2.17 on. The build tools (maturin, ziglang,
# cargo-zigbuild) come from PyPI into a private venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/dist-venv
python=${RPROF_BUILD_PYTHON:-python3}
if [ ! -x "$venv/bin/maturin" ] || ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
    echo "== installing maturin, ziglang and cargo-zigbuild into $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'maturin>=1.5,<2' 'ziglang>=0.13' 'cargo-zigbuild>=0.19'
fi
# The tests install the wheel with this pip into interpreters that ship no
# ensurepip (Debian's 3.15): it must know the newest Pythons.
if ! "$venv/bin/python" -c 'import pip, sys; sys.exit(int(pip.__version__.split(".")[0]) < 25)'; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'pip>=25'
fi
export PATH="$PWD/$venv/bin:$PATH"

out=${RPROF_WHEEL_DIR:-target/wheels}
rm -f "$out"/rprof-*.whl
# The `dist` profile (Cargo.toml) is `release` without debug info.
maturin build --quiet --profile dist --zig \
    --target x86_64-unknown-linux-gnu --compatibility manylinux_2_17 \
    --out "$out" >&2
ls "$out"/rprof-*manylinux_2_17_x86_64.whl
