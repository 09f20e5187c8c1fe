#!/usr/bin/env bash
# Sets up .venv with luxical built from this checkout (release build, installed as a
# wheel, not editable). Idempotent. Usage: bash scripts/setup.sh [extra pip packages...]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo (Rust >= 1.89) is needed to build luxical from source; install it with rustup" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 'maturin>=1.7,<2' ziglang
rm -rf dist
# zig links against an old glibc: a manylinux2014 (glibc 2.17) wheel that installs on any
# x86-64 Linux cluster node. The default target CPU is the x86-64 baseline; the GEMM
# kernels pick AVX/FMA at run time, so no node gets an illegal instruction.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/maturin build --release --quiet --zig --compatibility manylinux2014 --out dist
.venv/bin/python -m pip install -q --force-reinstall --no-deps dist/luxical-*.whl
.venv/bin/python -m pip install -q 'numpy>=1.24' "$@"
