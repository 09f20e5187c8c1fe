"""luxical.ray.LuxicalEmbed in a real local Ray Data pipeline."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray integration needs ray[data] (installed by scripts/test.sh)")
pytest.importorskip("ray.data", reason="needs ray[data]")

import pyarrow as pa  # noqa: E402

import luxical.ray  # noqa: E402
from luxical.quantize import quantize  # noqa: E402

# Ray Data sets its own deprecated options internally (e.g. use_push_based_shuffle).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _run(ds, actors: int = 2, **kwargs) -> pa.Table:
    out = ds.map_batches(
        luxical.ray.LuxicalEmbed,
        fn_constructor_kwargs=kwargs,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    return pa.concat_tables(ray.get(out.to_arrow_refs()))


def test_map_batches_equals_local_and_keeps_ids(ray_session, many_real_texts, fixture_embedder, fixture_model_path):
    ids = np.arange(len(many_real_texts)) * 5 + 2
    table = pa.table({"id": ids, "text": many_real_texts})
    step = -(-table.num_rows // 8)
    ds = ray.data.from_arrow([table.slice(i, step) for i in range(0, table.num_rows, step)])  # 8 blocks
    out = _run(ds, model=str(fixture_model_path))
    assert out.column_names == ["id", "text", "embedding"]
    got_ids = out.column("id").to_numpy()
    assert sorted(got_ids) == sorted(ids)
    order = (got_ids - 2) // 5
    emb = np.stack(out.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(emb, fixture_embedder(many_real_texts)[order])


def test_quantized_and_nulls(ray_session, fixture_embedder, fixture_model_path):
    texts = ["first document", None, "a third one"]
    ds = ray.data.from_arrow(pa.table({"text": pa.array(texts, pa.string())}))
    out = _run(ds, actors=1, model=str(fixture_model_path), nulls="null", quantize="uint8")
    col = out.column("embedding")
    assert col.null_count == 1 and col[1].as_py() is None
    want = quantize(fixture_embedder(["first document", "a third one"]), "uint8")
    np.testing.assert_array_equal(np.frombuffer(col[0].as_py(), np.uint8), want[0])
    np.testing.assert_array_equal(np.frombuffer(col[2].as_py(), np.uint8), want[1])


def test_numpy_and_pandas_batches(fixture_embedder, fixture_model_path):
    import pandas as pd

    embed = luxical.ray.LuxicalEmbed(str(fixture_model_path), num_threads=1)
    texts = np.array(["some text", "other text"], dtype=object)
    np.testing.assert_array_equal(embed({"text": texts})["embedding"], fixture_embedder(list(texts)))
    frame = embed(pd.DataFrame({"text": texts}))
    np.testing.assert_array_equal(np.stack(frame["embedding"].to_numpy()), fixture_embedder(list(texts)))
    with pytest.raises(KeyError, match="no column 'body'"):
        luxical.ray.LuxicalEmbed(str(fixture_model_path), text_column="body")({"text": texts})
