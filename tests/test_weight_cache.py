"""The weight cache shared by processes, and the identity of a loaded model.

Every cache test runs real processes, because the failures are between processes: workers
started together (as Spark, Dask and Ray start them), a loader killed while writing, a
cache cleared under a live mapping, a worker that unpickles a model whose file was
replaced, several processes saving to one path. Expectations come from the kernel (the
inode each process maps in /proc/PID/maps, bytes each process wrote in /proc/PID/io,
file modes) and from embeddings of models built here with known differences.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import luxical
from luxical import Embedder
from luxical.errors import LuxicalError

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="platform: needs Linux /proc (maps, io)"
)

TEXTS = ["a cat sits outside", "the compiler rejects this program", "", "zebra crossing at dawn"]


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def base() -> Embedder:
    """The model shipped in the package (29,523 -> 383 -> 383; its cache file is ~46 MB)."""
    return Embedder.load(luxical.default_model_path(), mmap=False)


def _variant(base: Embedder, k: int) -> Embedder:
    """`base` with its output layer's rows rolled by `k`: same shapes, other embeddings."""
    layers = base.layers
    layers[-1] = np.roll(layers[-1], k, axis=0)
    return Embedder.from_arrays(tokenizer_json=base.tokenizer_json, ngrams=base.ngrams, idf=base.idf, layers=layers)


def _wide(base: Embedder) -> Embedder:
    """A model with a 1024-wide first layer (its cache file is ~125 MB: slow to write)."""
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((1024, base.vocab_size), dtype=np.float32)
    w1 = rng.standard_normal((base.dim, 1024), dtype=np.float32)
    return Embedder.from_arrays(tokenizer_json=base.tokenizer_json, ngrams=base.ngrams, idf=base.idf, layers=[w0, w1])


def _env(cache_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LUXICAL_CACHE_DIR": str(cache_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LUXICAL_NUM_THREADS": "1",
    }


def _entries(cache_dir: Path) -> tuple[list[Path], list[Path]]:
    """(cache files, temporary files) in the cache directory."""
    if not cache_dir.exists():
        return [], []
    names = sorted(cache_dir.iterdir())
    return [p for p in names if p.suffix == ".lxw"], [p for p in names if p.name.endswith(".partial")]


# A worker: imports everything, says "ready", loads on "go" (the barrier), reports what the
# kernel says it wrote and maps, then holds its mapping until told to exit.
_LOADER = r"""
import json, os, signal, sys
import luxical

if os.environ.get("TEST_DEFAULT_SIGXFSZ"):  # Python ignores it; the kernel's default kills
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

def wchar():
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))

print("ready", flush=True)
sys.stdin.readline()
before = wchar()
emb = luxical.Embedder.load(sys.argv[1], mmap=True)
written = wchar() - before
with open("/proc/self/maps") as f:
    maps = [line.rstrip("\n") for line in f if ".lxw" in line]
print(json.dumps({
    "written": written,
    "inodes": sorted({int(line.split()[4]) for line in maps}),
    "deleted": [line for line in maps if line.endswith("(deleted)")],
    "mapped": emb.weights_mapped,
    "emb": emb(sys.argv[2:]).tolist(),
}), flush=True)
for line in sys.stdin:
    if line.strip() == "embed":
        print(json.dumps(emb(sys.argv[2:]).tolist()), flush=True)
"""


def _start(model: Path, cache_dir: Path, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", _LOADER, str(model), *TEXTS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**_env(cache_dir), **(env or {})},
        **kw,
    )
    assert p.stdout.readline().strip() == "ready"
    return p


def _go(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def _finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.communicate("", timeout=120)


# ------------------------------------------------------ processes that start together
@pytest.mark.parametrize("n_procs", [4])
def test_processes_started_together_convert_once_and_map_one_file(base, tmp_path, n_procs):
    cache_dir = tmp_path / "weights"
    procs = [_start(luxical.default_model_path(), cache_dir) for _ in range(n_procs)]
    try:
        _go(procs)  # all load at once, into an empty cache
        reports = [json.loads(p.stdout.readline()) for p in procs]
        (cache_file,), partials = _entries(cache_dir)
        size, inode = cache_file.stat().st_size, cache_file.stat().st_ino
        for r in reports:
            assert r["mapped"]
            assert r["inodes"] == [inode], "every process must map the one cache file"
            assert r["deleted"] == [], "no process may keep a replaced (deleted) cache file mapped"
        # One conversion: exactly one process wrote the cache file, the others wrote nothing.
        writers = [r["written"] for r in reports if r["written"] >= size]
        assert len(writers) == 1, [r["written"] for r in reports]
        assert all(r["written"] < 1 << 20 for r in reports if r["written"] < size)
        assert partials == []
        want = base(TEXTS)
        for r in reports:
            np.testing.assert_array_equal(np.array(r["emb"], dtype=np.float32), want)
    finally:
        _finish(procs)


# ------------------------------------------------------------- temporary files left behind
def _kill_while_writing(model: Path, cache_dir: Path) -> None:
    """Runs a loader that the kernel kills (SIGXFSZ) once it has written 4 MiB of the
    cache file: a loader killed mid-write, at a deterministic point."""
    limit = 4 << 20

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = _start(model, cache_dir, env={"TEST_DEFAULT_SIGXFSZ": "1"}, preexec_fn=limit_file_size)
    _go([p])
    p.communicate(timeout=120)
    assert p.returncode == -signal.SIGXFSZ, p.returncode
    files, partials = _entries(cache_dir)
    assert files == [] and len(partials) == 1 and partials[0].stat().st_size == limit  # precondition


@pytest.mark.parametrize("then_load", ["same model", "another model"])
def test_a_loader_killed_while_writing_leaves_no_partial_file(base, tmp_path, then_load):
    cache_dir = tmp_path / "weights"
    _kill_while_writing(luxical.default_model_path(), cache_dir)
    if then_load == "same model":
        model = luxical.default_model_path()
    else:
        model = tmp_path / "other.npz"
        _variant(base, 1).save(model)
    p = _start(model, cache_dir)
    try:
        _go([p])
        report = json.loads(p.stdout.readline())
        assert report["mapped"]
        files, partials = _entries(cache_dir)
        assert partials == [], "the killed loader's temporary file must be removed"
        assert len(files) == 1 and report["inodes"] == [files[0].stat().st_ino]
    finally:
        _finish([p])


def test_a_live_writers_temporary_file_is_left_alone(base, tmp_path):
    wide = tmp_path / "wide.npz"
    _wide(base).save(wide)
    other = tmp_path / "other.npz"
    _variant(base, 2).save(other)
    cache_dir = tmp_path / "weights"
    for attempt in range(5):
        shutil.rmtree(cache_dir, ignore_errors=True)
        writer = _start(wide, cache_dir)
        try:
            _go([writer])
            deadline = time.monotonic() + 120
            while not _entries(cache_dir)[1] and writer.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)
            os.kill(writer.pid, signal.SIGSTOP)  # a slow writer, in the middle of writing
            partials = _entries(cache_dir)[1]
            if not partials:  # finished before we caught it: try again
                os.kill(writer.pid, signal.SIGCONT)
                continue
            # Another process loads another model through the same cache meanwhile.
            other_loader = _start(other, cache_dir)
            _go([other_loader])
            assert json.loads(other_loader.stdout.readline())["mapped"]
            _finish([other_loader])
            assert _entries(cache_dir)[1] == partials, "a live writer's temporary file was removed"
            os.kill(writer.pid, signal.SIGCONT)
            report = json.loads(writer.stdout.readline())
            assert report["mapped"] and report["deleted"] == []
            files, partials = _entries(cache_dir)
            assert partials == [] and len(files) == 2
            return
        finally:
            if writer.poll() is None:
                os.kill(writer.pid, signal.SIGCONT)
            _finish([writer])
    pytest.fail("the writer finished before its temporary file could be seen, 5 times")


# ------------------------------------------------------------- what may be done to the cache
def test_cache_files_are_read_only_and_clearing_never_breaks_a_live_mapping(base, tmp_path):
    cache_dir = tmp_path / "weights"
    p = _start(luxical.default_model_path(), cache_dir)
    try:
        _go([p])
        report = json.loads(p.stdout.readline())
        (cache_file,), _ = _entries(cache_dir)
        assert stat.S_IMODE(cache_file.stat().st_mode) & 0o222 == 0  # read-only (0444 under umask 022)
        if os.geteuid() != 0:  # root ignores file modes
            with pytest.raises(PermissionError):
                open(cache_file, "r+b")
        removed = luxical.clear_weight_cache(cache_dir)
        assert removed == 1 and _entries(cache_dir) == ([], [])
        # The process that maps the removed file keeps embedding (no SIGBUS: unlinked, not
        # truncated), with the same results.
        p.stdin.write("embed\n")
        p.stdin.flush()
        again = json.loads(p.stdout.readline())
        np.testing.assert_array_equal(np.array(again, dtype=np.float32), np.array(report["emb"], dtype=np.float32))
        # The next loader rebuilds the cache.
        q = _start(luxical.default_model_path(), cache_dir)
        _go([q])
        assert json.loads(q.stdout.readline())["mapped"]
        _finish([q])
        assert len(_entries(cache_dir)[0]) == 1
    finally:
        _finish([p])
    assert p.returncode == 0


def test_clear_weight_cache_defaults_to_the_cache_dir_and_keeps_other_files(base, tmp_path, monkeypatch):
    cache_dir = tmp_path / "weights"
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(cache_dir))
    Embedder.load(luxical.default_model_path(), mmap=True)
    (cache_dir / "notes.txt").write_text("not ours")
    assert luxical.clear_weight_cache() == 1
    assert sorted(p.name for p in cache_dir.iterdir()) == ["notes.txt"]
    assert luxical.clear_weight_cache(tmp_path / "missing") == 0


# ------------------------------------------------------------------------ model identity
def _replace_by_save(src: Embedder, path: Path) -> None:
    src.save(path)


def _replace_in_place(src: Embedder, path: Path) -> None:
    # Same inode, same size, likely the same mtime tick: only the content tells.
    data = src.to_bytes()
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def _replace_by_rename(src: Embedder, path: Path) -> None:
    tmp = path.with_name("incoming.npz")
    src.save(tmp)
    os.replace(tmp, path)


@pytest.mark.parametrize("replace", [_replace_by_save, _replace_in_place, _replace_by_rename])
@pytest.mark.parametrize("mmap", [False, True])
def test_load_notices_a_replaced_model_file(base, tmp_path, monkeypatch, replace, mmap):
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(tmp_path / "weights"))
    a, b = _variant(base, 1), _variant(base, 2)
    path = tmp_path / "model.npz"
    path.write_bytes(a.to_bytes())
    first = luxical.load(path, mmap=mmap)
    assert luxical.load(path, mmap=mmap) is first  # unchanged file: the cached model
    np.testing.assert_array_equal(first(TEXTS), a(TEXTS))
    replace(b, path)
    second = luxical.load(path, mmap=mmap)
    np.testing.assert_array_equal(second(TEXTS), b(TEXTS))
    np.testing.assert_array_equal(luxical.embed(TEXTS, model=path), b(TEXTS))
    assert second.fingerprint != first.fingerprint
    assert luxical.load(path, mmap=mmap) is second


def test_fingerprint_names_the_model_not_the_path(base, tmp_path):
    a, b = _variant(base, 1), _variant(base, 2)
    a.save(tmp_path / "a.npz")
    shutil.copy(tmp_path / "a.npz", tmp_path / "a_copy.npz")
    b.save(tmp_path / "b.npz")
    fa = Embedder.load(tmp_path / "a.npz").fingerprint
    assert isinstance(fa, str) and len(fa) == 16
    assert Embedder.load(tmp_path / "a_copy.npz").fingerprint == fa
    assert Embedder.from_bytes((tmp_path / "a.npz").read_bytes()).fingerprint == fa
    assert a.fingerprint == fa  # built in memory: the fingerprint of its bytes
    assert Embedder.load(tmp_path / "b.npz").fingerprint != fa
    assert Embedder.load(tmp_path / "a.npz").with_precision("int8").fingerprint == fa


_UNPICKLE = r"""
import pickle, sys, json
import luxical
try:
    emb = pickle.loads(sys.stdin.buffer.read())
    print(json.dumps({"emb": emb(sys.argv[1:]).tolist(), "fingerprint": getattr(emb, "fingerprint", None)}))
except luxical.LuxicalError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def _unpickle_in_worker(blob: bytes, cache_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _UNPICKLE, *TEXTS], input=blob, capture_output=True, env=_env(cache_dir), timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


@pytest.mark.parametrize("replace", [_replace_by_save, _replace_in_place])
def test_a_worker_never_embeds_with_another_model_than_the_pickled_one(base, tmp_path, replace):
    a, b = _variant(base, 1), _variant(base, 2)
    path = tmp_path / "model.npz"
    a.save(path)
    emb = Embedder.load(path)
    blob = pickle.dumps(emb)
    assert len(blob) < 10_000  # by path
    replace(b, path)  # after pickling, before the worker unpickles
    got = _unpickle_in_worker(blob, tmp_path / "weights")
    if "emb" in got:
        worker = np.array(got["emb"], dtype=np.float32)
        assert not np.array_equal(worker, b(TEXTS)), "the worker silently embeds with the replaced file's model"
    assert got.get("error") == "ModelFileChangedError", got
    assert str(path) in got["message"] and emb.fingerprint in got["message"]


@pytest.mark.parametrize("replace", [_replace_by_save, _replace_in_place])
def test_pickling_after_the_file_changed_ships_the_loaded_model(base, tmp_path, replace):
    a, b = _variant(base, 1), _variant(base, 2)
    path = tmp_path / "model.npz"
    a.save(path)
    emb = Embedder.load(path)
    replace(b, path)  # the driver's file changes under its loaded model
    got = _unpickle_in_worker(pickle.dumps(emb), tmp_path / "weights")
    np.testing.assert_array_equal(np.array(got["emb"], dtype=np.float32), a(TEXTS))
    assert got["fingerprint"] == emb.fingerprint


def test_unpickling_a_replaced_file_in_process_raises(base, tmp_path):
    a, b = _variant(base, 3), _variant(base, 4)
    path = tmp_path / "model.npz"
    a.save(path)
    blob = pickle.dumps(luxical.load(path))
    b.save(path)
    with pytest.raises(LuxicalError) as info:
        pickle.loads(blob)
    assert type(info.value).__name__ == "ModelFileChangedError" and str(path) in str(info.value)


# ------------------------------------------------------------------ concurrent Model.save
_SAVER = r"""
import sys, traceback
import luxical
emb = luxical.Embedder.load(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
try:
    for _ in range(int(sys.argv[3])):
        emb.save(sys.argv[2])
except Exception:
    traceback.print_exc()
    sys.exit(1)
"""


def test_processes_saving_to_one_path_each_leave_a_valid_model(base, tmp_path):
    sources = []
    for k in range(4):
        sources.append(tmp_path / f"src{k}.npz")
        _variant(base, k + 1).save(sources[-1])
    target = tmp_path / "out" / "model.npz"
    target.parent.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(src), str(target), "6"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path / "weights"),
        )
        for src in sources
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    _go(procs)
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.npz"]  # no temporary file left
    got = Embedder.load(target)(TEXTS)
    candidates = [Embedder.load(s)(TEXTS) for s in sources]
    assert any(np.array_equal(got, c) for c in candidates)
