"""sentence-transformers integration: a Luxical model as a ``SentenceTransformer`` module,
so the sentence-transformers ecosystem (``encode``, evaluators, MTEB) can use it::

    from sentence_transformers import SentenceTransformer
    from luxical.sentence_transformers import LuxicalModule

    st = SentenceTransformer(modules=[LuxicalModule("model.npz")], device="cpu")
    st.encode(["some text"])           # == luxical.load("model.npz")(["some text"])
    st.save("my-luxical-st")           # a folder SentenceTransformer("my-luxical-st") reloads

Embedding runs in the Rust runtime (inference only; the module has no trainable torch
parameters — train with :mod:`luxical.train`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
try:
    from sentence_transformers.base.modules import InputModule
except ImportError:  # sentence-transformers < 6
    from sentence_transformers.models import InputModule  # type: ignore[no-redef]

import luxical
from luxical.embedder import Embedder

__all__ = ["LuxicalModule"]

MODEL_FILE = "luxical.npz"


class LuxicalModule(InputModule):
    """A sentence-transformers input module that embeds text with a Luxical model.

    Args:
        model: Path of a ``.npz`` model, an `Embedder`, or None for the default model.
        num_threads: Threads for the Rust runtime (default: all cores).
    """

    config_keys: list[str] = ["num_threads"]
    save_in_root: bool = True

    def __init__(self, model: str | os.PathLike[str] | Embedder | None = None, num_threads: int | None = None) -> None:
        super().__init__()
        self.embedder = luxical.load(model)
        self.num_threads = num_threads
        # Tells SentenceTransformer which device the outputs belong on.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def modalities(self) -> list[Any]:
        return ["text"]

    def preprocess(self, inputs: Any, prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Keeps the texts (Luxical tokenizes inside the runtime)."""
        texts = [str(t) for t in inputs] if not isinstance(inputs, list) else inputs
        if prompt:
            texts = [prompt + t for t in texts]
        return {"texts": texts}

    # sentence-transformers < 6 calls `tokenize` instead of `preprocess`.
    if not hasattr(InputModule, "preprocess"):  # pragma: no cover - depends on the installed version
        tokenize = preprocess

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        emb = self.embedder(features["texts"], num_threads=self.num_threads)
        features["sentence_embedding"] = torch.from_numpy(emb).to(self._device_anchor.device)
        return features

    @property
    def max_seq_length(self) -> float:
        return float("inf")

    def get_embedding_dimension(self) -> int:
        return self.embedder.dim

    get_sentence_embedding_dimension = get_embedding_dimension

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        source = getattr(self.embedder, "_source", None)
        target = Path(output_path) / MODEL_FILE
        if source is not None and Path(source).is_file():
            shutil.copyfile(source, target)
        else:
            self.embedder.save(target)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> LuxicalModule:
        hub_kwargs = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder,
                      "revision": revision, "local_files_only": local_files_only}
        path = cls.load_file_path(model_name_or_path, filename=MODEL_FILE, **hub_kwargs)
        config = cls.load_config(model_name_or_path, **hub_kwargs)
        return cls(path, **config)

    def __repr__(self) -> str:
        return f"LuxicalModule({self.embedder!r})"
