"""`luxical.train`: train your own Luxical model (needs the ``train`` extra).

The module is callable: ``luxical.train(corpus, teacher, "my.npz")`` runs the default
model's recipe, :func:`luxical.training.recipe.train` (word pieces fitted to the teacher on
documents and words, then whitened; ``luxical train`` on the command line).
:func:`luxical.training.distill.distill` (``luxical.train.distill``) is the n-gram + MLP
distillation with the Gram-matrix loss of the reference package.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from luxical.training.recipe import train

__all__ = ["train"]  # distill and DistillConfig resolve lazily (they import torch)


def __getattr__(name: str) -> Any:
    # torch is imported only when the distillation is asked for.
    if name in ("distill", "DistillConfig"):
        from luxical.training import distill as _distill

        return getattr(_distill, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs :func:`luxical.training.recipe.train`."""
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
