"""Training Luxical models by distillation from a sentence-transformers teacher.

Needs the ``train`` extra (torch, sentence-transformers). Nothing here is imported by
``import luxical``; import `luxical.train` (or the submodules) explicitly.
"""
