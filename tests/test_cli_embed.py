"""`luxical embed`: files in, Parquet out, streaming; bad input gives a clear exit."""

from __future__ import annotations

import bz2
import gzip
import json
import os
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
from luxical.arrow import from_fixed_size_list, to_fixed_size_list
from luxical.quantize import quantize

CLI = [sys.executable, "-m", "luxical", "embed", "--no-progress"]


def test_arrow_round_trip():
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    arr = to_fixed_size_list(emb)
    assert arr.type == pa.list_(pa.float32(), 3)
    np.testing.assert_array_equal(from_fixed_size_list(pa.chunked_array([arr[:1], arr[1:]])), emb)


def test_parquet_in_parquet_out_keeps_ids_and_order(real_texts, tmp_path, fixture_model_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"doc{i}" for i in range(len(real_texts))], "text": real_texts}), src, row_group_size=50)
    out = tmp_path / "out.parquet"
    proc = subprocess.run(CLI + [str(src), "--out", str(out), "--model", str(fixture_model_path), "--batch-size", "64"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"doc{i}" for i in range(len(real_texts))]
    got = from_fixed_size_list(table.column("embedding"))
    np.testing.assert_array_equal(got, luxical.Embedder.load(fixture_model_path)(real_texts))


def test_jsonl_and_text_with_quantisation(real_texts, tmp_path):
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"key": i, "body": t}) + "\n" for i, t in enumerate(real_texts[:30])))
    out = tmp_path / "q.parquet"
    proc = subprocess.run(CLI + [str(jl), "--out", str(out), "--text-column", "body", "--id-column", "key", "--quantize", "uint8"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert table.column("key").to_pylist() == list(range(30))
    np.testing.assert_array_equal(from_fixed_size_list(table.column("embedding")), quantize(luxical.embed(real_texts[:30]), "uint8"))
    txt = tmp_path / "in.txt"
    txt.write_text("first line\nsecond line\n")
    proc = subprocess.run(CLI + [str(txt), "--out", str(tmp_path / "t.parquet")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 2


def test_nulls_and_missing_column(tmp_path):
    src = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), src)
    bad = subprocess.run(CLI + [str(src), "--out", str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nulls.parquet: row 2: the text is null" in bad.stderr
    ok = subprocess.run(CLI + [str(src), "--out", str(tmp_path / "y.parquet"), "--nulls", "empty"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    emb = from_fixed_size_list(pq.read_table(tmp_path / "y.parquet").column("embedding"))
    assert not emb[1].any() and emb[0].any()
    missing = subprocess.run(CLI + [str(src), "--out", str(tmp_path / "z.parquet"), "--text-column", "body"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no column 'body'" in missing.stderr
    nofile = subprocess.run(CLI + [str(tmp_path / "none.parquet"), "--out", str(tmp_path / "w.parquet")], capture_output=True, text=True)
    assert nofile.returncode == 2 and "none.parquet" in nofile.stderr


# ------------------------------------------------------- hostile input files (issue 16)
# Each test below runs the real CLI on real files and checks the whole contract: exit 2,
# one line on stderr naming the file, the position (lines/rows counted from 1) and the
# problem, no traceback, and nothing at the output path. The default model is used so
# that the tests need no fixture files.


def embed_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=600)


def _state(path: Path):
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    return path.read_bytes() if path.exists() else None


def refuse(args: list, *needles: str) -> str:
    """Runs `luxical embed ARGS` and checks the refusal: exit 2, one stderr line holding
    every needle, no traceback, the --out path exactly as before the run (absent stays
    absent), and no temporary file left beside it."""
    out = Path(args[args.index("--out") + 1])
    before = _state(out)
    proc = embed_cli(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert _state(out) == before, f"{out} changed by a failed run"
    if out.parent.is_dir():
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temporary output left behind"
    return message


def embeddings(path) -> np.ndarray:
    return from_fixed_size_list(pq.read_table(path).column("embedding"))


def test_a_field_or_column_of_the_wrong_type_exits_2_naming_file_and_position(tmp_path):
    out = tmp_path / "out.parquet"
    # A JSON number/array/object/boolean where text is expected, beyond the first batch:
    # the line is counted in the file, not in the batch.
    for bad in (42, 1.5, ["a"], {"a": "b"}, True):
        src = tmp_path / "docs.jsonl"
        src.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["one", "two", "three", "four", bad, "six"]))
        refuse([src, "--out", out, "--batch-size", "2"], "docs.jsonl: line 5:", "field 'text' is")
    # Parquet text columns that are not strings: refused before anything is embedded.
    for column in (pa.array([1, 2, 3], pa.int64()), pa.array([1, 2, 3], pa.int8()), pa.array([[1], [2], [3]]), pa.array([b"a", b"b", b"c"])):
        src = tmp_path / "typed.parquet"
        pq.write_table(pa.table({"text": column}), src)
        refuse([src, "--out", out], "typed.parquet:", "column 'text' has type", str(column.type).split("<")[0])
    # An unpaired surrogate escape is not text either; still named by file and line.
    src = tmp_path / "surrogate.jsonl"
    src.write_text('{"text": "fine"}\n{"text": "fine"}\n{"text": "bad \\ud800 escape"}\n')
    refuse([src, "--out", out, "--batch-size", "2"], "surrogate.jsonl: line 3:", "surrogate")


def test_hostile_json_lines(tmp_path):
    out = tmp_path / "out.parquet"
    src = tmp_path / "docs.jsonl"
    # Lines that are valid JSON but not objects (a bare string used to be searched as a
    # substring: '"text" in row').
    for line in ['"the text field"', "42", '["text"]', "null", "true"]:
        src.write_text('{"text": "fine"}\n' + line + "\n")
        refuse([src, "--out", out], "docs.jsonl: line 2:", "expected a JSON object")
    # Malformed JSON: named by file, physical line (blank lines and a lone \r inside a
    # valid line do not shift it) and column.
    src.write_bytes(b'{"text": "a",\r "id": 1}\n\n{"text": "b"}\n{"text": "c" "d"}\n')
    refuse([src, "--out", out], "docs.jsonl: line 4, column 14: invalid JSON")
    src.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    refuse([src, "--out", out], "docs.jsonl: line 2: not valid UTF-8")
    src.write_text('{"body": "a"}\n')
    refuse([src, "--out", out], "docs.jsonl: line 1: no field 'text'")
    src.write_text('{"text": "a"}\n{"text": "b", "n": ' + "9" * 5000 + "}\n")
    refuse([src, "--out", out], "docs.jsonl: line 2: invalid JSON")
    # A byte-order mark (Windows editors) is accepted; \r\n line ends too.
    texts = ["first document", "zweites Dokument", "troisième"]
    src.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": t}, ensure_ascii=False) + "\r\n" for t in texts).encode())
    proc = embed_cli(src, "--out", out)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(embeddings(out), luxical.embed(texts))


def test_rows_out_equal_documents_in_for_text_and_csv(tmp_path):
    out = tmp_path / "out.parquet"
    # Text: one document per "\n"-terminated line, "\r\n" allowed; a lone "\r", form feed
    # or Unicode line separator is inside a document; empty lines are (zero) documents.
    docs = ["carriage\rreturn inside", "", "form\x0cfeed", "line\u2028separator", "next\x85line", "crlf ended", "no final newline"]
    src = tmp_path / "docs.txt"
    src.write_bytes(("\ufeff" + "\n".join(docs[:5]) + "\n" + docs[5] + "\r\n" + docs[6]).encode())
    proc = embed_cli(src, "--out", out)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(embeddings(out), luxical.embed(docs))
    # CSV / TSV with a header: quoted commas, quotes and newlines stay in one document, the
    # header is not a document, ids are kept as the strings they are ("007").
    texts = ['a, quoted "text"', "multi\nline\r\ntext", "", "plain"]
    ids = ["007", "8", "x", "10"]
    for name, sep in (("docs.csv", ","), ("docs.tsv", "\t")):
        src = tmp_path / name
        pa_table = pa.table({"id": ids, "other": ["1", "2", "3", "4"], "text": texts})
        import pyarrow.csv as pcsv

        pcsv.write_csv(pa_table, src, pcsv.WriteOptions(delimiter=sep))
        proc = embed_cli(src, "--out", out)
        assert proc.returncode == 0, proc.stderr
        table = pq.read_table(out)
        assert table.column("id").to_pylist() == ids and table.column("id").type == pa.string()
        np.testing.assert_array_equal(embeddings(out), luxical.embed(texts))
    # Compressed inputs.
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(b"text\nalpha\nbeta\n"))
    (tmp_path / "c.jsonl.bz2").write_bytes(bz2.compress(b'{"text": "gamma"}\n'))
    proc = embed_cli(tmp_path / "c.csv.gz", tmp_path / "c.jsonl.bz2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(embeddings(out), luxical.embed(["alpha", "beta", "gamma"]))
    # A CSV row with the wrong number of fields, a CSV without the column, a truncated
    # compressed file, and formats we do not read.
    (tmp_path / "ragged.csv").write_text('text,id\n"a\nb",1\nc,2,3\n')
    refuse([tmp_path / "ragged.csv", "--out", out], "ragged.csv: row 2: expected 2 columns", "got 3")
    (tmp_path / "nocol.csv").write_text("body\nx\n")
    refuse([tmp_path / "nocol.csv", "--out", out], "nocol.csv: no column 'text'")
    for name, head in (("cut.jsonl.gz", b'{"text": "a"}\n'), ("cut.csv.gz", b"text\na\n")):
        for cut in (20, -20):  # inside the header / first line, and near the end
            data = gzip.compress(head * 1000)
            (tmp_path / name).write_bytes(data[:cut])
            refuse([tmp_path / name, "--out", out], f"{name}: cannot read:")
    for name in ("notes.md", "README", "data.xlsx", "docs.parquet.gz"):
        (tmp_path / name).write_text("text\nsomething\n")
        refuse([tmp_path / name, "--out", out], f"{name}: unsupported file type", ".parquet", ".jsonl", ".csv", ".txt")


def test_a_failed_run_leaves_nothing_at_the_output_path_and_never_overwrites_an_input(tmp_path):
    out = tmp_path / "out.parquet"
    src = tmp_path / "nulls.parquet"
    texts = [f"document {i}" for i in range(20_000)]
    texts[15_000] = None
    pq.write_table(pa.table({"text": texts}), src)
    refuse([src, "--out", out], "nulls.parquet: row 15001: the text is null")
    # A previous output survives a failed run untouched (refuse checks it).
    out.write_bytes(b"previous result")
    refuse([src, "--out", out], "nulls.parquet: row 15001: the text is null")
    out.unlink()
    # --out naming an input (by path, through another spelling, a hard link or a symlink)
    # or the model file.
    keep = src.read_bytes()
    (tmp_path / "sub").mkdir()
    os.link(src, tmp_path / "hard.parquet")
    os.symlink(src, tmp_path / "soft.parquet")
    for target in (src, tmp_path / "sub" / ".." / "nulls.parquet", tmp_path / "hard.parquet", tmp_path / "soft.parquet"):
        refuse([tmp_path / "soft.parquet", src, "--out", target, "--nulls", "empty"], "is also an input")
        assert src.read_bytes() == keep
    model = tmp_path / "model.npz"
    model.write_bytes(b"not really a model")
    refuse([src, "--out", model, "--model", model], "is also the model")
    assert model.read_bytes() == b"not really a model"
    refuse([src, "--out", tmp_path / "missing" / "o.parquet"], "does not exist")
    # --out ending in .parquet is one file: an existing directory of that name is refused
    # (any other --out is a directory of shards, tests/test_cli_shards.py).
    (tmp_path / "sub.parquet").mkdir()
    refuse([src, "--out", tmp_path / "sub.parquet"], "is a directory")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_by_a_signal_leaves_nothing_at_the_output_path(tmp_path, signum):
    src = tmp_path / "many.txt"
    src.write_text("".join(f"document {i} about packages, libraries and the tools that build them\n" for i in range(400_000)))
    out = tmp_path / "out.parquet"
    proc = subprocess.Popen(CLI + [str(src), "--out", str(out), "--batch-size", "500", "--threads", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".out.parquet.")]:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.01)
    time.sleep(0.3)  # some batches written to the temporary file
    proc.send_signal(signum)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.txt"]


def test_id_columns_keep_their_arrow_type_across_batches_and_files(tmp_path):
    out = tmp_path / "out.parquet"
    # int32 stays int32; a first batch whose ids are all null does not fix the type.
    for ids in ([1, 2, 3, 4, 5], [None, None, 3, None, 5], [None] * 5):
        src = tmp_path / "a.parquet"
        pq.write_table(pa.table({"id": pa.array(ids, pa.int32()), "text": list("abcde")}), src)
        proc = embed_cli(src, "--out", out, "--batch-size", "2")
        assert proc.returncode == 0, proc.stderr
        column = pq.read_table(out).column("id")
        assert column.type == pa.int32() and column.to_pylist() == ids
    for id_type in (pa.uint16(), pa.large_string(), pa.timestamp("ms"), pa.dictionary(pa.int32(), pa.string())):
        values = pa.array(["x", "y"] if pa.types.is_dictionary(id_type) or pa.types.is_large_string(id_type) else [1, 2]).cast(id_type)
        pq.write_table(pa.table({"id": values, "text": ["a", "b"]}), tmp_path / "t.parquet")
        proc = embed_cli(tmp_path / "t.parquet", "--out", out, "--batch-size", "1")
        assert proc.returncode == 0, proc.stderr
        assert pq.read_table(out).column("id").type == pq.read_table(tmp_path / "t.parquet").column("id").type
    # JSON ids: null for a whole first batch, then integers: int64, nulls kept.
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in [None, None, 7, 2**40]))
    proc = embed_cli(src, "--out", out, "--id-column", "id", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).column("id").to_pylist() == [None, None, 7, 2**40]
    # Types that change within a JSON Lines file are named by line.
    src.write_text("".join(json.dumps({"id": i, "text": "t"}) + "\n" for i in [1, 2, 3, "4"]))
    refuse([src, "--out", out, "--id-column", "id", "--batch-size", "2"], "a.jsonl: line 4: field 'id' is a string")
    # Several files: types unify (int32 + int64 -> int64) or the run fails before writing,
    # naming the file; a file without the id column is named too.
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int32()), "text": ["a", "b"]}), tmp_path / "i32.parquet")
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()), "text": ["c"]}), tmp_path / "i64.parquet")
    pq.write_table(pa.table({"id": ["s"], "text": ["d"]}), tmp_path / "str.parquet")
    pq.write_table(pa.table({"text": ["e"]}), tmp_path / "noid.parquet")
    proc = embed_cli(tmp_path / "i32.parquet", tmp_path / "i64.parquet", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).column("id").type == pa.int64() and pq.read_table(out).column("id").to_pylist() == [1, 2, 3]
    refuse([tmp_path / "i32.parquet", tmp_path / "str.parquet", "--out", out], "str.parquet: id column 'id' has type string")
    refuse([tmp_path / "i32.parquet", tmp_path / "noid.parquet", "--out", out], "noid.parquet: has no 'id' column", "--no-id")
    refuse([tmp_path / "i32.parquet", tmp_path / "str.parquet", "--out", out, "--id-column", "nope"], "i32.parquet: no id column 'nope'")
    (tmp_path / "s.jsonl").write_text('{"id": "x", "text": "f"}\n')
    refuse([tmp_path / "i32.parquet", tmp_path / "s.jsonl", "--out", out, "--id-column", "id"], "s.jsonl: id column 'id' has type string")
    proc = embed_cli(tmp_path / "i32.parquet", tmp_path / "noid.parquet", "--out", out, "--no-id")
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).column_names == ["embedding"] and pq.read_table(out).num_rows == 3


def test_positions_are_counted_per_file_from_1(tmp_path):
    out = tmp_path / "out.parquet"
    pq.write_table(pa.table({"text": [f"doc {i}" for i in range(2000)]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["x", None, "z"]}), tmp_path / "b.parquet")
    message = refuse([tmp_path / "a.parquet", tmp_path / "b.parquet", "--out", out, "--batch-size", "300"], "b.parquet: row 2: the text is null")
    assert "a.parquet" not in message and "2001" not in message
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(1000)))
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n\n{"text": null}\n')
    refuse([tmp_path / "a.jsonl", tmp_path / "b.jsonl", "--out", out], "b.jsonl: line 3: the text is null")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n{"text": 3}\n')
    refuse([tmp_path / "a.parquet", tmp_path / "b.jsonl", "--out", out], "b.jsonl: line 2: field 'text' is a number")


@pytest.mark.parametrize(
    "option",
    [
        ["--batch-size", "0"],
        ["--batch-size", "-5"],
        ["--batch-size", "abc"],
        ["--batch-size", str(10**30)],
        ["--threads", "-1"],
        ["--threads", "0"],
        ["--threads", "99999999999999999999"],
        ["--threads", "1.5"],
    ],
)
def test_numeric_options_are_validated_up_front(tmp_path, option):
    src = tmp_path / "docs.txt"
    src.write_text("one\ntwo\n")
    out = tmp_path / "out.parquet"
    proc = embed_cli(src, "--out", out, *option)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"argument {option[0]}: expected an integer from 1 to" in proc.stderr
    assert not out.exists()
