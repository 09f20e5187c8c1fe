"""Python 3.10 support, checked statically: the suite runs on 3.11 (no 3.10 interpreter
where it runs), so every module of the package is checked by the `vermin` tool (minimum
versions of the syntax, modules, members and keyword arguments it uses) and parsed with
the 3.10 grammar; the declared floor and the native module's stable ABI say 3.10 too."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("vermin", reason="the Python 3.10 check needs vermin (installed by scripts/test.sh)")

PACKAGE = REPO / "python" / "luxical"
# Every shape of code the package has; vermin and ast catch these when newer than 3.10.
NEWER = """\
import tomllib
from typing import Self
import hashlib
hashlib.file_digest
try:
    pass
except* ValueError:
    pass
"""


def _sources() -> list[Path]:
    files = sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".pyi"))
    assert len(files) > 20, files  # the package, not an empty glob
    return files


def _vermin(*paths: Path) -> subprocess.CompletedProcess[str]:
    # `vermin` has no __main__; its console script calls vermin.main().
    code = "import sys; from vermin import main; sys.exit(main())"
    args = ["--no-config-file", "--target=3.10-", "--violations", "--eval-annotations", "--no-tips", "--processes=1"]
    return subprocess.run(
        [sys.executable, "-c", code, *args, *map(str, paths)], capture_output=True, text=True, timeout=300
    )


def test_vermin_finds_nothing_newer_than_python_3_10():
    proc = _vermin(PACKAGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Analyzing {len(_sources())} files" in proc.stdout, proc.stdout
    assert "requires" not in proc.stdout, proc.stdout
    found = re.search(r"Minimum required versions: (\d+)\.(\d+)", proc.stdout)
    assert found and (int(found[1]), int(found[2])) <= (3, 10), proc.stdout


def test_vermin_reports_what_3_10_lacks(tmp_path):
    """The check above can fail: vermin flags each 3.11 feature of a sample."""
    sample = tmp_path / "newer.py"
    sample.write_text(NEWER, encoding="utf-8")
    proc = _vermin(sample)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for feature in ("'tomllib' module", "'typing.Self' member", "'hashlib.file_digest' member", "`except*`"):
        assert f"{feature} requires !2, 3.11" in proc.stdout, proc.stdout


def test_every_module_parses_with_the_python_3_10_grammar():
    for path in _sources():
        source = path.read_text(encoding="utf-8")
        try:
            ast.parse(source, filename=str(path), feature_version=(3, 10))
        except SyntaxError as exc:
            pytest.fail(f"{path.relative_to(REPO)}:{exc.lineno}: not Python 3.10 syntax: {exc.msg}")
    with pytest.raises(SyntaxError, match="3.11"):
        ast.parse(NEWER, feature_version=(3, 10))


def test_declared_floor_and_stable_abi_are_python_3_10():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.10"$', pyproject, re.M), "pyproject.toml requires-python"
    assert '"Programming Language :: Python :: 3.10"' in pyproject
    cargo = (REPO / "rust" / "luxical-py" / "Cargo.toml").read_text(encoding="utf-8")
    features = re.search(r"^pyo3 = .*features = \[(.*)\]", cargo, re.M)
    assert features and re.findall(r'"(abi3[^"]*)"', features[1]) == ["abi3-py310"], features


def test_installed_wheel_is_built_for_python_3_10():
    """The wheel the suite runs against says so too (one abi3 wheel for CPython >= 3.10)."""
    dist = metadata.distribution("luxical")
    assert dist.metadata["Requires-Python"] == ">=3.10"
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    assert tags and all(t.startswith("cp310-abi3-") for t in tags), tags
