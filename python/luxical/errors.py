"""Exception classes raised by luxical.

Every error luxical raises on purpose derives from :class:`LuxicalError`; the ones caused
by bad input also derive from the matching built-in (``ValueError``), so generic handlers
keep working.
"""

from __future__ import annotations

__all__ = [
    "HeadFormatError",
    "LuxicalError",
    "LuxicalWarning",
    "ModelFileChangedError",
    "ModelFormatError",
    "UnsupportedFormatVersionError",
    "TokenizationError",
]


class LuxicalError(Exception):
    """Base class of luxical's own errors."""


class ModelFormatError(LuxicalError, ValueError):
    """A model file is unreadable, damaged or inconsistent (says which array and why)."""


class UnsupportedFormatVersionError(ModelFormatError):
    """A model file declares a format version this luxical cannot read."""


class HeadFormatError(ModelFormatError):
    """A head file (``luxical.heads``) is unreadable, damaged, inconsistent or fails its
    checksum (the message names the file, the array and the problem)."""


class TokenizationError(LuxicalError, ValueError):
    """The tokenizer failed on an input text (the message names its index)."""


class ModelFileChangedError(LuxicalError):
    """A model pickled by path was unpickled where the file at that path now holds another
    model (its fingerprint differs): embedding with it would silently differ from the
    pickling process."""


class LuxicalWarning(RuntimeWarning):
    """A setting luxical adjusted instead of failing: a thread count above the cap (more
    threads than cores only cost memory), an environment variable it could not read as a
    boolean. Silence with ``warnings.filterwarnings("ignore", category=LuxicalWarning)``."""
