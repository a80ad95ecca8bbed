#!/usr/bin/env bash
# The whole test suite: formatting and lints, the shim's unit tests, a short
# fuzz run of the ring decoder, then every workspace test, including the
# differential suite against cProfile on every CPython found on the machine
# (pyenv's versions and /usr/bin/python3.N; RPROF_TEST_PYTHON=path[:path]
# restricts it). Set RPROF_FUZZ_SECONDS=0 to skip the fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/pythons.sh

echo "== formatting and lints"
cargo fmt --all --check
cargo fmt --manifest-path injector/Cargo.toml --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy --manifest-path injector/Cargo.toml --all-targets --quiet -- -D warnings

echo "== the shim's unit tests"
cargo test --manifest-path injector/Cargo.toml --quiet

fuzz_seconds=${RPROF_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
    echo "== fuzzing the ring decoder for ${fuzz_seconds}s"
    scripts/fuzz.sh "$fuzz_seconds"
fi

echo "== workspace tests (unit, integration, differential)"
cargo test --workspace

echo "== the wheel (build, glibc floor, venv installs, musl refusal)"
scripts/test_wheel.sh
