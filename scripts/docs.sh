#!/usr/bin/env bash
# Builds the API reference from the docstrings into site/api (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q pdoc
rm -rf site/api
.venv/bin/python -W error -m pdoc luxical luxical.embedder luxical.errors luxical.arrow luxical.spark luxical.dask luxical.ray luxical.polars luxical.sentence_transformers luxical.training luxical.health luxical.heads luxical.hub luxical.cli -o site/api
echo "API reference: site/api/index.html"
