"""Dense-layer kernels chosen at run time (rust/luxical-core/src/gemm.rs): every kernel this
CPU has, forced with LUXICAL_KERNEL in a fresh process (the choice is made once per
process), embeds real texts like the portable kernel to float rounding (row cosine >=
0.999999), in float32 and int8, and bit for bit like the AVX2 kernel (the int8 layers
are bit-identical on every kernel; the float32 output layer rounds differently only in
the portable kernel). `luxical.cpu_info()` names the kernel in use.

A kernel this CPU lacks is skipped for the platform (tests/README.md, "Kernels"); the
Rust unit tests in gemm.rs cover the choice on CPUs without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import luxical
from conftest import FIXTURES, platform_skip, read_real_texts, unit_or_zero_rows

#: The families LUXICAL_KERNEL names; "amx" is int8-only (its float32 kernel is avx512's).
KERNELS = ["portable", "avx2", "avx512", "amx"]
#: What each family needs (the names cpu_info()["features"] uses; amx_os: the OS granted
#: the process the tile state).
NEEDS = {
    "portable": [],
    "avx2": ["avx2", "fma"],
    "avx512": ["avx2", "fma", "avx512f"],
    "amx": ["avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "amx_tile", "amx_int8", "amx_os"],
}
#: Each family's float32 and int8 kernel names, as cpu_info() reports them.
FLOAT32 = {"portable": "portable", "avx2": "avx2", "avx512": "avx512", "amx": "avx512"}
INT8 = {"portable": "portable", "avx2": "avx2", "avx512": "avx512-vnni", "amx": "amx-int8"}
#: Each family's bfloat16 kernel (AVX2 has none: the portable one runs).
BF16 = {"portable": "portable", "avx2": "portable", "avx512": "avx512-bf16", "amx": "amx-bf16"}
MODELS = {"small": FIXTURES / "small_model.npz", "default": luxical.default_model_path()}
N_TEXTS = 3000

_CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import luxical

    spec = json.loads(sys.argv[1])
    with open(spec["texts"], encoding="utf-8") as f:
        texts = json.load(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, path in spec["models"].items():
            for precision in ("float32", "int8", "bfloat16"):
                emb = luxical.Embedder.load(path, precision=precision)
                np.save(f"{spec['out']}/{name}-{precision}.npy", emb(texts, num_threads=2))
        info = luxical.cpu_info()
    print(json.dumps({"info": info, "warnings": [str(w.message) for w in caught]}))
    """
)


def _clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LUXICAL_KERNEL", "LUXICAL_NO_SIMD")}
    env.update(settings)
    return env


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    rows = read_real_texts()
    texts = [row["text"] for row in rows][:N_TEXTS] + ["", "   ", "a", "the the the"]
    path = tmp_path_factory.mktemp("kernels") / "texts.json"
    path.write_text(json.dumps(texts), encoding="utf-8")
    return path


def _embed_in_child(tmp: Path, texts: Path, models: dict[str, Path], **settings: str) -> dict:
    spec = {"texts": str(texts), "out": str(tmp), "models": {k: str(v) for k, v in models.items()}}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(spec)],
        env=_clean_env(LUXICAL_CACHE_DIR=str(tmp / "cache"), **settings),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["emb"] = {p.stem: np.load(p) for p in tmp.glob("*.npy")}
    return result


_runs: dict[str, dict] = {}


@pytest.fixture(scope="module")
def run(texts_file, tmp_path_factory):
    """Embeddings (and cpu_info) of a fresh process with LUXICAL_KERNEL=kernel, once per kernel."""

    def get(kernel: str) -> dict:
        if kernel not in _runs:
            tmp = tmp_path_factory.mktemp(f"kernel-{kernel}")
            _runs[kernel] = _embed_in_child(tmp, texts_file, MODELS, LUXICAL_KERNEL=kernel)
        return _runs[kernel]

    return get


def _has_family(info: dict, kernel: str) -> bool:
    if kernel == "amx":
        return "amx-int8" in info["int8_kernels"]
    return kernel in info["float32_kernels"]


def _require_kernel(kernel: str) -> None:
    info = luxical.cpu_info()
    if not _has_family(info, kernel):
        missing = [f for f in NEEDS[kernel] if not info["features"].get(f)]
        platform_skip(f"this CPU ({info['arch']}) lacks the {kernel} kernel (missing {', '.join(missing) or kernel})")


def _row_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = x.astype(np.float64), y.astype(np.float64)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    both_zero = (nx == 0) & (ny == 0)
    cos = (x * y).sum(axis=1) / np.where(both_zero, 1.0, nx * ny)
    return np.where(both_zero, 1.0, cos)


def test_cpu_info_describes_features_and_kernels():
    info = luxical.cpu_info()
    assert set(info) == {
        "arch", "features", "float32_kernels", "int8_kernels", "bfloat16_kernels",
        "float32_kernel", "int8_kernel", "bfloat16_kernel",
    }
    assert set(info["features"]) == {
        "avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "avx512bf16", "amx_tile", "amx_int8", "amx_bf16", "amx_os"
    }
    assert all(isinstance(v, bool) for v in info["features"].values())
    assert info["float32_kernels"][0] == "portable" and info["int8_kernels"][0] == "portable"
    assert info["float32_kernel"] in info["float32_kernels"]
    assert info["int8_kernel"] in info["int8_kernels"]
    assert info["bfloat16_kernels"][0] == "portable" and info["bfloat16_kernel"] in info["bfloat16_kernels"]
    assert ("avx512-bf16" in info["bfloat16_kernels"]) == (info["features"]["avx512f"] and info["features"]["avx512bf16"])
    assert ("amx-bf16" in info["bfloat16_kernels"]) == all(
        info["features"][f] for f in ("avx512f", "amx_tile", "amx_bf16", "amx_os")
    )
    for kernel in KERNELS:
        has = all(info["features"][f] for f in NEEDS[kernel]) and (kernel == "portable" or info["arch"] == "x86_64")
        assert _has_family(info, kernel) == has, (kernel, info)
    assert "amx" not in info["float32_kernels"]
    vnni = all(info["features"][f] for f in ("avx512f", "avx512bw", "avx512vnni"))
    assert ("avx512-vnni" in info["int8_kernels"]) == vnni
    # The OS's permission is only asked (and only meaningful) where the CPU has the tiles.
    assert not info["features"]["amx_os"] or info["features"]["amx_tile"]
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(encoding="ascii", errors="replace").splitlines() if cpuinfo.exists() else []
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
    if flags is not None:  # Linux: the kernel's own reading of CPUID agrees with ours
        for name in ("avx2", "fma", "amx_tile", "amx_int8", "amx_bf16"):
            assert info["features"][name] == (name in flags), name
        assert info["features"]["avx512vnni"] == ("avx512_vnni" in flags)
        assert info["features"]["avx512bf16"] == ("avx512_bf16" in flags)


@pytest.mark.parametrize("kernel", KERNELS)
def test_forced_kernel_is_the_one_running(kernel, run):
    _require_kernel(kernel)
    result = run(kernel)
    info = result["info"]
    assert info["float32_kernel"] == FLOAT32[kernel]
    # The int8 kernel of the family, or the best below it (AVX-512 without VNNI: avx2).
    family_int8 = INT8[kernel]
    want_int8 = family_int8 if family_int8 in info["int8_kernels"] else "avx2"
    assert info["int8_kernel"] == want_int8
    # The bfloat16 kernel of the family, or the best below it.
    below = [BF16[k] for k in KERNELS[: KERNELS.index(kernel) + 1] if BF16[k] in info["bfloat16_kernels"]]
    assert info["bfloat16_kernel"] == below[-1]
    assert result["warnings"] == []


@pytest.mark.parametrize("kernel", KERNELS[1:])
def test_float32_kernel_embeds_like_portable(kernel, run):
    _require_kernel(kernel)
    got, want = run(kernel)["emb"], run("portable")["emb"]
    for model in MODELS:
        g, w = got[f"{model}-float32"], want[f"{model}-float32"]
        assert g.shape == w.shape and g.shape[0] == N_TEXTS + 4
        assert unit_or_zero_rows(g)
        cos = _row_cosines(g, w)
        assert cos.min() >= 0.999999, f"{model}: lowest row cosine {cos.min()} (row {cos.argmin()})"
        assert np.array_equal(np.linalg.norm(g, axis=1) == 0, np.linalg.norm(w, axis=1) == 0)


@pytest.mark.parametrize("kernel", KERNELS[1:])
def test_int8_kernels_embed_like_portable(kernel, run):
    """The int8 hidden layers give bit-identical results on every kernel (exact int32
    sums of the same quantised operands; gemm.rs::every_int8_kernel_is_bit_identical_to_portable
    checks the layers alone). The output layer stays float32, so whole embeddings are
    bit-identical between kernels whose float32 kernels are (AVX2 and AVX-512) and agree
    to float rounding with the portable one."""
    _require_kernel(kernel)
    got, want = run(kernel)["emb"], run("portable")["emb"]
    for model in MODELS:
        g, w = got[f"{model}-int8"], want[f"{model}-int8"]
        cos = _row_cosines(g, w)
        assert cos.min() >= 0.999999, f"{model}: lowest row cosine {cos.min()} (row {cos.argmin()})"
    # The fixture model's hidden layers really ran in int8 (it differs from float32).
    assert not np.array_equal(got["small-int8"], got["small-float32"])
    if kernel != "avx2":
        _require_kernel("avx2")
        same = run("avx2")["emb"]
        for model in MODELS:
            g, w = got[f"{model}-int8"], same[f"{model}-int8"]
            assert g.tobytes() == w.tobytes(), f"{model}: {(g != w).any(axis=1).sum()} rows differ from avx2"
            g, w = got[f"{model}-float32"], same[f"{model}-float32"]
            assert g.tobytes() == w.tobytes(), f"{model} float32: {(g != w).any(axis=1).sum()} rows differ from avx2"


@pytest.mark.parametrize("kernel", ["avx512", "amx"])
def test_bfloat16_kernels_embed_like_portable(kernel, run):
    """The bfloat16 hidden layers sum exact products of the same rounded operands in
    float32; AMX adds each pair's products in input order like the portable kernel, AVX-512
    BF16 adds a pair's second product first, and both flush denormals: float rounding."""
    info = luxical.cpu_info()
    if BF16[kernel] not in info["bfloat16_kernels"]:
        platform_skip(f"this CPU lacks the {BF16[kernel]} kernel (features: {info['features']})")
    result = run(kernel)
    assert result["info"]["bfloat16_kernel"] == BF16[kernel]
    got, want = result["emb"], run("portable")["emb"]
    for model in MODELS:
        g, w = got[f"{model}-bfloat16"], want[f"{model}-bfloat16"]
        cos = _row_cosines(g, w)
        assert cos.min() >= 0.999999, f"{model}: lowest row cosine {cos.min()} (row {cos.argmin()})"
    # The fixture model's hidden layers really ran in bfloat16 (it differs from float32).
    assert not np.array_equal(got["small-bfloat16"], got["small-float32"])


def test_unset_chooses_the_best_kernel_the_cpu_has(texts_file, tmp_path):
    result = _embed_in_child(tmp_path, texts_file, {"small": MODELS["small"]})
    info = result["info"]
    assert info["float32_kernel"] == info["float32_kernels"][-1]
    assert info["int8_kernel"] == info["int8_kernels"][-1]
    assert info["bfloat16_kernel"] == info["bfloat16_kernels"][-1]
    assert result["warnings"] == []


def test_unknown_kernel_name_warns_and_uses_the_best(texts_file, tmp_path):
    result = _embed_in_child(tmp_path, texts_file, {"small": MODELS["small"]}, LUXICAL_KERNEL="avx1024")
    assert result["info"]["float32_kernel"] == result["info"]["float32_kernels"][-1]
    assert any("LUXICAL_KERNEL" in w and "avx1024" in w and "portable, avx2, avx512" in w for w in result["warnings"])


def test_no_simd_wins_over_a_forced_kernel_with_a_warning(texts_file, tmp_path):
    result = _embed_in_child(
        tmp_path, texts_file, {"small": MODELS["small"]}, LUXICAL_KERNEL="avx512", LUXICAL_NO_SIMD="1"
    )
    assert result["info"]["float32_kernel"] == "portable" and result["info"]["int8_kernel"] == "portable"
    assert any("LUXICAL_NO_SIMD" in w for w in result["warnings"])


def test_a_kernel_the_cpu_lacks_falls_back_with_a_warning(texts_file, tmp_path):
    info = luxical.cpu_info()
    lacking = [k for k in KERNELS if not _has_family(info, k)]
    if not lacking:
        platform_skip("this CPU has every kernel (the fallback is covered by gemm.rs::kernel_choice_follows_cpu_and_settings)")
    kernel = lacking[-1]
    result = _embed_in_child(tmp_path, texts_file, {"small": MODELS["small"]}, LUXICAL_KERNEL=kernel)
    assert result["info"]["float32_kernel"] == info["float32_kernels"][-1]
    assert result["info"]["int8_kernel"] == info["int8_kernels"][-1]
    assert any(f"LUXICAL_KERNEL={kernel}" in w and "lacks" in w for w in result["warnings"])
