"""`luxical embed` over a whole corpus: directories and globs in, one shard per input out,
a manifest and _SUCCESS, atomic shards under SIGTERM/SIGKILL, --resume, file:// URIs,
truncation counts, a memory bound in bytes, and int8 outputs that carry their scale.

Expectations come from the Python API (`luxical.load()(texts)`), not from the CLI."""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import luxical
from luxical.arrow import from_fixed_size_list
from luxical.quantize import INT8_SCALE, dequantize, quantize

CLI = [sys.executable, "-m", "luxical", "embed", "--no-progress"]


def embed_cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def embeddings(path) -> np.ndarray:
    return from_fixed_size_list(pq.read_table(path).column("embedding"))


@pytest.fixture(scope="module")
def model():
    return luxical.load()


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture()
def corpus(tmp_path, real_texts):
    """A directory of four formats in two levels (and a file of another type)."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    texts = {
        "a.parquet": real_texts[:40],
        "sub/b.jsonl": real_texts[40:70],
        "sub/c.csv.gz": real_texts[70:95],
        "d.txt": [t.replace("\n", " ").replace("\r", " ") for t in real_texts[95:120]],
    }
    pq.write_table(pa.table({"text": texts["a.parquet"]}), root / "a.parquet", row_group_size=16)
    (root / "sub" / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts["sub/b.jsonl"]))
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text"])
    w.writerows([t] for t in texts["sub/c.csv.gz"])
    (root / "sub" / "c.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode()))
    (root / "d.txt").write_text("".join(t + "\n" for t in texts["d.txt"]))
    (root / "NOTES.md").write_text("not an input")
    return root, texts


def test_a_directory_gives_one_shard_per_input_a_manifest_and_success(corpus, tmp_path, model):
    root, texts = corpus
    out = tmp_path / "out"
    proc = embed_cli(root, "--out", out, "--batch-size", "7")
    assert proc.returncode == 0, proc.stderr
    assert "NOTES.md" in proc.stderr  # the skipped file is named
    assert _files(out) == ["_SUCCESS", "_manifest.json", "a.parquet", "d.parquet", "sub/b.parquet", "sub/c.parquet"]
    for name, docs in texts.items():
        shard = out / (name.split(".")[0] + ".parquet")
        np.testing.assert_array_equal(embeddings(shard), model(docs), err_msg=name)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["model"]["fingerprint"] == model.fingerprint
    assert manifest["luxical_version"] == luxical.__version__
    assert manifest["settings"]["text_column"] == "text" and manifest["settings"]["quantize"] is None
    by_output = {r["output"]: r for r in manifest["inputs"]}
    assert sorted(by_output) == ["a.parquet", "d.parquet", "sub/b.parquet", "sub/c.parquet"]
    for name, docs in texts.items():
        rec = by_output[name.split(".")[0] + ".parquet"]
        assert rec["input"] == str(root / name)
        assert rec["rows"] == len(docs)
        assert rec["bytes"] == sum(len(t.encode()) for t in docs)
        assert rec["file_bytes"] == (root / name).stat().st_size
        assert rec["truncated"] == 0 and rec["seconds"] >= 0
    assert manifest["totals"]["rows"] == sum(map(len, texts.values()))
    # The directory reads back as one dataset (the manifest and _SUCCESS are ignored).
    assert pq.read_table(out).num_rows == manifest["totals"]["rows"]


def test_globs_name_shards_relative_to_their_fixed_part(corpus, tmp_path, model):
    root, texts = corpus
    out = tmp_path / "g"
    proc = embed_cli(f"{root}/**/*.jsonl", f"{root}/*.txt", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert _files(out) == ["_SUCCESS", "_manifest.json", "d.parquet", "sub/b.parquet"]
    np.testing.assert_array_equal(embeddings(out / "sub" / "b.parquet"), model(texts["sub/b.jsonl"]))
    assert embed_cli(f"{root}/*.nothing", "--out", tmp_path / "h").stderr.count("no files match") == 1


def test_inputs_that_would_share_a_shard_are_refused_before_anything_is_written(tmp_path):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "part.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "x" / "part.txt").write_text("hello\n")
    out = tmp_path / "out"
    proc = embed_cli(tmp_path / "x" / "part.jsonl", tmp_path / "y" / "part.jsonl", "--out", out)
    assert proc.returncode == 2 and "would both be written to" in proc.stderr, proc.stderr
    assert str(tmp_path / "x" / "part.jsonl") in proc.stderr and str(tmp_path / "y" / "part.jsonl") in proc.stderr
    proc = embed_cli(tmp_path / "x", "--out", out)
    assert proc.returncode == 2 and "part.jsonl" in proc.stderr and "part.txt" in proc.stderr, proc.stderr
    assert not out.exists()
    # Their common directory keeps them apart.
    (tmp_path / "x" / "part.txt").unlink()
    proc = embed_cli(tmp_path / "x", tmp_path / "y", "--out", out)
    assert proc.returncode == 2  # both give part.parquet at the top of --out
    proc = embed_cli(f"{tmp_path}/*/part.jsonl", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert _files(out) == ["_SUCCESS", "_manifest.json", "x/part.parquet", "y/part.parquet"]


def test_an_output_directory_is_not_overwritten_and_resume_checks_the_settings(corpus, tmp_path, fixture_model_path, model):
    root, _ = corpus
    out = tmp_path / "out"
    assert embed_cli(root, "--out", out).returncode == 0
    again = embed_cli(root, "--out", out)
    assert again.returncode == 2 and "--resume" in again.stderr
    other = embed_cli(root, "--out", out, "--resume", "--model", fixture_model_path)
    assert other.returncode == 2, other.stderr
    assert model.fingerprint in other.stderr and luxical.load(fixture_model_path).fingerprint in other.stderr
    quant = embed_cli(root, "--out", out, "--resume", "--quantize", "int8")
    assert quant.returncode == 2 and "quantize None there, 'int8' now" in quant.stderr, quant.stderr
    # A foreign file at a shard's name is never overwritten.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.parquet").write_bytes(b"someone else's")
    proc = embed_cli(root, "--out", foreign)
    assert proc.returncode == 2 and "a.parquet exists" in proc.stderr
    assert (foreign / "a.parquet").read_bytes() == b"someone else's"
    # --resume belongs to directories.
    single = embed_cli(root / "a.parquet", "--out", tmp_path / "one.parquet", "--resume")
    assert single.returncode == 2 and "--resume" in single.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_run_leaves_only_complete_shards_and_resume_finishes_it(tmp_path, signum, model):
    root = tmp_path / "in"
    root.mkdir()
    n_files, n_lines = 10, 8000
    expected = {}
    for f in range(n_files):
        lines = [f"file {f} document {i} about packages, libraries and the tools that build them" for i in range(n_lines)]
        (root / f"part-{f:02d}.txt").write_text("".join(t + "\n" for t in lines))
        expected[f"part-{f:02d}.parquet"] = lines
    out = tmp_path / "out"
    proc = subprocess.Popen(CLI + [str(root), "--out", str(out), "--batch-size", "100", "--threads", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "part-00.parquet").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.01)
    time.sleep(0.2)  # into a later shard
    proc.send_signal(signum)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode in (128 + signum, -signum), stderr
    assert "Traceback" not in stderr, stderr
    finals = [p for p in out.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")]
    assert finals, "stopped before the first shard was complete"
    assert len(finals) < n_files, "stopped too late to test anything"
    for p in finals:  # every file at a final name is complete and readable
        assert pq.read_table(p).num_rows == n_lines, p
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    if signum == signal.SIGTERM:
        assert leftovers == [], leftovers  # unwound: its temporary shard removed
    else:
        assert all(n.endswith(".partial") for n in leftovers), leftovers
    assert not (out / "_SUCCESS").exists()
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] is False
    recorded = {r["output"]: r for r in manifest["inputs"]}
    assert recorded and set(recorded) <= {p.name for p in finals}
    mtimes = {name: (out / name).stat().st_mtime_ns for name in recorded}

    resumed = embed_cli(root, "--out", out, "--resume", "--batch-size", "100")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(recorded)} already complete, skipped" in resumed.stderr, resumed.stderr
    assert _files(out) == ["_SUCCESS", "_manifest.json"] + sorted(expected)  # temporary files cleaned up
    for name in recorded:  # skipped: not rewritten
        assert (out / name).stat().st_mtime_ns == mtimes[name], name
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] is True and [r["output"] for r in manifest["inputs"]] == sorted(expected)
    for r in manifest["inputs"]:
        if r["output"] in recorded:
            assert r == recorded[r["output"]]
    first_new = next(n for n in sorted(expected) if n not in recorded)
    for name in (next(iter(recorded)), first_new):
        np.testing.assert_array_equal(embeddings(out / name), model(expected[name]), err_msg=name)
    # The stopped-and-resumed directory holds the same bytes as an uninterrupted run's.
    full = tmp_path / "uninterrupted"
    whole = embed_cli(root, "--out", full, "--batch-size", "100")
    assert whole.returncode == 0, whole.stderr
    for name in sorted(expected):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name


def test_file_uris_in_and_out(corpus, tmp_path, model):
    root, texts = corpus
    out_uri = (tmp_path / "uri-out").as_uri()
    proc = embed_cli(root.as_uri(), "--out", out_uri)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "uri-out"
    assert _files(out) == ["_SUCCESS", "_manifest.json", "a.parquet", "d.parquet", "sub/b.parquet", "sub/c.parquet"]
    np.testing.assert_array_equal(embeddings(out / "sub" / "c.parquet"), model(texts["sub/c.csv.gz"]))
    manifest = json.loads((out / "_manifest.json").read_text())
    assert {r["input"] for r in manifest["inputs"]} == {(root / n).as_uri() for n in texts}
    # One file, through a URI glob, written under a temporary name and moved.
    one = (tmp_path / "one.parquet").as_uri()
    proc = embed_cli(root.as_uri() + "/sub/*.jsonl", (root / "a.parquet").as_uri(), "--out", one)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(embeddings(tmp_path / "one.parquet"), model(texts["sub/b.jsonl"] + texts["a.parquet"]))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    missing = embed_cli((root / "none.jsonl").as_uri(), "--out", (tmp_path / "x.parquet").as_uri())
    assert missing.returncode == 2 and "none.jsonl: no such file" in missing.stderr


def _utf8_prefix(text: str, n_bytes: int) -> str:
    """The longest prefix of whole characters within n_bytes of UTF-8."""
    out, used = [], 0
    for ch in text:
        size = len(ch.encode("utf-8"))
        if used + size > n_bytes:
            break
        out.append(ch)
        used += size
    return "".join(out)


def test_max_bytes_and_max_tokens_truncate_and_are_counted(tmp_path, real_texts, model):
    docs = [t for t in real_texts[:60]] + ["é" * 40, "日本語のテキスト" * 10, "short", ""]
    root = tmp_path / "in"
    root.mkdir()
    pq.write_table(pa.table({"text": docs}), root / "p.parquet")
    (root / "j.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    limit = 101  # odd: cuts land inside 2- and 3-byte characters
    out = tmp_path / "out"
    proc = embed_cli(root, "--out", out, "--max-bytes", limit, "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    cut = [_utf8_prefix(t, limit) for t in docs]
    n_cut = sum(len(t.encode()) > limit for t in docs)
    assert 10 < n_cut < len(docs)
    for name in ("p.parquet", "j.parquet"):
        np.testing.assert_array_equal(embeddings(out / name), model(cut), err_msg=name)
    manifest = json.loads((out / "_manifest.json").read_text())
    for r in manifest["inputs"]:
        assert (r["truncated"], r["truncated_max_bytes"], r["truncated_max_tokens"]) == (n_cut, n_cut, 0)
        assert r["bytes"] == sum(len(t.encode()) for t in docs)  # as read, before the cut
    assert f"{2 * n_cut} document(s) truncated" in proc.stderr

    tokens = 20
    n_long = sum(len(ids) > tokens for ids in model.tokenize(docs, max_tokens=None))
    assert 10 < n_long < len(docs)
    one = tmp_path / "t.parquet"
    proc = embed_cli(root / "p.parquet", "--out", one, "--max-tokens", tokens)
    assert proc.returncode == 0, proc.stderr
    assert f"{n_long} document(s) truncated (0 by --max-bytes, {n_long} by --max-tokens)" in proc.stderr
    np.testing.assert_array_equal(embeddings(one), model(docs, max_tokens=tokens))
    assert not np.array_equal(embeddings(one), model(docs))


def _peak_rss_mb(args: list) -> float:
    """Peak RSS (MB) of one CLI subprocess: ru_maxrss of the children waited for, taken in
    a fresh interpreter so that no earlier child counts."""
    code = (
        "import resource, subprocess, sys; "
        f"p = subprocess.run({CLI + [str(a) for a in args]!r}, capture_output=True, text=True); "
        "assert p.returncode == 0, p.stderr; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1]) / 1024  # Linux: KiB


@pytest.mark.skipif(sys.platform != "linux", reason="platform: ru_maxrss is in KiB on Linux only")
def test_memory_is_bounded_by_batch_bytes_not_by_the_shard(tmp_path, real_texts):
    # 200 documents of 1 MB each (200 MB of text) in one row group; pages of ~1 MB, as
    # Spark and most writers make them (one whole-column page would have to be read whole).
    blob = " ".join(real_texts)
    docs = [(blob * 3)[i * 997 : i * 997 + 1_000_000] for i in range(200)]
    src = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": docs}), src, use_dictionary=False, write_batch_size=1, data_page_size=1 << 20)
    tiny = tmp_path / "tiny.parquet"
    pq.write_table(pa.table({"text": ["a short document"]}), tiny)
    batch_bytes = 16 << 20
    base = _peak_rss_mb([tiny, "--out", tmp_path / "t.parquet", "--threads", "1"])
    peak = _peak_rss_mb([src, "--out", tmp_path / "o.parquet", "--threads", "1", "--batch-bytes", batch_bytes])
    # The README's bound: base + 6 x batch bytes + threads x 100 B x tokens of the longest
    # document embedded (~250k here) + 32 MB of allocator slack. Measured on the development
    # machine: base ~185 MB, peak ~280 MB; the whole shard's text alone is 200 MB.
    bound = base + 6 * batch_bytes / 2**20 + 1 * 100 * 250_000 / 2**20 + 32
    assert peak <= bound, (peak, base, bound)
    assert bound - base < 200  # the bound is below holding the shard's text
    assert pq.ParquetFile(tmp_path / "o.parquet").metadata.num_rows == 200


def test_int8_outputs_carry_their_scale_and_dequantize_reads_it(tmp_path, real_texts, model):
    texts = real_texts[:300]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    emb = model(texts)
    out = tmp_path / "q.parquet"
    assert embed_cli(src, "--out", out, "--quantize", "int8").returncode == 0
    schema = pq.read_schema(out)
    record = json.loads(schema.field("embedding").metadata[b"luxical"])
    assert record == {"precision": "int8", "dim": model.dim, "scale": INT8_SCALE}
    assert json.loads(schema.metadata[b"luxical"])["columns"]["embedding"] == record
    codes = embeddings(out)
    np.testing.assert_array_equal(codes, quantize(emb, "int8", limit=INT8_SCALE))
    back = dequantize(out)  # no arguments: the file says int8 at 0.6
    assert back.dtype == np.float32 and back.shape == emb.shape
    assert np.abs(back - emb).max() <= INT8_SCALE / 127 / 2 + 1e-6  # no value beyond ±0.6 here
    np.testing.assert_array_equal(dequantize(pq.read_table(out)), back)
    np.testing.assert_array_equal(dequantize(out, "int8", limit=INT8_SCALE), back)
    with pytest.raises(ValueError, match=r"scale 0\.6, but limit=0\.5"):
        dequantize(out, limit=0.5)
    with pytest.raises(ValueError, match="int8 codes, but precision='uint8'"):
        dequantize(out, "uint8")
    # Bare codes keep the old defaults (uint8, limit 0.5).
    np.testing.assert_array_equal(dequantize(codes, "int8", limit=0.5), codes.astype(np.float32) * np.float32(0.5 / 127))
    # An explicit scale, uint8 (the reference's 0.5 by default) and binary (its dim).
    out2 = tmp_path / "dir"
    assert embed_cli(src, "--out", out2, "--quantize", "int8", "--scale", "0.4").returncode == 0
    np.testing.assert_array_equal(embeddings(out2 / "in.parquet"), quantize(emb, "int8", limit=0.4))
    np.testing.assert_array_equal(dequantize(out2 / "in.parquet"), dequantize(quantize(emb, "int8", limit=0.4), "int8", limit=0.4))
    assert json.loads((out2 / "_manifest.json").read_text())["settings"]["scale"] == 0.4
    u8 = tmp_path / "u.parquet"
    assert embed_cli(src, "--out", u8, "--quantize", "uint8").returncode == 0
    np.testing.assert_array_equal(dequantize(u8), dequantize(quantize(emb, "uint8"), "uint8"))
    b = tmp_path / "b.parquet"
    assert embed_cli(src, "--out", b, "--quantize", "binary").returncode == 0
    np.testing.assert_array_equal(dequantize(b), dequantize(quantize(emb, "binary"), "binary", dim=model.dim))
    assert dequantize(b).shape == emb.shape
    bad = embed_cli(src, "--out", tmp_path / "x.parquet", "--quantize", "binary", "--scale", "0.5")
    assert bad.returncode == 2 and "--scale" in bad.stderr
    # luxical diagnose reads int8 codes at their recorded scale.
    diag = subprocess.run([sys.executable, "-m", "luxical", "diagnose", str(out2 / "in.parquet"), "--json"], capture_output=True, text=True)
    assert diag.returncode == 0, diag.stderr
    assert json.loads(diag.stdout)["dequantized"] == ["int8"]


# ------------------------------------------------------------------ fsspec URIs, in process


@pytest.fixture()
def memory_fs(tmp_path):
    """fsspec's in-memory filesystem (`memory://`: the fsspec fallback of the CLI's URI
    handling, since pyarrow has no such filesystem) under a folder of this test's own (its
    store is one per process), emptied afterwards."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/{tmp_path.name}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def embed_in_process(*args) -> int:
    """`luxical embed --no-progress ARGS` through the CLI's entry point, in this process
    (where the memory filesystem is)."""
    from luxical import cli

    return cli.main(["embed", "--no-progress", *[str(a) for a in args]])


def _memory_shard(fs, path: str) -> np.ndarray:
    return from_fixed_size_list(pq.read_table(path, filesystem=fs).column("embedding"))


def _memory_files(fs, root: str) -> list[str]:
    return sorted(p[len(root) + 1:] for p in fs.find(root))


def test_memory_uris_in_and_out_through_the_fsspec_fallback(memory_fs, real_texts, model, capsys):
    fs, root = memory_fs
    texts = {"a.parquet": real_texts[:30], "sub/b.parquet": real_texts[30:55]}
    written = {}
    for name, docs in texts.items():
        with fs.open(f"memory://{root}/in/{name}", "wb") as f:
            pq.write_table(pa.table({"text": docs}), f, row_group_size=8)
        written[name] = fs.cat(f"{root}/in/{name}")
    fs.pipe(f"memory://{root}/in/sub/notes.md", b"not an input")
    assert embed_in_process(f"memory://{root}/in/**/*.parquet", "--out", f"memory://{root}/out/", "--batch-size", "7") == 0
    assert _memory_files(fs, f"{root}/out") == ["_SUCCESS", "_manifest.json", "a.parquet", "sub/b.parquet"]
    for name, docs in texts.items():
        np.testing.assert_array_equal(_memory_shard(fs, f"{root}/out/{name}"), model(docs), err_msg=name)
    manifest = json.loads(fs.cat(f"{root}/out/_manifest.json"))
    assert manifest["complete"] is True and manifest["model"]["fingerprint"] == model.fingerprint
    by_output = {r["output"]: r for r in manifest["inputs"]}
    assert sorted(by_output) == sorted(texts)
    for name, docs in texts.items():
        rec = by_output[name]
        assert fs.cat(rec["input"]) == written[name]  # the recorded URI names the input
        assert rec["rows"] == len(docs) and rec["bytes"] == sum(len(t.encode()) for t in docs)
        assert rec["file_bytes"] == len(written[name])
        assert isinstance(rec["mtime_ns"], int)  # from fsspec's modified(): --resume can see a rewrite
    assert manifest["totals"]["rows"] == sum(map(len, texts.values()))
    assert "wrote 2 shard(s)" in capsys.readouterr().err

    # Other formats (compressed ones too) from a memory directory into one memory file.
    import csv
    import io

    mixed = {"c.jsonl": real_texts[55:70], "d.csv.gz": real_texts[70:85], "e.txt": [f"line {i} of a text file" for i in range(12)]}
    fs.pipe(f"memory://{root}/mixed/c.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in mixed["c.jsonl"]).encode())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text"])
    w.writerows([t] for t in mixed["d.csv.gz"])
    fs.pipe(f"memory://{root}/mixed/d.csv.gz", gzip.compress(buf.getvalue().encode()))
    fs.pipe(f"memory://{root}/mixed/e.txt", "".join(t + "\n" for t in mixed["e.txt"]).encode())
    assert embed_in_process(f"memory://{root}/mixed", "--out", f"memory://{root}/one.parquet") == 0
    np.testing.assert_array_equal(
        _memory_shard(fs, f"{root}/one.parquet"), model(mixed["c.jsonl"] + mixed["d.csv.gz"] + mixed["e.txt"])
    )
    assert not [p for p in fs.find(root) if posixpath_name(p).startswith(".")]  # no temporary file left

    # Errors name the URI, and nothing is written.
    assert embed_in_process(f"memory://{root}/in/none.jsonl", "--out", f"memory://{root}/x.parquet") == 2
    assert f"memory://{root}/in/none.jsonl: no such file" in capsys.readouterr().err
    assert embed_in_process(f"memory://{root}/nothere/*.parquet", "--out", f"memory://{root}/y") == 2
    assert "nothere/*.parquet: no files match" in capsys.readouterr().err
    assert not fs.exists(f"{root}/x.parquet") and not fs.exists(f"{root}/y")


def posixpath_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def test_memory_uris_resume_a_failed_run(memory_fs, model, capsys):
    fs, root = memory_fs
    docs = {i: [f"file {i} document {j} about packages and the tools that build them" for j in range(40)] for i in range(4)}

    def put(i: int, lines: list[str], truncate: bool = False) -> None:
        data = "".join(t + "\n" for t in lines).encode()
        if i == 2:  # compressed, so that a truncated copy fails to read at its end
            data = gzip.compress(data)[: -20 if truncate else None]
        fs.pipe(f"memory://{root}/in/part-{i}.txt" + (".gz" if i == 2 else ""), data)

    for i, lines in docs.items():
        put(i, lines, truncate=i == 2)  # the third input is damaged: the run stops there
    out = f"memory://{root}/out"
    assert embed_in_process(f"memory://{root}/in", "--out", out) == 2
    assert "part-2.txt.gz: cannot read" in capsys.readouterr().err
    assert _memory_files(fs, f"{root}/out") == ["_manifest.json", "part-0.parquet", "part-1.parquet"]
    manifest = json.loads(fs.cat(f"{root}/out/_manifest.json"))
    assert manifest["complete"] is False and [r["output"] for r in manifest["inputs"]] == ["part-0.parquet", "part-1.parquet"]
    created = {n: fs.info(f"{root}/out/{n}")["created"] for n in ("part-0.parquet", "part-1.parquet")}

    # Without --resume the directory is refused; with it, complete shards are skipped (not
    # rewritten), an input rewritten since (same size) is embedded again, a killed run's
    # temporary file is removed, and the rest is written.
    assert embed_in_process(f"memory://{root}/in", "--out", out) == 2
    assert "--resume" in capsys.readouterr().err
    put(2, docs[2])
    size = fs.size(f"{root}/in/part-1.txt")
    changed = [t.replace("tools", "TOOLS") for t in docs[1]]
    put(1, changed)
    assert fs.size(f"{root}/in/part-1.txt") == size  # only its modification time tells
    fs.pipe(f"memory://{root}/out/.part-3.parquet.0badc0de.partial", b"left by a killed run")
    assert embed_in_process(f"memory://{root}/in", "--out", out, "--resume") == 0
    err = capsys.readouterr().err
    assert "part-1.txt: changed since" in err and "(1 already complete, skipped)" in err, err
    assert _memory_files(fs, f"{root}/out") == ["_SUCCESS", "_manifest.json"] + [f"part-{i}.parquet" for i in range(4)]
    assert fs.info(f"{root}/out/part-0.parquet")["created"] == created["part-0.parquet"]
    expected = {**docs, 1: changed}
    for i, lines in expected.items():
        np.testing.assert_array_equal(_memory_shard(fs, f"{root}/out/part-{i}.parquet"), model(lines), err_msg=str(i))
    manifest = json.loads(fs.cat(f"{root}/out/_manifest.json"))
    assert manifest["complete"] is True and [r["output"] for r in manifest["inputs"]] == [f"part-{i}.parquet" for i in range(4)]
    assert manifest["totals"]["rows"] == 4 * 40
