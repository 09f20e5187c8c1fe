"""Fitting a static (bag-of-n-grams) student to a teacher by regression, whitening it,
and aligning its relations between texts with the teacher's (`fit_alignment`).

The default model embeds a text as the whitened, TF-IDF-weighted sum of its word pieces'
vectors. The vectors start as the teacher's embeddings of each word piece's string
(model2vec) and are then fitted so that the weighted sums point where the teacher's own
embeddings do (the idea of model2vec's "tokenlearn"):

- on documents: ``cos(tfidf(doc) @ V, teacher(doc))``, and
- on words: ``cos(tfidf(word) @ V, teacher(word))`` for a general English word list. A word
  that the tokenizer splits (``unhappiness`` → ``un ##ha ##pp ##iness``) teaches its pieces
  to add up to the teacher's vector of the whole word; a one-piece word anchors that
  piece at the teacher's vector. This keeps the general vocabulary in place while the
  documents (a narrow, technical corpus) move the pieces they use.

Fitting in the teacher's space and then whitening (`whitening_projection`) worked better
on the dev suite than fitting the similarity (Gram) matrix directly in a whitened space;
see MODEL.md for the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from luxical.embedder import Embedder


def fit_vectors(
    vectors: np.ndarray,
    docs: Any,
    doc_targets: np.ndarray,
    words: Any = None,
    word_targets: np.ndarray | None = None,
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 256,
    word_batch_size: int = 1024,
    word_weight: float = 1.0,
    holdout: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit n-gram vectors so that TF-IDF-weighted sums match the teacher's embeddings.

    Minimises ``mean(1 - cos(docs[b] @ V, doc_targets[b]))`` over document batches plus
    ``word_weight`` times the same on a batch of words drawn at random, with Adam.

    Args:
        vectors: ``(vocab, d)`` initial vectors, in the teacher's space (float).
        docs: ``(n, vocab)`` scipy sparse matrix: the documents' L2-normalised TF-IDF
            (`Embedder.tfidf`, over the tokens the teacher saw).
        doc_targets: ``(n, d)`` teacher embeddings of those documents.
        words, word_targets: the same for a word list (optional).
        epochs: Passes over the training documents.
        lr: Adam learning rate.
        batch_size, word_batch_size: Documents / words per step.
        word_weight: Weight of the word term.
        holdout: The last `holdout` documents are not trained on; their mean cosine to the
            teacher is reported after each epoch.
        seed: Seeds the batch order and the word draws (the result is deterministic).
        progress: Show a progress bar.

    Returns:
        The fitted ``(vocab, d)`` float32 vectors and a report (holdout cosine per epoch).
    """
    import scipy.sparse
    import torch

    docs = scipy.sparse.csr_matrix(docs)
    if docs.shape[0] != len(doc_targets) or docs.shape[1] != len(vectors):
        raise ValueError(
            f"docs is {docs.shape}, doc_targets has {len(doc_targets)} rows and vectors {len(vectors)}: "
            "need docs (n, len(vectors)) and n targets"
        )
    if (words is None) != (word_targets is None):
        raise ValueError("pass both words and word_targets, or neither")
    if words is not None:
        words = scipy.sparse.csr_matrix(words)
        if words.shape[0] != len(word_targets) or words.shape[1] != len(vectors):
            raise ValueError(f"words is {words.shape} for {len(word_targets)} targets and {len(vectors)} vectors")
    n_train = docs.shape[0] - holdout
    if n_train < 1:
        raise ValueError(f"{docs.shape[0]} documents leave none to train on after holding out {holdout}")

    def to_torch(m: Any) -> Any:
        c = m.tocoo()
        idx = torch.from_numpy(np.vstack([c.row, c.col]).astype(np.int64))
        return torch.sparse_coo_tensor(idx, torch.from_numpy(c.data.astype(np.float32)), c.shape, check_invariants=False).coalesce()

    def loss_of(x: Any, target: np.ndarray, v: Any) -> Any:
        pred = torch.sparse.mm(to_torch(x), v)
        t = torch.from_numpy(np.asarray(target, dtype=np.float32))
        return (1.0 - torch.nn.functional.cosine_similarity(pred, t, dim=1, eps=1e-8)).mean()

    rng = np.random.default_rng(seed)
    v = torch.nn.Parameter(torch.from_numpy(np.asarray(vectors, dtype=np.float32).copy()))
    opt = torch.optim.Adam([v], lr=lr)
    held = (docs[n_train:], doc_targets[n_train:]) if holdout else None

    def holdout_cos() -> float | None:
        if held is None:
            return None
        with torch.no_grad():
            return float(1.0 - loss_of(held[0], held[1], v))

    report: dict[str, Any] = {"n_train": n_train, "n_holdout": holdout, "holdout_cos": [holdout_cos()]}
    steps = -(-n_train // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps, desc="Fitting", unit="step", dynamic_ncols=True)
    try:
        for _ in range(epochs):
            order = rng.permutation(n_train)
            for start in range(0, n_train, batch_size):
                rows = order[start : start + batch_size]
                loss = loss_of(docs[rows], doc_targets[rows], v)
                if words is not None and word_weight:
                    w = rng.integers(0, words.shape[0], word_batch_size)
                    loss = loss + word_weight * loss_of(words[w], word_targets[w], v)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
            report["holdout_cos"].append(holdout_cos())
            if bar is not None and held is not None:
                bar.set_postfix(holdout_cos=f"{report['holdout_cos'][-1]:.4f}")
    finally:
        if bar is not None:
            bar.close()
    out = v.detach().numpy()
    if not np.isfinite(out).all():
        raise FloatingPointError("fitting produced non-finite vectors; lower lr")
    return out, report


def whitening_projection(
    vectors: np.ndarray, samples: Sequence[Any], *, power: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """A partial whitening fitted on the embeddings of sample texts.

    Each sample matrix (TF-IDF rows of texts) is embedded as ``rows @ (vectors - mean)``
    and L2-normalised; the principal directions of all those embeddings, each divided by
    its singular value to the power `power`, give the projection. Summed token vectors
    otherwise share a few dominant directions that swamp every cosine.

    Returns:
        ``(mean, projection)``: the coordinates of n-gram ``i`` are
        ``(vectors[i] - mean) @ projection``, projection ``(d, d')`` with
        ``d' = min(d, number of sample rows)``.
    """
    if not 0.0 <= power <= 2.0:
        raise ValueError(f"power must be within [0, 2], got {power}")
    v = np.asarray(vectors, dtype=np.float64)
    mean = v.mean(0)
    centred = v - mean
    emb = np.vstack([np.asarray(s @ centred) for s in samples])
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    nonzero = norms[:, 0] > 0  # texts without any vocabulary n-gram embed as zero
    emb = emb[nonzero] / norms[nonzero]
    if len(emb) < 2:
        raise ValueError("need at least two non-empty sample texts to fit a whitening")
    emb -= emb.mean(0)
    _, singular, vt = np.linalg.svd(emb, full_matrices=False)
    keep = singular > singular[0] * 1e-6
    return mean, vt[keep].T / singular[keep] ** power


def fit_alignment(
    coords: np.ndarray,
    samples: Sequence[tuple[Any, np.ndarray]],
    *,
    held: tuple[Any, np.ndarray] | None = None,
    temperature: float = 0.1,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A linear map of the (whitened) coordinates, fitted so that each text's cosines to the
    other texts of its batch are distributed as the teacher's are.

    The loss is the reference Luxical's: the KL divergence between the row-wise softmax
    of the student's and the teacher's in-batch cosine matrices at `temperature`, the
    diagonal removed. Only the ``(k, k)`` map ``M`` is trained (from the identity): the
    fitted vectors keep what the regression taught them, and the map reshapes the space
    so that relations between texts look like the teacher's. A linear map of the summed
    coordinates is a map of each row (``(x @ C) @ M == x @ (C @ M)``), so the exported model
    holds ``coords @ M`` and embeds at the same cost.

    Args:
        coords: ``(vocab, k)`` coordinates (`whitening_projection` applied).
        samples: ``[(x, targets)]``: TF-IDF rows (scipy sparse, ``(n, vocab)``) and their
            teacher embeddings; all of them are shuffled together into the batches.
        held: Held-back ``(x, targets)`` to report pairwise agreement on (Spearman of the
            model's vs the teacher's cosines on up to 20,000 random pairs) before and after
            each epoch.
        temperature, epochs, lr, batch_size: The fit (Adam).
        seed: Seeds batches and the reported pairs.

    Returns:
        The ``(k, k)`` map and a report (``held_agreement`` per epoch, ``train_s``).
    """
    import time

    import scipy.sparse
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    coords = np.asarray(coords, dtype=np.float64)
    if not samples:
        raise ValueError("fit_alignment needs at least one (x, targets) sample")
    if temperature <= 0 or batch_size < 2:
        raise ValueError(f"need temperature > 0 and batch_size >= 2, got {temperature}, {batch_size}")

    def unit(a: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(a, axis=1, keepdims=True)
        return (a / np.maximum(n, 1e-12)).astype(np.float32)

    zs, ts = [], []
    for x, t in samples:
        x = scipy.sparse.csr_matrix(x)
        if x.shape != (len(t), len(coords)):
            raise ValueError(f"a sample is {x.shape} for {len(t)} targets and {len(coords)} coordinates")
        zs.append(unit(np.asarray(x @ coords)))
        ts.append(unit(np.asarray(t, dtype=np.float32)))
    z, t = np.vstack(zs), np.vstack(ts)
    keep = np.linalg.norm(z, axis=1) > 0  # a text without any vocabulary n-gram has no direction
    z_t, t_t = torch.from_numpy(z[keep]), torch.from_numpy(t[keep])
    if len(z_t) < batch_size:
        batch_size = len(z_t)
    if batch_size < 2:
        raise ValueError("fit_alignment needs at least two non-empty sample texts")

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    k = coords.shape[1]
    m = torch.nn.Parameter(torch.eye(k))
    opt = torch.optim.Adam([m], lr=lr)
    off = ~torch.eye(batch_size, dtype=torch.bool)

    held_eval = None
    if held is not None:
        from scipy.stats import spearmanr

        zh = torch.from_numpy(unit(np.asarray(scipy.sparse.csr_matrix(held[0]) @ coords)))
        th = unit(np.asarray(held[1], dtype=np.float32))
        pairs = rng.integers(0, len(th), (20_000, 2))
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        t_cos = np.sum(th[pairs[:, 0]] * th[pairs[:, 1]], axis=1)

        def held_eval() -> float:
            with torch.no_grad():
                e = F.normalize(zh @ m, dim=1).numpy()
            return float(spearmanr(np.sum(e[pairs[:, 0]] * e[pairs[:, 1]], axis=1), t_cos)[0])

    report: dict[str, Any] = {"texts": int(len(z_t)), "held_agreement": [held_eval() if held_eval else None]}
    steps = len(z_t) // batch_size
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps, desc="Aligning", unit="step", dynamic_ncols=True)
    try:
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(z_t)))
            for step in range(steps):
                rows = order[step * batch_size : (step + 1) * batch_size]
                e = F.normalize(z_t[rows] @ m, dim=1)
                tb = t_t[rows]
                student = (e @ e.T / temperature)[off].view(batch_size, -1)
                teacher = (tb @ tb.T / temperature)[off].view(batch_size, -1)
                loss = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True,
                                reduction="batchmean")
                opt.zero_grad()
                loss.backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
            report["held_agreement"].append(held_eval() if held_eval else None)
            if bar is not None and held_eval:
                bar.set_postfix(held_agreement=f"{report['held_agreement'][-1]:.4f}")
    finally:
        if bar is not None:
            bar.close()
    out = m.detach().double().numpy()
    if not np.isfinite(out).all():
        raise FloatingPointError("the alignment produced a non-finite map; lower lr")
    report["train_s"] = time.perf_counter() - t0
    return out, report


def offset_basis(dim: int) -> np.ndarray:
    """``(dim, dim - 1)``: an orthonormal basis of the subspace of R^dim orthogonal to the
    all-ones vector (where `model_from_coords` puts the coordinates)."""
    basis, _ = np.linalg.qr(np.eye(dim) - 1.0 / dim)
    return basis[:, : dim - 1]


def model_from_coords(tokenizer_json: str, ngrams: np.ndarray, idf: np.ndarray, coords: np.ndarray) -> Embedder:
    """A two-layer model (V → k+1 → k+1) that embeds a text as the normalised TF-IDF-weighted
    sum of its n-grams' rows of `coords` (``(V, k)``, any signs): the offset trick of
    `luxical.training.init` keeps the signs through the ReLU."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or len(coords) != len(ngrams):
        raise ValueError(f"coords must be ({len(ngrams)}, k), got {coords.shape}")
    dim = coords.shape[1] + 1
    rows = coords @ offset_basis(dim).T  # (V, dim), each row ⊥ 1
    rows = rows / np.abs(rows).max()
    rows = rows + max(0.0, -rows.min())  # non-negative: ReLU is the identity on sums
    centring = np.eye(dim) - 1.0 / dim
    return Embedder.from_arrays(
        tokenizer_json=tokenizer_json,
        ngrams=ngrams,
        idf=idf,
        layers=[rows.T.astype(np.float32), centring.astype(np.float32)],
    )
