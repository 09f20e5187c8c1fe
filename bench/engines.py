"""Docs/s through the data-engine integrations vs plain local embedding, same model, same
documents, same machine (all cores).

    .venv/bin/python bench/engines.py [--model M.npz] [--repeats 3] [--engines spark,dask,ray]

Local: ``Embedder(texts)`` with all cores. Spark: ``luxical.spark.embed_dataframe`` on a
``local[cores]`` session (spark.task.cpus=1), DataFrame cached first, forced with the
``noop`` writer. Dask: ``embed_array`` on a LocalCluster with one single-threaded worker
process per core. Ray: ``LuxicalEmbed`` with one actor per core. Each engine is warmed up
once (model loaded in its workers) before the timed runs; the median is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import load_corpora  # noqa: E402

import luxical  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: workers start, the model is loaded and cached
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_local(texts, model, cores, repeats):
    emb = luxical.load(model)
    return _median_time(lambda: emb(texts, num_threads=cores), repeats)


def bench_spark(texts, model, cores, repeats):
    import luxical.spark
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{cores}]").config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string").repartition(4 * cores).cache()
    df.count()
    run = lambda: luxical.spark.embed_dataframe(df, "text", model=model).write.format("noop").mode("overwrite").save()  # noqa: E731
    try:
        return _median_time(run, repeats)
    finally:
        spark.stop()


def bench_dask(texts, model, cores, repeats):
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    import luxical.dask

    with LocalCluster(n_workers=cores, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        ds = client.persist(dd.from_pandas(pd.Series(texts, name="text"), npartitions=4 * cores))
        return _median_time(lambda: luxical.dask.embed_array(ds, model, num_threads=1).compute(), repeats)


def bench_ray(texts, model, cores, repeats):
    import pyarrow as pa
    import ray

    import luxical.ray

    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        table = pa.table({"text": texts})
        step = -(-len(texts) // (4 * cores))
        ds = ray.data.from_arrow([table.slice(i, step) for i in range(0, len(texts), step)]).materialize()

        def run():
            out = ds.map_batches(
                luxical.ray.LuxicalEmbed, fn_constructor_kwargs={"model": model}, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=cores), num_cpus=1,
            )
            out.materialize()

        return _median_time(run, repeats)
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model .npz (default: the shipped default model)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-short", type=int, default=40000)
    ap.add_argument("--n-long", type=int, default=3000)
    ap.add_argument("--engines", default="spark,dask,ray")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    corpora, source = load_corpora(args.n_short, args.n_long)
    print(f"# {source}; {cores} cores; model {args.model or 'default'}")
    print("| docs | engine | docs/s | vs local |")
    print("|---|---|---|---|")
    for kind, texts in corpora.items():
        local = bench_local(texts, args.model, cores, args.repeats)
        print(f"| {kind} ({len(texts)}) | local | {len(texts) / local:,.0f} | 1.00x |", flush=True)
        for engine in args.engines.split(","):
            t = globals()[f"bench_{engine}"](texts, args.model, cores, args.repeats)
            print(f"| {kind} ({len(texts)}) | {engine} | {len(texts) / t:,.0f} | {local / t:.2f}x |", flush=True)


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
