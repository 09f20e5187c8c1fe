#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 60 s each) from the committed
# seed corpus. A crash fails the run and leaves its input in fuzz/artifacts/<target>/:
# fix the bug, then copy that input into fuzz/regressions/<target>/ (replayed by
# `cargo test -p luxical-core --test fuzz_regressions`).
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them (the machine has one toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked -q cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build --fuzz-dir fuzz -O
for target in tokenize_and_embed tokenizer_configs load_model; do
    work=$(mktemp -d)  # new inputs go here, the committed corpus stays as it is
    echo "fuzzing $target for ${seconds}s"
    cargo fuzz run --fuzz-dir fuzz -O "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=0 2>&1 | tail -n 3
    rm -rf "$work"
done
