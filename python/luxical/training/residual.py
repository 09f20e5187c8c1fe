"""The residual stage: Luxical's n-grams and hidden layers on top of a static model.

Starts from a model made by `luxical.training.static.model_from_coords` (what the recipe
exports) and changes nothing at first: the model it begins with embeds every text exactly
as the static model does. Then it is trained toward the teacher:

* **multi-word n-grams**: the `multi` most frequent 2..N-grams of the documents get rows of
  their own, starting at zero, so they learn only what their word pieces miss;
* **hidden layers**: a ReLU layer of width ``2k`` and an output layer initialised to
  ``[I; -I]`` and ``[I, -I]``: ``relu(x) - relu(-x) = x`` passes the static embedding
  through until training moves them;
* **the fitted word-piece rows** train at a lower learning rate (``base_lr_mult``);
* **every batch** holds documents and general-English words, so a technical corpus cannot
  pull the vocabulary away;
* **loss**: cosine to the teacher through a train-only linear map (the student lives in
  the whitened space, the teacher in its own), plus optionally the reference's Gram-matrix
  KL (`kl_weight`).

Training runs without the runtime's offset (coordinates of any sign, no ReLU after the
first layer); the export adds it back (`model_from_coords`'s offset trick) and folds the
offset removal into the first hidden layer, so the runtime computes the trained network
exactly. (Training the offset form directly failed: every step of Adam on the centring
layer leaks the large constant offset into the output, and the model collapsed within
one epoch; MODEL.md.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from luxical.embedder import Embedder
from luxical.training.static import offset_basis

PAD = np.uint32(2**32 - 1)


def static_coordinates(model: Embedder) -> np.ndarray:
    """The ``(V, k)`` coordinates a `model_from_coords` model sums (up to one global scale).

    Raises:
        ValueError: `model` is not a two-layer static model with 1-grams.
    """
    first, second = (list(model.layers) + [None, None])[:2]
    if len(model.layers) != 2 or model.max_ngram_len != 1 or second is None or second.shape[0] != second.shape[1]:
        raise ValueError(f"the residual stage starts from a static model (V → k+1 → k+1 with 1-grams), got {model!r}")
    rows = np.asarray(first, dtype=np.float64).T  # (V, k+1): coordinates ⊥ 1, plus a constant offset per row
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows @ offset_basis(rows.shape[1])


def residual_stage(
    static: Embedder,
    docs: Sequence[str],
    doc_targets: np.ndarray,
    words: Sequence[str],
    word_targets: np.ndarray | None,
    corpus: Sequence[str],
    *,
    multi: int = 8_000,
    max_ngram_len: int = 3,
    min_count: int = 5,
    epochs: int = 3,
    lr: float = 1e-4,
    base_lr_mult: float = 0.1,
    cos_weight: float = 1.0,
    kl_weight: float = 0.0,
    temperature: float = 0.05,
    batch_size: int = 256,
    words_per_batch: int = 512,
    holdout: int = 1_000,
    max_tokens: int | None = 254,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Embedder, dict[str, Any]]:
    """Trains the residual stage on top of `static` (see the module docstring).

    Args:
        static: The static model (`model_from_coords` form).
        docs, doc_targets: Teacher-embedded documents; the last `holdout` are held back.
        words, word_targets: Teacher-embedded words (may be empty / None).
        corpus: All corpus documents, for the new n-grams' IDF (``ln N / df``).
        multi: Multi-word n-grams added (the most frequent of the training documents seen
            at least `min_count` times, lengths 2..`max_ngram_len`).
        epochs, lr, batch_size, words_per_batch: Adam over the training documents.
        base_lr_mult: Learning-rate factor of the static rows.
        cos_weight, kl_weight, temperature: The loss (cosine through a train-only map;
            Gram-matrix KL at `temperature`).
        max_tokens: Tokens per document the features see (the teacher's window).
        seed: Seeds batches and word draws (deterministic on CPU).

    Returns:
        ``(model, report)``: a model ``V' → k+1 → 2k → k``, and the mean cosine to the
        teacher (through the train-only map) of the held-out documents and of up to 1,024
        training documents after each epoch, with the training time.
    """
    import scipy.sparse
    import torch
    import torch.nn.functional as F

    from luxical._luxical import Featurizer
    from luxical.training.vocab import count_ngrams

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tok_json = static.tokenizer_json
    coords = static_coordinates(static)
    coords = coords / coords.std()  # unit-scale entries: Adam's steps are relative to them
    k = coords.shape[1]
    n_train = len(docs) - holdout
    if n_train < 2:
        raise ValueError(f"{len(docs)} documents leave {n_train} to train on after holding out {holdout}")

    base = np.full((static.vocab_size, max_ngram_len), PAD, dtype=np.uint32)
    base[:, 0] = np.asarray(static.ngrams).reshape(static.vocab_size, -1)[:, 0]
    new = np.zeros((0, max_ngram_len), dtype=np.uint32)
    if multi > 0:
        summary = count_ngrams(list(docs[:n_train]), tok_json, max_ngram_len=max_ngram_len, capacity=max(4 * multi, 500_000))
        rows, counts, errors = summary.items()
        rows = rows.reshape(-1, max_ngram_len)
        new = rows[(rows[:, 1] != PAD) & (counts - errors >= min_count)][:multi]
    new_idf = np.zeros(0, dtype=np.float32)
    if len(new):
        counter = Featurizer(tok_json, np.ascontiguousarray(new).ravel(), max_ngram_len, np.ones(len(new), np.float32))
        df = np.zeros(len(new))
        for i in range(0, len(corpus), 16384):
            df += counter.document_frequencies(list(corpus[i : i + 16384]))
        new_idf = (np.log(len(corpus)) - np.log(np.maximum(df, 1))).astype(np.float32)
    ngrams = np.vstack([base, new])
    idf = np.concatenate([np.asarray(static.idf, dtype=np.float32), new_idf])
    featurizer = Featurizer(tok_json, np.ascontiguousarray(ngrams).ravel(), max_ngram_len, idf)

    def tfidf(batch: Sequence[str], limit: int | None) -> scipy.sparse.csr_matrix:
        indptr, indices, data = featurizer.tfidf(list(batch), None, limit)
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(batch), len(ngrams)))

    x_docs = tfidf(docs, max_tokens)
    x_words = tfidf(words, None) if len(words) else None
    t_docs = torch.from_numpy(np.asarray(doc_targets, dtype=np.float32))
    t_words = torch.from_numpy(np.asarray(word_targets, dtype=np.float32)) if x_words is not None else None

    e_base = torch.nn.Parameter(torch.from_numpy(coords.astype(np.float32)))
    e_new = torch.nn.Parameter(torch.zeros(len(new), k))
    eye = torch.eye(k)
    w_hidden = torch.nn.Parameter(torch.cat([eye, -eye]))  # (2k, k)
    w_out = torch.nn.Parameter(torch.cat([eye, -eye], dim=1))  # (k, 2k)
    to_teacher = torch.nn.Parameter(torch.zeros(t_docs.shape[1], k))

    def forward(x: scipy.sparse.csr_matrix, rows: np.ndarray) -> torch.Tensor:
        sub = x[rows]
        table = torch.cat([e_base, e_new]) if len(new) else e_base
        h = F.embedding_bag(torch.from_numpy(sub.indices.astype(np.int64)), table,
                            torch.from_numpy(sub.indptr[:-1].astype(np.int64)), mode="sum",
                            per_sample_weights=torch.from_numpy(sub.data.astype(np.float32)))
        h = F.normalize(h, dim=1)
        h = F.normalize(torch.relu(h @ w_hidden.T), dim=1)
        return F.normalize(h @ w_out.T, dim=1)

    rng = np.random.default_rng(seed)
    with torch.no_grad():  # the train-only map starts at the least-squares fit
        sample = rng.choice(n_train, size=min(n_train, 8192), replace=False)
        s = torch.cat([forward(x_docs, sample[i : i + 2048]) for i in range(0, len(sample), 2048)]).numpy()
        fit = np.linalg.lstsq(s, t_docs[sample].numpy(), rcond=None)[0]
        to_teacher.copy_(torch.from_numpy(fit.T.astype(np.float32)))
    held = np.arange(n_train, len(docs))
    seen = sample[:1024]  # training documents, to show the fit itself

    def mean_cos(rows: np.ndarray) -> float | None:
        if not len(rows):
            return None
        with torch.no_grad():
            s = forward(x_docs, rows) @ to_teacher.T
            return float(F.cosine_similarity(s, t_docs[rows], dim=1).mean())

    def gram_kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = s.shape[0]
        mask = ~torch.eye(n, dtype=torch.bool)
        gs, gt = (s @ s.T)[mask].view(n, n - 1), (t @ t.T)[mask].view(n, n - 1)
        return F.kl_div(F.log_softmax(gs / temperature, 1), F.log_softmax(gt / temperature, 1), log_target=True,
                        reduction="batchmean")

    def loss_of(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        loss = cos_weight * (1 - F.cosine_similarity(s @ to_teacher.T, t, dim=1)).mean()
        if kl_weight:
            loss = loss + kl_weight * gram_kl(s, t)
        return loss

    opt = torch.optim.Adam([{"params": [e_base], "lr": lr * base_lr_mult},
                            {"params": [e_new, w_hidden, w_out, to_teacher], "lr": lr}])
    report: dict[str, Any] = {"multi_ngrams": int(len(new)), "max_ngram_len": max_ngram_len,
                              "held_cos": [mean_cos(held)], "train_cos": [mean_cos(seen)]}
    steps = max(1, n_train // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps, desc="Residual stage", unit="step", dynamic_ncols=True)
    try:
        for _ in range(epochs):
            order = rng.permutation(n_train)
            for step in range(steps):
                rows = order[step * batch_size : (step + 1) * batch_size]
                loss = loss_of(forward(x_docs, rows), t_docs[rows])
                if x_words is not None and words_per_batch:
                    w = rng.integers(0, x_words.shape[0], words_per_batch)
                    loss = loss + loss_of(forward(x_words, w), t_words[w])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
            report["held_cos"].append(mean_cos(held))
            report["train_cos"].append(mean_cos(seen))
            if bar is not None and report["held_cos"][-1] is not None:
                bar.set_postfix(held_cos=f"{report['held_cos'][-1]:.4f}")
    finally:
        if bar is not None:
            bar.close()

    table = torch.cat([e_base, e_new]).detach().double().numpy()
    if not np.isfinite(table).all():
        raise FloatingPointError("the residual stage produced non-finite weights; lower lr")
    q = offset_basis(k + 1)
    rows_out = table @ q.T  # (V', k+1), each row ⊥ 1
    rows_out = rows_out / np.abs(rows_out).max()
    rows_out = rows_out + max(0.0, -rows_out.min())  # non-negative: the runtime's ReLU is the identity
    hidden = w_hidden.detach().double().numpy() @ q.T  # folds the offset removal into the hidden layer
    model = Embedder.from_arrays(
        tokenizer_json=tok_json, ngrams=ngrams, idf=idf,
        layers=[np.ascontiguousarray(rows_out.T, dtype=np.float32), hidden.astype(np.float32),
                w_out.detach().numpy().astype(np.float32)],
    )
    report["train_s"] = time.perf_counter() - t0
    return model, report
