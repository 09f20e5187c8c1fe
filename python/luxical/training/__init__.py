"""Training Luxical models by distillation from a sentence-transformers teacher.

Needs the ``train`` extra (torch, sentence-transformers) to run. ``import luxical`` imports
only `luxical.training.recipe` (numpy), for the callable `luxical.train`; torch is imported
when training starts.
"""
