#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/*.rs) for its share of N
# seconds in all (default 60; at least 5 s each), starting from the seed
# corpus kept in fuzz/corpus/TARGET; new inputs go to target/fuzz-corpus.
# Installs cargo-fuzz if it is missing. cargo-fuzz needs nightly features;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain here provide them. A crash
# fails the script with the target's name.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz
fi
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^rprof-fuzz$')
count=$(echo "$targets" | wc -l)
each=$(( seconds / count ))
[ "$each" -ge 5 ] || each=5
root=$PWD
cd fuzz
for t in $targets; do
    work=$root/target/fuzz-corpus/$t
    mkdir -p "$work"
    echo "-- $t for ${each}s"
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$each" >"$work.log" 2>&1; then
        tail -n 40 "$work.log"
        echo "fuzz target $t failed (log: $work.log)" >&2
        exit 1
    fi
    tail -n 1 "$work.log"
done
