#!/usr/bin/env bash
# Fuzzes the reader's ring decoder (fuzz/fuzz_targets/ring_stream.rs) for
# N seconds (default 60). Installs cargo-fuzz if it is missing. cargo-fuzz
# needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain here
# provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz
fi
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run ring_stream -- -max_total_time="$seconds" 2>&1 | tail -n 3
