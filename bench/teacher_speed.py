#!/usr/bin/env python3
"""Teacher inference throughput on CPU: several ways of running the same teacher
(all-MiniLM-L6-v2, 256 tokens) on the same documents, each checked against float32
text by text.

Paths:
  float32          sentence-transformers as is (``teacher.encode(..., precision="float32")``)
  bfloat16         torch bfloat16 CPU autocast (``teacher.encode(..., precision="bfloat16")``)
  onnx-float32     the teacher's BERT exported with torch.onnx.export, run by ONNX Runtime,
                   same tokenizer, mean pooling over the attention mask, L2-normalised
                   (must reach cosine > 0.9999 to float32 on every text, or the run stops)
  onnx-int8        that export quantised by onnxruntime.quantization.quantize_dynamic
                   (QInt8 weights, per-tensor scales: the defaults)
  onnx-int8-pc     the same with per-channel weight scales
  onnx-int8-pc-mixed  per-channel, the six FFN output layers (intermediate -> hidden)
                   left in float32
The ONNX paths need onnxruntime (and onnx); they are left out when it is not importable.
The ONNX paths batch like sentence-transformers: texts sorted by length, longest first,
each batch padded to its longest text.

Documents: the repository's real-text sample (tests/data/real_texts.jsonl.xz), rows of
kind "long", each cut to its first --words words (training-sized documents).

Method: one warm-up run per path (its embeddings give the cosines to float32), then
--repeats rounds in which every path runs once (order rotated each round); median docs/s.
torch and ONNX Runtime use the same number of threads (--threads). Then, for the fastest
path whose every text reaches --min-cosine to float32, docs/s at --batch-sizes (alternating
rounds as well). Exported models go to a temporary folder (or --work, outside the repo).

Usage:
  nice -n 5 .venv/bin/python bench/teacher_speed.py [--docs 512] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import logging
import lzma
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "real_texts.jsonl.xz"
TEACHER = "all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 256
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ALL_PATHS = ("float32", "bfloat16", "onnx-float32", "onnx-int8", "onnx-int8-pc", "onnx-int8-pc-mixed")

Encoder = Callable[[Sequence[str], int], np.ndarray]  # (texts, batch_size) -> L2-normalised float32


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_documents(n_docs: int, n_words: int) -> list[str]:
    with lzma.open(SAMPLE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    long = [" ".join(r["text"].split()[:n_words]) for r in rows if r["kind"] == "long"]
    if n_docs > len(long):
        raise SystemExit(f"--docs {n_docs}: the sample has only {len(long)} long documents")
    return long[:n_docs]


def cpu_description() -> tuple[str, dict[str, bool]]:
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, {flag: flag in flags for flag in CPU_FLAGS}


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- ONNX
def export_onnx(model, path: Path, sample: Sequence[str]) -> None:
    """The teacher's transformer (a BERT) to ONNX: inputs input_ids, attention_mask,
    token_type_ids; output last_hidden_state; batch and sequence axes dynamic."""
    import torch

    bert = model[0].auto_model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids, return_dict=True).last_hidden_state

    # A padded example batch, so the traced graph keeps the attention-mask path.
    enc = model.tokenizer(list(sample), padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
    assert int(enc["attention_mask"].min()) == 0, "the export example must contain padding"
    axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(bert).eval(), tuple(enc[k] for k in ONNX_INPUTS), str(path),
            input_names=list(ONNX_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
            opset_version=17, do_constant_folding=True, dynamo=False,
        )


def quantize(src: Path, dst: Path, *, per_channel: bool, exclude_ffn_output: bool) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude = None
    if exclude_ffn_output:
        graph = onnx.load(str(src), load_external_data=False).graph
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and re.search(r"/layer\.\d+/output/dense/", n.name)]
        assert exclude, "no FFN output layers found in the export"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing": it changed nothing here (see bench/README.md)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         nodes_to_exclude=exclude)
    finally:
        root.setLevel(level)


def onnx_encoder(path: Path, tokenizer, threads: int) -> Encoder:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
        # As sentence-transformers: longest first, each batch padded to its longest text.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), 0), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_SEQ_LENGTH,
                            return_tensors="np")
            hidden = session.run(None, {k: np.asarray(enc[k], dtype=np.int64) for k in ONNX_INPUTS})[0]
            mask = np.asarray(enc["attention_mask"], dtype=np.float32)[:, :, None]
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)  # Pooling (mean)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # Normalize
            if out.shape[1] == 0:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        return out

    return encode


# ----------------------------------------------------------------------------- timing
def timed(fn: Encoder, texts: Sequence[str], batch_size: int) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    emb = fn(texts, batch_size)
    return len(texts) / (time.perf_counter() - t), emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=512, help="documents (long rows of the sample)")
    ap.add_argument("--words", type=int, default=200, help="each document cut to its first N words")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batch-sizes", type=int, nargs="*", default=[32, 64, 128],
                    help="batch sizes tried for the best path (none: skip)")
    ap.add_argument("--paths", nargs="+", choices=ALL_PATHS, default=list(ALL_PATHS))
    ap.add_argument("--min-cosine", type=float, default=0.99, help="the bar for 'best path' (every text)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the ONNX files (default: a temp folder)")
    args = ap.parse_args()

    import torch

    from luxical.training.teacher import encode, load_teacher

    torch.set_num_threads(args.threads)
    paths = ["float32"] + [p for p in args.paths if p != "float32"]  # float32 is the reference
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
        if any(p.startswith("onnx") for p in paths):
            log("onnxruntime is not importable: ONNX paths left out")
        paths = [p for p in paths if not p.startswith("onnx")]

    texts = load_documents(args.docs, args.words)
    model = load_teacher(TEACHER, device="cpu", max_seq_length=MAX_SEQ_LENGTH)
    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=MAX_SEQ_LENGTH + 1)["input_ids"]]
    tokens = [min(n, MAX_SEQ_LENGTH) for n in lengths]
    encoders: dict[str, Encoder] = {
        "float32": lambda t, bs: encode(model, t, batch_size=bs, precision="float32"),
        "bfloat16": lambda t, bs: encode(model, t, batch_size=bs, precision="bfloat16"),
    }

    tmp = None
    if any(p.startswith("onnx") for p in paths):
        if args.work is not None:
            work = args.work.resolve()
            if work == REPO or REPO in work.parents:
                raise SystemExit(f"--work {work} is inside the repository: put the ONNX files elsewhere")
            work.mkdir(parents=True, exist_ok=True)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="teacher_speed_")
            work = Path(tmp.name)
        fp32 = work / "teacher_fp32.onnx"
        t = time.perf_counter()
        export_onnx(model, fp32, ["a short text", texts[0]])
        log(f"exported {fp32} ({fp32.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        variants = {
            "onnx-float32": fp32,
            "onnx-int8": (work / "teacher_int8.onnx", dict(per_channel=False, exclude_ffn_output=False)),
            "onnx-int8-pc": (work / "teacher_int8_pc.onnx", dict(per_channel=True, exclude_ffn_output=False)),
            "onnx-int8-pc-mixed": (work / "teacher_int8_pc_mixed.onnx", dict(per_channel=True, exclude_ffn_output=True)),
        }
        for name in paths:
            if not name.startswith("onnx"):
                continue
            spec = variants[name]
            if isinstance(spec, tuple):
                dst, kw = spec
                quantize(fp32, dst, **kw)
                log(f"quantised {dst.name} ({dst.stat().st_size / 1e6:.0f} MB)")
                spec = dst
            encoders[name] = onnx_encoder(spec, model.tokenizer, args.threads)

    cpu, flags = cpu_description()
    header = [
        f"CPU: {cpu}; flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()),
        f"threads: {args.threads} (torch.set_num_threads, ORT intra_op_num_threads); "
        f"os.cpu_count() = {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}",
        f"torch {torch.__version__}" + (f", onnxruntime {onnxruntime.__version__}" if onnxruntime else ""),
        f"teacher {TEACHER}, max_seq_length {MAX_SEQ_LENGTH}, batch size {args.batch_size}; "
        f"{len(texts)} long documents of the repository sample cut to {args.words} words "
        f"({statistics.mean(tokens):.0f} tokens on average after truncation, {sum(n > MAX_SEQ_LENGTH for n in lengths)} truncated)",
        f"median of {args.repeats} alternating runs after one warm-up run per path",
    ]
    for line in header:
        log(line)

    # Warm-up (and the embeddings compared with float32).
    embs: dict[str, np.ndarray] = {}
    rates: dict[str, list[float]] = {p: [] for p in paths}
    for name in paths:
        rate, embs[name] = timed(encoders[name], texts, args.batch_size)
        log(f"warm-up {name}: {rate:.1f} docs/s")
    ref = embs["float32"]
    cos = {name: np.sum(ref * emb, axis=1) for name, emb in embs.items()}
    if "onnx-float32" in cos and cos["onnx-float32"].min() <= 0.9999:
        raise SystemExit(f"ONNX float32 export reaches only cosine {cos['onnx-float32'].min():.6f} to "
                         "sentence-transformers float32: the ONNX pipeline is wrong")

    for r in range(args.repeats):
        k = r % len(paths)
        for name in paths[k:] + paths[:k]:
            rate, _ = timed(encoders[name], texts, args.batch_size)
            rates[name].append(rate)
            log(f"round {r + 1} {name}: {rate:.1f} docs/s")

    med = {name: statistics.median(v) for name, v in rates.items()}
    lines = [
        "| path | docs/s (median) | ratio to float32 | lowest cosine to float32 | mean cosine to float32 | runs (docs/s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in paths:
        lines.append(
            f"| {name} | {med[name]:.1f} | {med[name] / med['float32']:.2f}x | {cos[name].min():.5f} | "
            f"{cos[name].mean():.5f} | {', '.join(f'{x:.1f}' for x in rates[name])} |"
        )

    ok = [n for n in paths if cos[n].min() >= args.min_cosine]
    best = max(ok, key=lambda n: med[n])
    sweep_lines: list[str] = []
    if args.batch_sizes:
        sizes = list(dict.fromkeys(args.batch_sizes))
        sweep: dict[int, list[float]] = {bs: [] for bs in sizes}
        for bs in sizes:  # a short warm-up at each batch size
            timed(encoders[best], texts[: 2 * bs], bs)
        for r in range(args.repeats):
            k = r % len(sizes)
            for bs in sizes[k:] + sizes[:k]:
                rate, _ = timed(encoders[best], texts, bs)
                sweep[bs].append(rate)
                log(f"batch sweep round {r + 1} {best} batch {bs}: {rate:.1f} docs/s")
        base = statistics.median(sweep[args.batch_size]) if args.batch_size in sweep else None
        sweep_lines = [
            "",
            f"Batch size, best path ({best}: fastest with cosine >= {args.min_cosine} on every text):",
            "",
            "| batch size | docs/s (median) | ratio to batch " + (str(args.batch_size) if base else "-") + " | runs (docs/s) |",
            "|---|---|---|---|",
        ]
        for bs in sizes:
            m = statistics.median(sweep[bs])
            sweep_lines.append(f"| {bs} | {m:.1f} | {f'{m / base:.2f}x' if base else '-'} | "
                               f"{', '.join(f'{x:.1f}' for x in sweep[bs])} |")

    print("\n".join(header))
    print()
    print("\n".join(lines + sweep_lines))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
