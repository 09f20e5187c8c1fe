"""`luxical.train.distill`: train your own Luxical model (needs the ``train`` extra).

See :func:`luxical.training.distill.distill`.
"""

from luxical.training.distill import DistillConfig, distill

__all__ = ["DistillConfig", "distill"]
