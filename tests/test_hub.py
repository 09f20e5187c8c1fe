"""Models by name (`luxical.load("owner/name")`, `Embedder.from_pretrained`, luxical.hub).

The Hub is not reachable from the test machines, so every test lays out its own Hugging
Face cache the way huggingface_hub does (`models--owner--name/blobs/<sha256>`,
`snapshots/<commit>/<file>` linking to the blob, `refs/<branch or tag>` holding the commit;
`huggingface_hub.scan_cache_dir` checks the layout) and reads it offline: with
`HF_HUB_OFFLINE=1` and `HF_HUB_CACHE` / `HF_HOME` in a child process (huggingface_hub reads
them at import), or with `cache_dir=` and `local_files_only=True` in this one. The
real huggingface_hub and safetensors packages do the work; nothing is mocked.

The safetensors files are written like the reference's Hugging Face export
(`_embedder_to_state_dict` in projects/huggingface_integration/luxical_hf_wrapper.py of
github.com/datologyai/luxical); expected embeddings come from loading the same model's
`.npz` and, for the reference-made fixture model, from the reference's own outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from made_models import make_embedder, wordpiece_json

import luxical
from luxical import Embedder, hub
from luxical.errors import ModelFormatError, UnsupportedFormatVersionError

REPO = "luxical-test/tiny"
COMMIT_MAIN = "1" * 40
COMMIT_V1 = "2" * 40
TEXTS = ["hello world", "the quick brown fox jumped over the lazy dog", "", "   ", "data model vectors!!! ..."]


# ----------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def weight_cache(tmp_path, monkeypatch) -> Path:
    """Each test's own luxical weight cache (where safetensors exports are converted to),
    also for its child processes (they inherit the environment)."""
    d = tmp_path / "luxical-cache"
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(d))
    return d


def lay_out_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes], refs: tuple[str, ...] = ("main",)) -> Path:
    """One commit of a model repo in a Hugging Face cache, as huggingface_hub writes it."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return snapshot


def wrapper_tensors(npz_path: Path) -> dict[str, np.ndarray]:
    """The tensors the reference's `_embedder_to_state_dict` writes for this model."""
    with np.load(npz_path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    n = int(d["num_nn_layers"][0])
    tensors = {
        "embedder.version": np.array([1], dtype=np.int64),
        "embedder.tokenizer": d["tokenizer"].astype(np.uint8),
        "embedder.recognized_ngrams": d["recognized_ngrams"].astype(np.int64),
        "embedder.ngram_keys": d["ngram_hash_to_ngram_idx_keys"].astype(np.int64),
        "embedder.ngram_vals": d["ngram_hash_to_ngram_idx_values"].astype(np.int64),
        "embedder.idf_values": d["idf_values"].astype(np.float32),
        "embedder.num_layers": np.array([n], dtype=np.int64),
    }
    for i in range(n):
        tensors[f"embedder.nn_layer_{i}"] = d[f"nn_layer_{i}"].astype(np.float32)
    return tensors


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save(tensors)


def wrapper_config(npz_path: Path, model_type: str = "luxical-one") -> bytes:
    """config.json as the wrapper's `save_pretrained` writes it."""
    emb = Embedder.load(npz_path)
    return json.dumps({
        "architectures": ["LuxicalOneModel"],
        "auto_map": {"AutoConfig": "luxical_hf_wrapper.LuxicalOneConfig", "AutoModel": "luxical_hf_wrapper.LuxicalOneModel"},
        "embedding_dim": emb.dim,
        "max_ngram_length": emb.max_ngram_len,
        "model_type": model_type,
        "torch_dtype": "float32",
        "transformers_version": "4.57.1",
    }, indent=2).encode()


def export_files(npz_path: Path, tensors: dict[str, np.ndarray] | None = None) -> dict[str, bytes]:
    """The files of the wrapper's export folder (its own source file stands in as text)."""
    return {
        "config.json": wrapper_config(npz_path),
        "model.safetensors": safetensors_bytes(tensors if tensors is not None else wrapper_tensors(npz_path)),
        "luxical_hf_wrapper.py": b"# the reference's wrapper module (not read by luxical)\n",
    }


def run_child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter with the Hub settings in `env` (and no others)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=child_env, capture_output=True, text=True, timeout=300
    )


def embed_in_child(model_expr: str, out: Path, env: dict[str, str]) -> tuple[np.ndarray, str]:
    proc = run_child(
        f"""
        import json, sys, numpy as np, luxical
        emb = {model_expr}
        np.save({str(out)!r}, emb({TEXTS!r}))
        print(emb.source)
        """,
        env,
    )
    assert proc.returncode == 0, proc.stderr
    return np.load(out), proc.stdout.strip()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Three different small models (bigrams, so padded n-gram rows) as .npz files."""
    d = tmp_path_factory.mktemp("models")
    tok = wordpiece_json()
    paths = {}
    for name, seed in [("a", 0), ("b", 1), ("c", 2)]:
        paths[name] = d / f"{name}.npz"
        make_embedder(tok, seed=seed).save(paths[name])
    return paths


def npz_bytes(path: Path) -> bytes:
    return path.read_bytes()


def hub_load(cache: Path, repo_id: str = REPO, **kwargs) -> Embedder:
    return Embedder.from_pretrained(repo_id, cache_dir=cache, local_files_only=True, **kwargs)


def same_embeddings(a: Embedder, b: Embedder, texts: list[str] = TEXTS) -> None:
    np.testing.assert_array_equal(a(texts), b(texts))


# ----------------------------------------------------------------------- the layout itself


def test_the_laid_out_cache_is_one_huggingface_hub_reads(tmp_path, models):
    from huggingface_hub import scan_cache_dir

    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, {"m.npz": npz_bytes(models["a"])})
    lay_out_snapshot(tmp_path, REPO, COMMIT_V1, {"m.npz": npz_bytes(models["b"])}, refs=("v1",))
    info = scan_cache_dir(tmp_path)
    assert not info.warnings
    (repo,) = info.repos
    assert (repo.repo_id, repo.repo_type) == (REPO, "model")
    refs = {r.commit_hash: set(r.refs) for r in repo.revisions}
    assert refs == {COMMIT_MAIN: {"main"}, COMMIT_V1: {"v1"}}
    assert {f.file_name for r in repo.revisions for f in r.files} == {"m.npz"}


# ----------------------------------------------------------------------- by name, offline


def test_npz_repo_by_name_with_hf_hub_cache_and_offline(tmp_path, models):
    cache = tmp_path / "cache"
    lay_out_snapshot(cache, REPO, COMMIT_MAIN, {"luxical_one_rc4.npz": npz_bytes(models["a"]), "README.md": b"# tiny\n"})
    got, source = embed_in_child(
        f"luxical.load({REPO!r})", tmp_path / "e.npy", {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    )
    np.testing.assert_array_equal(got, Embedder.load(models["a"])(TEXTS))
    assert source == f"hf://{REPO}@{COMMIT_MAIN}/luxical_one_rc4.npz"


def test_hf_home_locates_the_cache(tmp_path, models):
    home = tmp_path / "hf-home"
    lay_out_snapshot(home / "hub", REPO, COMMIT_MAIN, {"m.npz": npz_bytes(models["b"])})
    got, source = embed_in_child(
        f"luxical.Embedder.from_pretrained({REPO!r})", tmp_path / "e.npy", {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    )
    np.testing.assert_array_equal(got, Embedder.load(models["b"])(TEXTS))
    assert source == f"hf://{REPO}@{COMMIT_MAIN}/m.npz"


def test_safetensors_export_gives_the_reference_embeddings(tmp_path, fixture_model_path, fixture_texts, fixture_dir):
    """The reference-made fixture model, exported in the wrapper's layout: its embeddings are
    the reference's own outputs (expected.npy) and bit-identical to reading the .npz."""
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, export_files(fixture_model_path))
    emb = hub_load(tmp_path)
    got = emb(fixture_texts)
    assert np.abs(got - np.load(fixture_dir / "expected.npy")).max() <= 1e-5
    np.testing.assert_array_equal(got, Embedder.load(fixture_model_path)(fixture_texts))
    assert emb.source == f"hf://{REPO}@{COMMIT_MAIN}/model.safetensors"
    assert f"source='hf://{REPO}@{COMMIT_MAIN}/model.safetensors'" in repr(emb)
    # the padded 5-gram rows came back as the .npz's uint32 padding
    np.testing.assert_array_equal(emb.ngrams, Embedder.load(fixture_model_path).ngrams)


def test_safetensors_export_by_name_in_a_child_process(tmp_path, models):
    cache = tmp_path / "cache"
    lay_out_snapshot(cache, REPO, COMMIT_MAIN, export_files(models["c"]))
    got, source = embed_in_child(
        f"luxical.load({REPO!r})", tmp_path / "e.npy", {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    )
    np.testing.assert_array_equal(got, Embedder.load(models["c"])(TEXTS))
    assert source == f"hf://{REPO}@{COMMIT_MAIN}/model.safetensors"


def test_int64_maximum_padding_is_padding_too(tmp_path, models):
    tensors = wrapper_tensors(models["a"])
    ngrams = tensors["embedder.recognized_ngrams"]
    assert (ngrams == 2**32 - 1).any()
    tensors["embedder.recognized_ngrams"] = np.where(ngrams == 2**32 - 1, np.iinfo(np.int64).max, ngrams)
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, export_files(models["a"], tensors))
    same_embeddings(hub_load(tmp_path), Embedder.load(models["a"]))


def test_int8_precision_through_the_hub(tmp_path, models):
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, export_files(models["a"]))
    emb = hub_load(tmp_path, precision="int8")
    assert emb.precision == "int8"
    same_embeddings(emb, Embedder.load(models["a"], precision="int8"))


def test_first_layer_dtype_in_every_layout(tmp_path, models):
    """first_layer_dtype= reaches the loader in both layouts (Hub snapshot of the export,
    local export folder through luxical.load, local .npz folder): the embeddings are those
    of the .npz loaded with that table dtype."""
    expected = Embedder.load(models["a"], first_layer_dtype="float16")
    assert expected.first_layer_dtype == "float16"
    lay_out_snapshot(tmp_path / "hub", REPO, COMMIT_MAIN, export_files(models["a"]))
    emb = hub_load(tmp_path / "hub", first_layer_dtype="float16")
    assert emb.first_layer_dtype == "float16"
    same_embeddings(emb, expected)
    export = tmp_path / "export"
    export.mkdir()
    for name, data in export_files(models["a"]).items():
        (export / name).write_bytes(data)
    emb = luxical.load(str(export), first_layer_dtype="float16")
    assert emb.first_layer_dtype == "float16"
    same_embeddings(emb, expected)
    folder = tmp_path / "npz"
    folder.mkdir()
    (folder / "model.npz").write_bytes(npz_bytes(models["a"]))
    emb = Embedder.from_pretrained(folder, first_layer_dtype="float16")
    assert emb.first_layer_dtype == "float16"
    same_embeddings(emb, expected)


# ----------------------------------------------------------------------- revisions


def test_revision_selects_branch_tag_or_commit(tmp_path, models):
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, {"m.npz": npz_bytes(models["a"])})
    lay_out_snapshot(tmp_path, REPO, COMMIT_V1, export_files(models["b"]), refs=("v1",))
    a, b = Embedder.load(models["a"]), Embedder.load(models["b"])
    assert not np.array_equal(a(TEXTS), b(TEXTS))
    same_embeddings(hub_load(tmp_path), a)
    same_embeddings(hub_load(tmp_path, revision="main"), a)
    tagged = hub_load(tmp_path, revision="v1")
    same_embeddings(tagged, b)
    assert tagged.source == f"hf://{REPO}@{COMMIT_V1}/model.safetensors"
    same_embeddings(hub_load(tmp_path, revision=COMMIT_V1), b)
    with pytest.raises(FileNotFoundError, match=rf"'{REPO}' \(revision 'v2'\).*local_files_only"):
        hub_load(tmp_path, revision="v2")


def test_revision_in_a_child_process_through_load(tmp_path, models):
    cache = tmp_path / "cache"
    lay_out_snapshot(cache, REPO, COMMIT_MAIN, {"m.npz": npz_bytes(models["a"])})
    lay_out_snapshot(cache, REPO, COMMIT_V1, {"m.npz": npz_bytes(models["c"])}, refs=("v1",))
    got, source = embed_in_child(
        f"luxical.load({REPO!r}, revision='v1')", tmp_path / "e.npy", {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    )
    np.testing.assert_array_equal(got, Embedder.load(models["c"])(TEXTS))
    assert source == f"hf://{REPO}@{COMMIT_V1}/m.npz"


# ----------------------------------------------------------------------- which file


def test_npz_is_preferred_to_the_safetensors_export(tmp_path, models):
    files = {"luxical_one_rc4.npz": npz_bytes(models["a"]), **export_files(models["b"])}
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, files)
    same_embeddings(hub_load(tmp_path), Embedder.load(models["a"]))
    chosen = hub_load(tmp_path, filename="model.safetensors")
    same_embeddings(chosen, Embedder.load(models["b"]))
    assert chosen.source.endswith("/model.safetensors")


def test_of_several_npz_files_the_last_in_natural_order_with_a_warning(tmp_path, models, caplog):
    files = {"luxical_one_rc4.npz": npz_bytes(models["a"]), "luxical_one_rc10.npz": npz_bytes(models["b"])}
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, files)
    with caplog.at_level(logging.INFO, logger="luxical.hub"):
        emb = hub_load(tmp_path)
    same_embeddings(emb, Embedder.load(models["b"]))  # rc10, not the lexicographic last (rc4)
    assert emb.source == f"hf://{REPO}@{COMMIT_MAIN}/luxical_one_rc10.npz"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'luxical_one_rc10.npz'" in warnings[0] and "'luxical_one_rc4.npz'" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(emb.source in m for m in infos)
    same_embeddings(hub_load(tmp_path, filename="luxical_one_rc4.npz"), Embedder.load(models["a"]))


def test_choice_rule_by_name():
    assert hub.choose_model_file(["README.md", "a_rc2.npz", "a_rc10.npz", "a_rc9.npz"], where="x") == "a_rc10.npz"
    assert hub.choose_model_file(["config.json", "model.safetensors"], where="x") == "model.safetensors"
    assert hub.choose_model_file(["model.safetensors", "Z.NPZ"], where="x") == "Z.NPZ"
    with pytest.raises(FileNotFoundError, match=r"repo 'o/n' holds no Luxical model.*found 'README.md', 'other.safetensors', 'pytorch_model.bin'"):
        hub.choose_model_file(["pytorch_model.bin", "README.md", "other.safetensors"], where="repo 'o/n'")


def test_a_named_file_missing_from_the_snapshot(tmp_path, models):
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, {"m.npz": npz_bytes(models["a"])})
    with pytest.raises(FileNotFoundError, match=rf"'{REPO}'.*file 'other.npz'"):
        hub_load(tmp_path, filename="other.npz")


def test_a_snapshot_without_a_model_lists_what_it_holds(tmp_path):
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, {"config.json": b"{}", "README.md": b"hi"})
    with pytest.raises(FileNotFoundError, match=rf"'{REPO}'.*holds no Luxical model.*'config.json'"):
        hub_load(tmp_path)


# ----------------------------------------------------------------------- local folders


def test_local_folder_with_npz_needs_no_hub_package(tmp_path, models, monkeypatch):
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "luxical_one_rc4.npz").write_bytes(npz_bytes(models["a"]))
    (folder / "README.md").write_text("a model\n")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "safetensors", None)
    expected = Embedder.load(models["a"])
    for emb in (Embedder.from_pretrained(folder), Embedder.from_pretrained(str(folder)), luxical.load(str(folder)),
                luxical.load(folder)):
        same_embeddings(emb, expected)
    assert Embedder.from_pretrained(folder).source == str(folder / "luxical_one_rc4.npz")


def test_local_export_folder_as_the_wrapper_writes_it(tmp_path, models):
    folder = tmp_path / "luxical-one"
    folder.mkdir()
    for name, data in export_files(models["b"]).items():
        (folder / name).write_bytes(data)
    expected = Embedder.load(models["b"])
    emb = Embedder.from_pretrained(folder)
    same_embeddings(emb, expected)
    assert emb.source == str(folder / "model.safetensors")
    same_embeddings(luxical.load(str(folder)), expected)
    same_embeddings(luxical.load(folder / "model.safetensors"), expected)  # the file itself
    with pytest.raises(ValueError, match="revision='v1'.*local folder"):
        Embedder.from_pretrained(folder, revision="v1")


def test_a_local_folder_wins_over_a_hub_name(tmp_path, models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    (tmp_path / "owner" / "name" / "m.npz").write_bytes(npz_bytes(models["c"]))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # any Hub access would fail
    same_embeddings(luxical.load("owner/name"), Embedder.load(models["c"]))
    same_embeddings(Embedder.from_pretrained("owner/name"), Embedder.load(models["c"]))


def test_safetensors_file_reloaded_when_replaced(tmp_path, models):
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_bytes(wrapper_tensors(models["a"])))
    first = luxical.load(path)
    assert luxical.load(path) is first
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(safetensors_bytes(wrapper_tensors(models["b"])))
    replacement.replace(path)
    second = luxical.load(path)
    assert second is not first
    same_embeddings(second, Embedder.load(models["b"]))


# ----------------------------------------------------------------------- names, paths and errors


@pytest.mark.parametrize(
    ("name", "is_repo"),
    [
        ("DatologyAI/luxical-one", True),
        ("owner/model.v2", True),
        ("o/n_1", True),
        ("luxical-one", False),  # no owner
        ("a/b/c", False),
        ("./owner/name", False),
        ("/abs/path", False),
        ("models/m.npz", False),  # a model file's name is a path
        ("export/model.safetensors", False),
        ("owner/-name", False),
        ("", False),
    ],
)
def test_what_counts_as_a_repo_id(name, is_repo):
    assert hub.is_repo_id(name) is is_repo


def test_paths_are_never_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # a Hub attempt would be an ImportError
    with pytest.raises(FileNotFoundError, match="models/m.npz"):
        luxical.load("models/m.npz")
    with pytest.raises(FileNotFoundError, match="owner/name"):
        luxical.load(Path("owner/name"))
    with pytest.raises(FileNotFoundError, match="no-such-model.*not a Hugging Face Hub repo id"):
        Embedder.from_pretrained("no-such-model")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        luxical.load("no-such-model")


def test_missing_repo_offline_names_the_repo(tmp_path):
    lay_out_snapshot(tmp_path, "someone/else", COMMIT_MAIN, {"m.npz": b"not read"})
    with pytest.raises(FileNotFoundError, match=r"cannot load model 'luxical-test/absent'.*local_files_only.*does not hold"):
        hub_load(tmp_path, "luxical-test/absent")


def test_missing_repo_offline_through_load_in_a_child(tmp_path):
    proc = run_child(
        "import luxical; luxical.load('luxical-test/absent')",
        {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("FileNotFoundError: cannot load model 'luxical-test/absent'")
    assert "HF_HUB_OFFLINE is set" in last and str(tmp_path) in last
    assert "no local file or folder 'luxical-test/absent'" in last


def test_missing_hub_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"'owner/name'.*luxical\[hub\]") as err:
        luxical.load("owner/name")
    assert err.value.name == "huggingface_hub"


def test_missing_safetensors_package_names_the_extra(monkeypatch, tmp_path, models):
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, export_files(models["a"]))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match=r"model.safetensors.*luxical\[hub\]") as err:
        hub_load(tmp_path)
    assert err.value.name == "safetensors"


def test_revision_or_filename_with_a_file_path_is_refused(models):
    with pytest.raises(ValueError, match="revision= and filename=.*a.npz"):
        luxical.load(models["a"], revision="v1")
    with pytest.raises(ValueError, match="revision='v1'.*local file"):
        Embedder.from_pretrained(models["a"], revision="v1")


def test_an_empty_name_is_refused():
    # (Path("") is the current folder: an empty string must not load whatever model is there)
    with pytest.raises(ValueError, match="empty name"):
        luxical.load("")
    with pytest.raises(ValueError, match="empty name"):
        Embedder.from_pretrained("")


# ----------------------------------------------------------------------- damaged files


def damaged_cases(models: dict[str, Path]) -> dict[str, tuple[dict[str, bytes], type[Exception], str]]:
    good = export_files(models["a"])
    raw = good["model.safetensors"]
    t = wrapper_tensors(models["a"])
    no_version = {k: v for k, v in t.items() if k != "embedder.version"}
    bad_vals = dict(t, **{"embedder.ngram_vals": t["embedder.ngram_vals"] + 2**33})
    v2 = dict(t, **{"embedder.version": np.array([2], dtype=np.int64)})
    few_layers = dict(t, **{"embedder.num_layers": np.array([4], dtype=np.int64)})
    bad_ngram = dict(t, **{"embedder.recognized_ngrams": t["embedder.recognized_ngrams"] - 10**6})
    nan_layer = dict(t, **{"embedder.nn_layer_1": np.full_like(t["embedder.nn_layer_1"], np.nan)})
    swapped_keys = dict(t, **{"embedder.ngram_keys": t["embedder.ngram_keys"][::-1].copy()})
    short_vals = dict(t, **{"embedder.ngram_vals": t["embedder.ngram_vals"][:-1].copy()})
    return {
        "truncated": (dict(good, **{"model.safetensors": raw[: len(raw) // 2]}), ModelFormatError, "not a readable safetensors file"),
        "header": (dict(good, **{"model.safetensors": raw[:8] + b"#" + raw[9:]}), ModelFormatError, "not a readable safetensors file"),
        "empty": (dict(good, **{"model.safetensors": b""}), ModelFormatError, "not a readable safetensors file"),
        "other model": (
            dict(good, **{"model.safetensors": safetensors_bytes({"bert.embeddings.weight": np.zeros((4, 2), np.float32)})}),
            ModelFormatError, r"not a Luxical safetensors export.*'embedder.version'.*'bert.embeddings.weight'",
        ),
        "missing tensor": (dict(good, **{"model.safetensors": safetensors_bytes(no_version)}), ModelFormatError, "no tensor 'embedder.version'"),
        "inconsistent values": (dict(good, **{"model.safetensors": safetensors_bytes(bad_vals)}), ModelFormatError, "'embedder.ngram_vals'"),
        "negative token id": (dict(good, **{"model.safetensors": safetensors_bytes(bad_ngram)}), ModelFormatError, "'embedder.recognized_ngrams' holds token id -"),
        "layer count": (dict(good, **{"model.safetensors": safetensors_bytes(few_layers)}), ModelFormatError, "'embedder.num_layers' is 4 but tensor 'embedder.nn_layer_3' is missing"),
        "non-finite weight": (dict(good, **{"model.safetensors": safetensors_bytes(nan_layer)}), ModelFormatError, "embedder.nn_layer_1 has a non-finite weight"),
        "keys not the hashes": (
            dict(good, **{"model.safetensors": safetensors_bytes(swapped_keys)}), ModelFormatError,
            r"embedder\.ngram_keys\[\d+\] is not the FNV-1a hash of embedder\.recognized_ngrams\[\d+\]",
        ),
        "too few values": (
            dict(good, **{"model.safetensors": safetensors_bytes(short_vals)}), ModelFormatError,
            r"embedder\.ngram_keys/ngram_vals has \d+ keys and \d+ values",
        ),
        "newer version": (dict(good, **{"model.safetensors": safetensors_bytes(v2)}), UnsupportedFormatVersionError, "version 2"),
        "config of another model": (dict(good, **{"config.json": b'{"model_type": "bert"}'}), ModelFormatError, "model_type 'bert'"),
    }


@pytest.mark.parametrize(
    "case",
    ["truncated", "header", "empty", "other model", "missing tensor", "inconsistent values", "negative token id",
     "layer count", "non-finite weight", "keys not the hashes", "too few values", "newer version",
     "config of another model"],
)
def test_damaged_safetensors_export_is_a_clear_error(tmp_path, models, case, monkeypatch, weight_cache):
    import tempfile

    files, error, message = damaged_cases(models)[case]
    lay_out_snapshot(tmp_path / "cache", REPO, COMMIT_MAIN, files)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(error, match=message) as err:
        hub_load(tmp_path / "cache")
    if case != "config of another model":
        assert str(err.value).startswith(f"cannot load model 'hf://{REPO}@{COMMIT_MAIN}/model.safetensors'")
    else:
        assert f"'{REPO}'" in str(err.value)
    # The file converted to is not what the user named, and nothing of it is left.
    assert str(weight_cache) not in str(err.value) and ".partial" not in str(err.value)
    assert [p.name for p in weight_cache.glob("*") if not p.name.endswith(".lock")] == []
    assert list(scratch.iterdir()) == []


class _Trap:
    """Unpickling this creates the file `marker`: a reader that unpickles runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_npz_snapshot_with_a_pickled_array_is_refused_unread(tmp_path, models):
    marker = tmp_path / "unpickled"
    with np.load(models["a"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["idf_values"] = np.array([_Trap(marker)], dtype=object)
    trapped = tmp_path / "trapped.npz"
    np.savez(trapped, **arrays)  # numpy pickles the object array into the file
    lay_out_snapshot(tmp_path / "cache", REPO, COMMIT_MAIN, {"m.npz": trapped.read_bytes()})
    with pytest.raises(ModelFormatError, match="idf_values"):
        hub_load(tmp_path / "cache")
    assert not marker.exists()


# ----------------------------------------------------------------------- pickling and caching


@pytest.mark.parametrize("layout", ["npz", "safetensors"])
def test_pickle_round_trip_keeps_model_and_source(tmp_path, models, layout):
    files = {"m.npz": npz_bytes(models["a"])} if layout == "npz" else export_files(models["a"])
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, files)
    emb = hub_load(tmp_path)
    back = pickle.loads(pickle.dumps(emb))
    same_embeddings(back, Embedder.load(models["a"]))
    assert back.source == emb.source
    assert back.fingerprint == emb.fingerprint


def test_load_resolves_a_hub_name_once_per_process(tmp_path, models):
    cache = tmp_path / "cache"
    lay_out_snapshot(cache, REPO, COMMIT_MAIN, export_files(models["a"]))
    proc = run_child(
        f"""
        import shutil, luxical
        first = luxical.load({REPO!r})
        shutil.rmtree({str(cache)!r})  # later calls must not need the cache (nor the Hub)
        assert luxical.load({REPO!r}) is first
        """,
        {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow  # huggingface_hub retries a refused connection 5 times with backoff (~25 s)
def test_an_unreachable_hub_falls_back_to_the_cached_snapshot(tmp_path, models):
    import socket

    with socket.socket() as s:  # a local port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "cache"
    lay_out_snapshot(cache, REPO, COMMIT_MAIN, {"m.npz": npz_bytes(models["a"])})
    got, source = embed_in_child(
        f"luxical.load({REPO!r})", tmp_path / "e.npy", {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    )
    np.testing.assert_array_equal(got, Embedder.load(models["a"])(TEXTS))
    assert source == f"hf://{REPO}@{COMMIT_MAIN}/m.npz"


def test_import_luxical_loads_no_hub_package():
    proc = run_child(
        "import sys, luxical; print(sorted(m for m in ('huggingface_hub', 'safetensors', 'luxical.hub') if m in sys.modules))",
        {},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ----------------------------------------------------------------------- converted files and pickles for workers


def converted_name(safetensors: bytes) -> str:
    """The file name a safetensors export converts to: its SHA-256 and the conversion's version."""
    return f"{hashlib.sha256(safetensors).hexdigest()}.st1.npz"


def cache_entries(weight_cache: Path) -> list[str]:
    """The weight cache's files other than lock files."""
    return sorted(p.name for p in weight_cache.iterdir() if not p.name.endswith(".lock")) if weight_cache.exists() else []


def snapshot_files(layout: str, npz: Path) -> tuple[dict[str, bytes], str]:
    """A snapshot of the model in `npz` in either layout, and the file it is read from."""
    if layout == "npz":
        return {"m.npz": npz_bytes(npz)}, "m.npz"
    return export_files(npz), "model.safetensors"


def test_a_safetensors_export_is_converted_once_into_the_weight_cache(tmp_path, models, weight_cache):
    files = export_files(models["a"])
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, files)
    expected = Embedder.load(models["a"])
    emb = hub_load(tmp_path / "hf")
    converted = weight_cache / converted_name(files["model.safetensors"])
    assert cache_entries(weight_cache) == [converted.name]
    assert stat.S_IMODE(converted.stat().st_mode) & 0o222 == 0  # read-only, like every weight-cache file
    # Numpy reads it (no pickles) as the reference's .npz arrays of the same model (the
    # .npz luxical saved also records its writer's version).
    with np.load(converted, allow_pickle=False) as got, np.load(models["a"], allow_pickle=False) as want:
        assert sorted(got.files) == sorted(set(want.files) - {"luxical_writer_version"})
        for name in got.files:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    same_embeddings(emb, expected)
    before = converted.stat()

    # Reused, not rewritten: by a second load from the Hub cache, and by a local copy of
    # the same file (same content, same name), each in a new process.
    (tmp_path / "local").mkdir()
    local = tmp_path / "local" / "model.safetensors"
    local.write_bytes(files["model.safetensors"])
    for expr in (f"luxical.Embedder.from_pretrained({REPO!r})", f"luxical.load({str(local)!r})"):
        got, _ = embed_in_child(expr, tmp_path / "e.npy", {"HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
        np.testing.assert_array_equal(got, expected(TEXTS))
    again = hub_load(tmp_path / "hf")
    same_embeddings(again, expected)
    after = converted.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (before.st_ino, before.st_mtime_ns, before.st_ctime_ns)
    assert cache_entries(weight_cache) == [converted.name]


def _flip_a_weight_byte(path: Path) -> None:
    """Flips the last byte of the largest array's data (a weight, not a header)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26: info.header_offset + 28], "little"), int.from_bytes(
        data[info.header_offset + 28: info.header_offset + 30], "little"
    )
    end = info.header_offset + 30 + name_len + extra_len + info.compress_size
    data[end - 1] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "flipped weight byte", "empty", "not a zip"])
def test_a_damaged_converted_file_is_noticed_and_converted_again(tmp_path, models, weight_cache, damage, caplog):
    files = export_files(models["b"])
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, files)
    hub_load(tmp_path / "hf")
    converted = weight_cache / converted_name(files["model.safetensors"])
    good = converted.read_bytes()
    converted.chmod(0o644)
    if damage == "truncated":
        converted.write_bytes(good[: len(good) // 2])
    elif damage == "flipped weight byte":
        _flip_a_weight_byte(converted)
    elif damage == "empty":
        converted.write_bytes(b"")
    else:
        converted.write_bytes(b"#" * len(good))
    assert converted.read_bytes() != good
    with caplog.at_level(logging.INFO, logger="luxical.hub"):
        emb = hub_load(tmp_path / "hf")
    same_embeddings(emb, Embedder.load(models["b"]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(converted) in warnings[0] and "damaged" in warnings[0], warnings
    # Converted again, to the same bytes (the conversion is deterministic), read-only again.
    assert converted.read_bytes() == good
    assert stat.S_IMODE(converted.stat().st_mode) & 0o222 == 0
    assert cache_entries(weight_cache) == [converted.name]


@pytest.mark.parametrize("layout", ["npz", "safetensors"])
def test_a_hub_model_pickles_by_path_with_its_origin(tmp_path, models, layout):
    files, filename = snapshot_files(layout, models["a"])
    lay_out_snapshot(tmp_path, REPO, COMMIT_MAIN, files)
    emb = hub_load(tmp_path)
    blob = pickle.dumps(emb)
    assert len(blob) < 2000 < len(emb.to_bytes()) // 50, len(blob)  # a path and a name, not the weights
    state = emb.__getstate__()
    assert "bytes" not in state and Path(state["path"]).is_file()
    assert state["hub"] == {"repo_id": REPO, "commit": COMMIT_MAIN, "filename": filename}
    back = pickle.loads(blob)
    same_embeddings(back, Embedder.load(models["a"]))
    assert back.source == f"hf://{REPO}@{COMMIT_MAIN}/{filename}" and back.fingerprint == emb.fingerprint


def unpickle_in_child(blob: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Unpickles the Embedder in `blob` in a fresh process, embeds TEXTS into `out`, and prints
    a JSON line: its source, the path it pickles by there, and which modules it needed."""
    return run_child(
        f"""
        import json, pickle, sys, numpy as np
        emb = pickle.loads(open({str(blob)!r}, "rb").read())
        np.save({str(out)!r}, emb({TEXTS!r}))
        print(json.dumps({{"source": emb.source, "path": emb.__getstate__().get("path"),
                          "hub_imported": "huggingface_hub" in sys.modules}}))
        """,
        env,
    )


@pytest.mark.parametrize("layout", ["npz", "safetensors"])
def test_a_worker_without_the_file_fetches_the_same_commit_from_its_own_hub_cache(tmp_path, models, weight_cache, layout):
    files, filename = snapshot_files(layout, models["c"])
    lay_out_snapshot(tmp_path / "hf-driver", REPO, COMMIT_MAIN, files)
    emb = hub_load(tmp_path / "hf-driver")
    expected = emb(TEXTS)
    blob = tmp_path / "emb.pkl"
    blob.write_bytes(pickle.dumps(emb))
    # Another host: neither the driver's Hub cache nor its weight cache; its own Hub cache
    # holds the same commit, here under another branch name (main has moved on).
    shutil.rmtree(tmp_path / "hf-driver")
    shutil.rmtree(weight_cache, ignore_errors=True)
    worker_hf = tmp_path / "hf-worker"
    lay_out_snapshot(worker_hf, REPO, COMMIT_MAIN, files, refs=("old",))
    lay_out_snapshot(worker_hf, REPO, COMMIT_V1, {"m.npz": npz_bytes(models["a"])})
    worker_cache = tmp_path / "worker-luxical-cache"
    proc = unpickle_in_child(blob, tmp_path / "e.npy", {
        "HF_HUB_CACHE": str(worker_hf), "HF_HUB_OFFLINE": "1", "LUXICAL_CACHE_DIR": str(worker_cache),
    })
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), expected)
    np.testing.assert_array_equal(expected, Embedder.load(models["c"])(TEXTS))
    info = json.loads(proc.stdout)
    assert info["source"] == f"hf://{REPO}@{COMMIT_MAIN}/{filename}"
    # It pickles by its own copy there: the worker's Hub cache, or its conversion of it.
    assert info["path"].startswith(str(worker_cache if layout == "safetensors" else worker_hf.resolve())), info


def test_a_worker_with_the_file_reads_it_without_the_hub(tmp_path, models):
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, export_files(models["a"]))
    emb = hub_load(tmp_path / "hf")
    blob = tmp_path / "emb.pkl"
    blob.write_bytes(pickle.dumps(emb))
    (tmp_path / "empty-hf").mkdir()
    proc = unpickle_in_child(blob, tmp_path / "e.npy", {"HF_HUB_CACHE": str(tmp_path / "empty-hf"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), emb(TEXTS))
    info = json.loads(proc.stdout)
    assert info["path"] == emb.__getstate__()["path"] and info["hub_imported"] is False


@pytest.mark.parametrize("layout", ["npz", "safetensors"])
def test_a_worker_with_the_model_nowhere_names_repo_commit_and_file(tmp_path, models, weight_cache, layout):
    files, filename = snapshot_files(layout, models["a"])
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, files)
    emb = hub_load(tmp_path / "hf")
    path = emb.__getstate__()["path"]
    blob = tmp_path / "emb.pkl"
    blob.write_bytes(pickle.dumps(emb))
    shutil.rmtree(tmp_path / "hf")
    shutil.rmtree(weight_cache, ignore_errors=True)
    empty = tmp_path / "empty-hf"
    lay_out_snapshot(empty, REPO, COMMIT_V1, {"m.npz": npz_bytes(models["b"])})  # the repo, but not that commit
    proc = unpickle_in_child(blob, tmp_path / "e.npy", {"HF_HUB_CACHE": str(empty), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"FileNotFoundError: cannot unpickle the Embedder of hf://{REPO}@{COMMIT_MAIN}/{filename}"), last
    assert f"'{path}' does not exist here" in last
    assert f"repo '{REPO}' at commit '{COMMIT_MAIN}', file '{filename}'" in last
    assert "HF_HUB_OFFLINE is set" in last and str(empty) in last


def test_a_local_safetensors_model_pickles_by_path_and_converts_again_where_needed(tmp_path, models, weight_cache):
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_bytes(wrapper_tensors(models["b"])))
    emb = luxical.load(path)
    assert emb.source == str(path)
    blob = tmp_path / "emb.pkl"
    blob.write_bytes(pickle.dumps(emb))
    assert blob.stat().st_size < 2000
    shutil.rmtree(weight_cache)  # a worker whose weight cache lacks it, on a shared filesystem
    worker_cache = tmp_path / "worker-luxical-cache"
    proc = unpickle_in_child(blob, tmp_path / "e.npy", {"LUXICAL_CACHE_DIR": str(worker_cache)})
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), Embedder.load(models["b"])(TEXTS))
    assert cache_entries(worker_cache) == [converted_name(path.read_bytes())]


def test_clear_weight_cache_removes_converted_files(tmp_path, models, weight_cache):
    files = export_files(models["a"])
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, files)
    emb = hub_load(tmp_path / "hf")
    local = tmp_path / "other.safetensors"
    local.write_bytes(safetensors_bytes(wrapper_tensors(models["b"])))
    other = luxical.load(local)
    (weight_cache / "notes.txt").write_text("not ours")
    assert len(cache_entries(weight_cache)) == 3
    assert luxical.clear_weight_cache() == 2
    assert sorted(p.name for p in weight_cache.iterdir()) == ["notes.txt"]
    # Models loaded before still embed; the Hub one still pickles by reference (its file is
    # gone: the worker fetches repo@commit), the local one by value.
    same_embeddings(emb, Embedder.load(models["a"]))
    assert "bytes" not in emb.__getstate__() and emb.__getstate__()["hub"]["commit"] == COMMIT_MAIN
    assert "bytes" in other.__getstate__()
    same_embeddings(pickle.loads(pickle.dumps(other)), Embedder.load(models["b"]))
    # The next load converts again.
    hub_load(tmp_path / "hf")
    assert cache_entries(weight_cache) == sorted(["notes.txt", converted_name(files["model.safetensors"])])


def test_an_unwritable_weight_cache_falls_back_to_a_temporary_file(tmp_path, models, monkeypatch):
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("a file, so no directory can be made under it")
    monkeypatch.setenv("LUXICAL_CACHE_DIR", str(blocker / "cache"))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, export_files(models["c"]))
    emb = hub_load(tmp_path / "hf")
    same_embeddings(emb, Embedder.load(models["c"]))
    assert list(scratch.iterdir()) == []  # the temporary conversion is gone
    # With no file of its own, it pickles by value (and still says where it came from).
    state = emb.__getstate__()
    assert "bytes" in state
    back = pickle.loads(pickle.dumps(emb))
    same_embeddings(back, emb)
    assert back.source == f"hf://{REPO}@{COMMIT_MAIN}/model.safetensors"


def test_processes_converting_the_same_file_at_once_leave_one_whole_file(tmp_path, models, weight_cache):
    files = export_files(models["a"])
    lay_out_snapshot(tmp_path / "hf", REPO, COMMIT_MAIN, files)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_CACHE=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    code = textwrap.dedent(f"""
        import sys, numpy as np, luxical
        sys.stdin.readline()  # start together
        np.save(sys.argv[1], luxical.load({REPO!r})({TEXTS!r}))
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"e{i}.npy")], env=env, stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
        p.stderr.close()
        p.stdin.close()
    expected = Embedder.load(models["a"])(TEXTS)
    for i in range(3):
        np.testing.assert_array_equal(np.load(tmp_path / f"e{i}.npy"), expected)
    assert cache_entries(weight_cache) == [converted_name(files["model.safetensors"])]  # no temporary file left
