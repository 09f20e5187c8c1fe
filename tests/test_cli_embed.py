"""`luxical embed`: files in, Parquet out, streaming; bad input gives a clear exit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
    assert bad.returncode == 2 and "document 1 is null" in bad.stderr
    ok = subprocess.run(CLI + [str(src), "--out", str(tmp_path / "y.parquet"), "--nulls", "empty"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    emb = from_fixed_size_list(pq.read_table(tmp_path / "y.parquet").column("embedding"))
    assert not emb[1].any() and emb[0].any()
    missing = subprocess.run(CLI + [str(src), "--out", str(tmp_path / "z.parquet"), "--text-column", "body"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no column 'body'" in missing.stderr
    nofile = subprocess.run(CLI + [str(tmp_path / "none.parquet"), "--out", str(tmp_path / "w.parquet")], capture_output=True, text=True)
    assert nofile.returncode == 2 and "none.parquet" in nofile.stderr
