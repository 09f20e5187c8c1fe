"""The README's data-pipeline recipes, run as written (each in a fresh interpreter)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

RECIPE = re.compile(r"<!-- recipe: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)```", re.S)
NEEDS = {
    "spark": "pyspark",
    "dask": "distributed",
    "ray": "ray",
    "polars": "polars",
    "sentence-transformers": "sentence_transformers",
    "multiprocessing": "luxical",
    "heads": "sklearn",
}


def _recipes() -> dict[str, str]:
    return {m["name"]: m["code"] for m in RECIPE.finditer((REPO / "README.md").read_text(encoding="utf-8"))}


def test_every_engine_has_a_recipe():
    assert set(_recipes()) == set(NEEDS)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_recipe_runs(name, tmp_path):
    if importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is not installed (scripts/test.sh installs it)")
    script = tmp_path / f"recipe_{name.replace('-', '_')}.py"
    script.write_text(_recipes()[name], encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"recipe {name!r} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert proc.stdout.strip(), "a recipe prints what it made"
