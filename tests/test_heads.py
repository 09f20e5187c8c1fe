"""Heads (luxical.heads): computed by the runtime in the embedding pass, checked against
numpy applied to the returned embeddings (float64) on every precision and input container;
the head file format and its bad-file guarantees; fitting with scikit-learn."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import luxical
from luxical import heads as H
from luxical.errors import HeadFormatError, ModelFormatError, UnsupportedFormatVersionError
from test_embedder import _containers

EDGE = ["", "   ", "\n", "!!!", "😀" * 5]


def _close(got: dict, want: dict, columns: list[str], what: str) -> None:
    """Scores and cosines within 1e-6 (relative for scores above 1: float32 rounding of the
    dot products and of the returned column); ids equal where the best cosine is not a
    near-tie."""
    for c in columns:
        g, w = got[c], want[c]
        assert g.shape == w.shape, (what, c)
        if c.endswith("_id"):
            continue
        err = np.abs(g.astype(np.float64) - w) / np.maximum(1.0, np.abs(w))
        assert err.max() <= 1e-6, f"{what} {c}: max error {err.max():.3g}"


def _ids_match(head: H.CentroidHead, emb: np.ndarray, got: dict, what: str) -> None:
    e = emb.astype(np.float64)
    c = head.centroids.astype(np.float64)
    cos = e @ c.T / np.linalg.norm(c, axis=1)
    top2 = np.sort(cos, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-5
    want = cos.argmax(axis=1)
    assert clear.mean() > 0.9, what  # the comparison is not vacuous
    np.testing.assert_array_equal(got[f"{head.name}_id"][clear], want[clear], err_msg=what)
    if head.coarse is not None:
        np.testing.assert_array_equal(got[f"{head.name}_coarse_id"], head.coarse[got[f"{head.name}_id"]], err_msg=what)


@pytest.fixture(scope="module")
def texts(real_text_rows) -> list[str]:
    return [r["text"] for r in real_text_rows[:1500]] + [r["text"] for r in real_text_rows if r["kind"] == "long"][:40] + EDGE


def _random_heads(dim: int, fit_emb: np.ndarray) -> list[H.Head]:
    rng = np.random.default_rng(0)
    return [
        H.LinearHead(rng.normal(size=(1, dim)) * 4, [0.3], labels=["score"], name="quality"),
        H.LinearHead(rng.normal(size=(6, dim)) * 3, rng.normal(size=6), labels=list("abcdef"), activation="softmax", name="topic"),
        H.LinearHead(rng.normal(size=(2, dim)), [0.0, -1.0], labels=["x", "y"], activation="sigmoid", name="tags"),
        H.MlpHead(
            [(rng.normal(size=(32, dim)), rng.normal(size=32) * 0.1), (rng.normal(size=(3, 32)) * 0.5, [0.0, 0.1, 0.2])],
            labels=["p", "q", "r"],
            activation="softmax",
            name="mlp",
        ),
        H.fit_centroids(fit_emb, 40, coarse_k=6, name="domain"),
    ]


@pytest.mark.parametrize("model", ["fixture", "default"])
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_heads_match_numpy_on_the_returned_embeddings(model, precision, fixture_embedder, texts):
    base = fixture_embedder if model == "fixture" else luxical.load()
    emb = base.with_precision(precision)
    heads = _random_heads(emb.dim, base(texts[:800]))
    scored = emb.with_heads(*heads)
    out = scored(texts, batch_size=500)
    assert isinstance(out, H.Embedded) and len(out) == len(texts)
    # the embeddings are those of the model without heads, bit for bit
    np.testing.assert_array_equal(out.embeddings, emb(texts))
    assert list(out.columns) == scored.head_columns
    want = {}
    for h in heads:
        want.update(h.apply(out.embeddings))
    _close(out.columns, want, scored.head_columns, f"{model}/{precision}")
    _ids_match(heads[-1], out.embeddings, out.columns, f"{model}/{precision}")
    assert out["domain_id"].dtype == np.int32 and out["quality_score"].dtype == np.float32
    # all-zero embeddings (empty text): the linear score is the bias; cosine 0, id 0
    i = len(texts) - len(EDGE)
    assert not out.embeddings[i].any()
    assert out["quality_score"][i] == np.float32(0.3) and out["domain_cosine"][i] == 0 and out["domain_id"][i] == 0
    np.testing.assert_allclose(out["topic_a"][i:i + 1].sum() + sum(out[f"topic_{c}"][i] for c in "bcdef"), 1.0, rtol=1e-6)


def test_heads_independent_expectations(fixture_embedder, texts):
    """Without numpy's help: a head selecting coordinates returns the coordinates, and
    centroids that are documents' own embeddings assign each of them to itself."""
    e = fixture_embedder
    emb = e(texts[:300])
    picks = [0, 5, 63]
    w = np.zeros((3, e.dim), np.float32)
    w[np.arange(3), picks] = 1.0
    select = H.LinearHead(w, np.zeros(3), labels=["c0", "c5", "c63"], name="sel")
    keep = [i for i in range(50) if emb[i].any()]
    keep = [keep[j] for j in sorted(np.unique(emb[keep].round(4), axis=0, return_index=True)[1])]
    own = emb[keep]
    centroid = H.CentroidHead(own * 3.0, name="self")  # not unit: cosine divides the norm out
    out = e.with_heads(select, centroid)([texts[i] for i in keep])
    assert len(keep) > 40
    for j, p in enumerate(picks):
        np.testing.assert_array_equal(out[f"sel_c{p}"], own[:, p])
    np.testing.assert_array_equal(out["self_id"], np.arange(len(own)))
    np.testing.assert_allclose(out["self_cosine"], 1.0, atol=1e-6)


def test_every_container_thread_count_and_batch_gives_identical_columns(fixture_embedder, texts):
    e = fixture_embedder.with_heads(*_random_heads(fixture_embedder.dim, fixture_embedder(texts[:400])))
    sample = texts[:60] + EDGE
    want = e(sample)
    for name, container in _containers(sample).items():
        got = e(container, batch_size=7)
        np.testing.assert_array_equal(got.embeddings, want.embeddings, err_msg=name)
        for c in e.head_columns:
            np.testing.assert_array_equal(got[c], want[c], err_msg=f"{name} {c}")
    for threads in (1, 2, 8):
        got = e(sample, num_threads=threads, batch_size=13)
        for c in e.head_columns:
            np.testing.assert_array_equal(got[c], want[c], err_msg=f"threads={threads} {c}")


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_columns_without_embeddings(fixture_embedder, texts, precision):
    e = fixture_embedder.with_precision(precision).with_heads(*_random_heads(64, fixture_embedder(texts[:400])))
    full = e(texts)
    lean = e(texts, embeddings=False, batch_size=256)
    assert lean.embeddings is None and len(lean) == len(texts)
    for c in e.head_columns:
        np.testing.assert_array_equal(lean[c], full[c], err_msg=c)
    assert e([], embeddings=False).columns["quality_score"].shape == (0,)


def test_plain_paths_are_unaffected(fixture_embedder, texts):
    e = fixture_embedder.with_heads(*_random_heads(64, fixture_embedder(texts[:400])))
    plain = fixture_embedder(texts[:20])
    np.testing.assert_array_equal(e.encode(texts[:20]), plain)  # sentence-transformers path
    np.testing.assert_array_equal(e.with_heads()(texts[:20]), plain)
    assert e.with_heads().heads == () and len(e.heads) == 5
    assert "heads=[quality, topic" in repr(e)
    with pytest.raises(ValueError, match="embeddings=False needs heads"):
        fixture_embedder(texts[:2], embeddings=False)


def test_pickled_embedder_keeps_heads_and_precision(fixture_embedder, texts, tmp_path):
    e = fixture_embedder.with_precision("int8").with_heads(*_random_heads(64, fixture_embedder(texts[:400])))
    again = pickle.loads(pickle.dumps(e))
    assert again.precision == "int8" and [h.name for h in again.heads] == [h.name for h in e.heads]
    a, b = e(texts[:50]), again(texts[:50])
    for c in e.head_columns:
        np.testing.assert_array_equal(a[c], b[c])


# ------------------------------------------------------------------------- head files


def test_save_load_round_trip_and_file_is_plain_npz(fixture_embedder, texts, tmp_path):
    for h in _random_heads(64, fixture_embedder(texts[:400])):
        path = tmp_path / f"{h.name}.npz"
        h.save(path)
        loaded = H.load(path)
        assert loaded == h and type(loaded) is type(h) and loaded.source == str(path)
        with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickle needed
            meta = json.loads(npz["luxical_head"].tobytes())
            assert meta["format"] == "luxical-head" and meta["version"] == 1 and meta["kind"] == h.kind
            assert sorted(meta["arrays"]) == sorted(k for k in npz.files if k != "luxical_head")
    # a head given by path
    out = fixture_embedder.with_heads(tmp_path / "quality.npz", str(tmp_path / "domain.npz"))(texts[:10])
    assert list(out.columns) == ["quality_score", "domain_id", "domain_cosine", "domain_coarse_id"]


def _rewrite(path: Path, out: Path, *, arrays: dict | None = None, meta: dict | None = None, drop: str | None = None) -> Path:
    with np.load(path, allow_pickle=False) as npz:
        content = {k: npz[k] for k in npz.files}
    m = json.loads(content["luxical_head"].tobytes())
    m.update(meta or {})
    content.update(arrays or {})
    if drop:
        content.pop(drop)
    content["luxical_head"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    np.savez(out, **content)
    return out


def _resign(path: Path) -> None:
    """Rewrites the metadata's checksum and array table to match the arrays (a forger who
    knows the format): what remains must be caught by the content checks."""
    with np.load(path, allow_pickle=False) as npz:
        content = {k: npz[k] for k in npz.files}
    m = json.loads(content.pop("luxical_head").tobytes())
    m["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in sorted(content.items())}
    m["sha256"] = H._checksum(content)
    content["luxical_head"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    np.savez(path, **content)


def test_bad_head_files_raise_errors_naming_the_file(fixture_embedder, tmp_path):
    rng = np.random.default_rng(1)
    good = tmp_path / "good.npz"
    H.LinearHead(rng.normal(size=(3, 64)), np.zeros(3), labels=["a", "b", "c"], name="q").save(good)
    data = good.read_bytes()

    def expect(path: Path, pattern: str, error: type = HeadFormatError) -> None:
        with pytest.raises(error, match=pattern) as info:
            H.load(path)
        assert str(path) in str(info.value)
        with pytest.raises(error):
            fixture_embedder.with_heads(path)

    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    expect(tmp_path / "truncated.npz", "not a readable .npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    expect(tmp_path / "empty.npz", "not a readable .npz")
    (tmp_path / "text.npz").write_text("weights")
    expect(tmp_path / "text.npz", "not a readable .npz")
    np.savez(tmp_path / "model_like.npz", weight_0=np.zeros((1, 64), np.float32))
    expect(tmp_path / "model_like.npz", "no 'luxical_head' metadata")
    # an array changed after writing: the checksum catches it
    tampered = _rewrite(good, tmp_path / "tampered.npz", arrays={"bias_0": np.ones(3, np.float32)})
    expect(tampered, "checksum mismatch")
    # a flipped byte inside the stored weights (zip CRC or checksum, either way named)
    raw = bytearray(data)
    pos = raw.find(np.float32(np.load(good)["weight_0"][1, 7]).tobytes())
    raw[pos] ^= 0x40
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    expect(tmp_path / "flipped.npz", "checksum mismatch|not a readable .npz")
    # wrong shapes, listed honestly in a re-signed file
    shapes = _rewrite(good, tmp_path / "shapes.npz", arrays={"bias_0": np.zeros(4, np.float32)})
    _resign(shapes)
    expect(shapes, r"bias has shape \(4,\), expected \(3,\)")
    # shape / dtype differing from the metadata's table
    expect(_rewrite(good, tmp_path / "table.npz", arrays={"bias_0": np.zeros(4, np.float32)}), "the metadata says")
    # NaN weights, re-signed so that only the content check can catch them
    nan_w = np.load(good)["weight_0"].copy()
    nan_w[2, 10] = np.nan
    nan = _rewrite(good, tmp_path / "nan.npz", arrays={"weight_0": nan_w})
    _resign(nan)
    expect(nan, r"'weight_0' has a non-finite value at flat index 138")
    # missing / unlisted arrays
    expect(_rewrite(good, tmp_path / "missing.npz", drop="bias_0"), r"missing \['bias_0'\]")
    expect(_rewrite(good, tmp_path / "extra.npz", arrays={"x": np.zeros(1)}), r"unlisted \['x'\]")
    # metadata problems
    expect(_rewrite(good, tmp_path / "v2.npz", meta={"version": 2}), "version 2 is not supported", UnsupportedFormatVersionError)
    expect(_rewrite(good, tmp_path / "kind.npz", meta={"kind": "forest"}), "'kind' is 'forest'")
    expect(_rewrite(good, tmp_path / "format.npz", meta={"format": "other"}), "'format' is 'other'")
    expect(_rewrite(good, tmp_path / "dim.npz", meta={"dim": 65}), "'dim' is 65")
    expect(_rewrite(good, tmp_path / "labels.npz", meta={"labels": ["a"]}), "1 labels for 3 outputs")
    expect(_rewrite(good, tmp_path / "act.npz", meta={"activation": "tanh"}), "activation must be")
    # an object (pickled) array is refused, never unpickled
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(tmp_path / "pickled.npz", "w") as out:
        for item in z.infolist():
            out.writestr(item, z.read(item))
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        out.writestr("extra.npy", buf.getvalue())
    expect(tmp_path / "pickled.npz", "not a readable .npz")
    # a head of another dimension than the model: ValueError naming the file
    other = tmp_path / "dim32.npz"
    H.CentroidHead(rng.normal(size=(4, 32)), name="c").save(other)
    with pytest.raises(ValueError, match=rf"head file '{other}' reads 32-dimensional embeddings but this model makes 64"):
        fixture_embedder.with_heads(other)
    with pytest.raises(FileNotFoundError):
        H.load(tmp_path / "absent.npz")
    assert issubclass(HeadFormatError, ModelFormatError) and issubclass(HeadFormatError, ValueError)


def test_heads_refuse_bad_parts_in_memory(fixture_embedder):
    with pytest.raises(ValueError, match="non-finite"):
        H.LinearHead(np.full((1, 64), np.nan), [0.0], labels=["s"])
    with pytest.raises(ValueError, match="centroid 1 is all zeros"):
        H.CentroidHead(np.vstack([np.ones(64), np.zeros(64)]))
    with pytest.raises(ValueError, match="coarse map has shape"):
        H.CentroidHead(np.ones((2, 64)), coarse=[0, 1, 2])
    with pytest.raises(ValueError, match="activation must be"):
        H.LinearHead(np.ones((1, 64)), [0.0], labels=["s"], activation="relu")
    with pytest.raises(ValueError, match="layer 1 takes 4 inputs but layer 0 gives 3"):
        H.MlpHead([(np.ones((3, 64)), np.zeros(3)), (np.ones((1, 4)), np.zeros(1))], labels=["s"])
    a = H.LinearHead(np.ones((1, 64)), [0.0], labels=["s"], name="q")
    with pytest.raises(ValueError, match="both write column 'q_s'"):
        fixture_embedder.with_heads(a, a)
    with pytest.raises(ValueError, match="head name"):
        H.LinearHead(np.ones((1, 64)), [0.0], labels=["s"], name="bad name")


# ------------------------------------------------------------------------- fitting


def _family(source: str) -> str | None:
    """A real label of a Debian package: its naming family, from the package name."""
    name = source.removeprefix("debian-description:")
    for prefix in ("python3-", "golang-", "node-", "libghc-", "r-cran-", "librust-", "ruby-", "libjs-", "fonts-"):
        if name.startswith(prefix):
            return prefix.rstrip("-")
    if name.startswith("lib") and name.endswith("-dev"):
        return "lib-dev"
    if name.startswith("lib") and name.endswith("-doc"):
        return "lib-doc"
    return None


@pytest.fixture(scope="module")
def labelled(real_text_rows):
    rows = [(r["text"], _family(r["source"])) for r in real_text_rows if r["source"].startswith("debian-description:")]
    rows = [(t, y) for t, y in rows if y is not None][:6000]
    texts, labels = zip(*rows)
    emb = luxical.load()(list(texts))
    return emb, np.array(labels), list(texts)


def test_fit_probe_logistic_predicts_a_real_label(labelled, tmp_path):
    emb, y, texts = labelled
    n_train = 4500
    head = H.fit_probe(emb[:n_train], y[:n_train], kind="logistic", C=10.0, name="family")
    assert head.activation == "softmax" and len(head.labels) == len(set(y))
    scored = luxical.load().with_heads(head)(texts[n_train:], embeddings=False)
    probs = np.stack([scored[c] for c in head.columns], axis=1)
    pred = np.array(head.labels)[probs.argmax(axis=1)]
    acc = (pred == y[n_train:]).mean()
    majority = max((y[n_train:] == c).mean() for c in set(y))
    assert acc > 0.85 and acc > majority + 0.3, (acc, majority)
    # sklearn's own predictions on the same embeddings agree with the runtime's argmax
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression(C=10.0, max_iter=1000, random_state=0).fit(emb[:n_train], y[:n_train])
    assert (sk.predict(emb[n_train:]) == pred).mean() > 0.995
    head.save(tmp_path / "family.npz")
    assert H.load(tmp_path / "family.npz") == head


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a short MLP fit, on purpose
def test_fit_probe_ridge_binary_and_mlp(labelled):
    emb, y, _ = labelled
    is_py = (y == "python3").astype(np.float64)
    ridge = H.fit_probe(emb[:3000], is_py[:3000], kind="ridge", name="py")
    assert ridge.columns == ["py_score"]
    score = ridge.apply(emb[3000:])["py_score"]
    assert np.corrcoef(score, is_py[3000:])[0, 1] > 0.6
    binary = H.fit_probe(emb[:3000], np.where(is_py[:3000] > 0, "py", "other"), kind="logistic", name="b")
    assert binary.activation == "sigmoid" and binary.columns == ["b_py"]
    mlp = H.fit_probe(emb[:3000], y[:3000], kind="mlp", hidden=64, max_iter=60, name="m")
    assert isinstance(mlp, H.MlpHead) and mlp.activation == "softmax"
    from sklearn.neural_network import MLPClassifier  # noqa: F401  (fitted above)

    out = luxical.load().with_heads(mlp)(np.array(labelled[2][3000:3500]))
    want = mlp.apply(out.embeddings)
    _close(out.columns, want, mlp.columns, "mlp")
    pred = np.array(mlp.labels)[np.stack([out[c] for c in mlp.columns], 1).argmax(1)]
    assert (pred == y[3000:3500]).mean() > 0.8


def test_fit_centroids_spherical_with_coarse_map(labelled):
    emb = labelled[0][:3000]
    head = H.fit_centroids(emb, 60, coarse_k=8, name="topic")
    assert head.k == 60 and head.coarse is not None and set(head.coarse) == set(range(8))
    np.testing.assert_allclose(np.linalg.norm(head.centroids, axis=1), 1.0, atol=1e-6)
    out = head.apply(emb)
    # assignments are those of scikit-learn's k-means on the unit rows (the fit itself)
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=60, n_init=1, max_iter=100, random_state=0).fit(emb / np.linalg.norm(emb, axis=1, keepdims=True))
    assert (out["topic_id"] == km.labels_).mean() > 0.97
    # every cluster is used and coarse ids follow the map
    assert len(np.unique(out["topic_id"])) == 60
    np.testing.assert_array_equal(out["topic_coarse_id"], head.coarse[out["topic_id"]])


# ------------------------------------------------------------------------- command line

CLI = [__import__("sys").executable, "-m", "luxical", "embed"]


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_cli_writes_head_columns(fixture_embedder, fixture_model_path, real_text_rows, tmp_path, precision):
    import subprocess

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = real_text_rows[:700]
    texts = [r["text"] for r in rows] + [""]
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), src)
    heads = _random_heads(64, fixture_embedder(texts[:300]))
    quality, domain = heads[0], heads[-1]
    quality.save(tmp_path / "quality.npz")
    domain.save(tmp_path / "domains.npz")
    base = CLI + [str(src), "--model", str(fixture_model_path), "--precision", precision, "--batch-size", "128", "--no-progress"]
    heads_args = ["--head", str(tmp_path / "quality.npz"), "--head", str(tmp_path / "domains.npz")]
    proc = subprocess.run(base + ["--out", str(tmp_path / "full.parquet")] + heads_args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    full = pq.read_table(tmp_path / "full.parquet")
    assert full.column_names == ["id", "embedding", "quality_score", "domain_id", "domain_cosine", "domain_coarse_id"]
    assert full.schema.field("domain_id").type == pa.int32() and full.schema.field("quality_score").type == pa.float32()
    emb = np.stack(full.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(emb, fixture_embedder.with_precision(precision)(texts))
    got = {c: full.column(c).to_numpy() for c in full.column_names[2:]}
    want = {**quality.apply(emb), **domain.apply(emb)}
    _close(got, want, list(got), f"cli/{precision}")
    _ids_match(domain, emb, got, f"cli/{precision}")
    # --no-embedding: the same columns without the embedding
    proc = subprocess.run(base + ["--out", str(tmp_path / "lean.parquet"), "--no-embedding"] + heads_args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lean = pq.read_table(tmp_path / "lean.parquet")
    assert lean.column_names == ["id", "quality_score", "domain_id", "domain_cosine", "domain_coarse_id"]
    assert lean.select(lean.column_names).equals(full.select(lean.column_names))


def test_cli_refuses_bad_heads_before_writing(fixture_model_path, tmp_path):
    import subprocess

    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "a document"}\n')
    out = tmp_path / "out.parquet"
    base = CLI + [str(src), "--model", str(fixture_model_path), "--out", str(out), "--no-progress"]
    good = tmp_path / "good.npz"
    H.LinearHead(np.ones((1, 64)), [0.0], labels=["s"], name="q").save(good)
    (tmp_path / "broken.npz").write_bytes(good.read_bytes()[:100])
    H.LinearHead(np.ones((1, 32)), [0.0], labels=["s"], name="q").save(tmp_path / "dim32.npz")
    cases = [
        (["--head", str(tmp_path / "broken.npz")], f"head file '{tmp_path / 'broken.npz'}'"),
        (["--head", str(tmp_path / "dim32.npz")], "reads 32-dimensional embeddings but this model makes 64"),
        (["--head", str(tmp_path / "absent.npz")], "absent.npz"),
        (["--head", str(good), "--head", str(good)], "both write column 'q_s'"),
        (["--no-embedding"], "--no-embedding needs at least one --head"),
    ]
    for extra, message in cases:
        proc = subprocess.run(base + extra, capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists()


# --- damaged bytes: a fuzz over whole head files -----------------------------------------


def _small_heads() -> list[H.Head]:
    rng = np.random.default_rng(11)
    centroids = rng.normal(size=(5, 16))
    return [
        H.LinearHead(rng.normal(size=(3, 16)), rng.normal(size=3), labels=["a", "b", "c"], activation="softmax", name="lin"),
        H.MlpHead([(rng.normal(size=(8, 16)), rng.normal(size=8)), (rng.normal(size=(2, 8)), [0.0, 1.0])],
                  labels=["p", "q"], name="mlp"),
        H.CentroidHead(centroids / np.linalg.norm(centroids, axis=1, keepdims=True), coarse=np.array([0, 0, 1, 1, 2]),
                       name="cl"),
    ]


def test_damaged_head_bytes_raise_head_errors_or_load_the_same_head():
    """Any damage to a head file's bytes (bytes overwritten, inserted, deleted, the file cut
    anywhere) is either refused with a ModelFormatError (HeadFormatError, or
    UnsupportedFormatVersionError for a version number bumped in place) or, when it only
    touches bytes no reader uses, loads the very same head. Never another exception: no
    MemoryError from a shape claimed in a damaged array header, no zlib / struct / index
    error leaking out of the archive reader."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    files = [h.to_bytes() for h in _small_heads()]
    heads = _small_heads()

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(which=st.integers(0, len(files) - 1), edits=st.lists(
        st.tuples(st.sampled_from(["set", "insert", "delete", "cut"]), st.floats(0, 1, exclude_max=True),
                  st.integers(0, 255)), min_size=1, max_size=4))
    def check(which, edits):
        data = bytearray(files[which])
        for op, where, value in edits:
            if not data:
                break
            i = int(where * len(data))
            if op == "set":
                data[i] = value
            elif op == "insert":
                data.insert(i, value)
            elif op == "delete":
                del data[i]
            else:
                del data[i:]
        try:
            got = H.from_bytes(bytes(data))
        except ModelFormatError as exc:
            assert "head file" in str(exc) or isinstance(exc, UnsupportedFormatVersionError), exc
            return
        assert got == heads[which]

    check()
