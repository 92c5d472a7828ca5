"""Exception hierarchy: every error latentkit raises derives from :class:`LatentkitError`.

Each error also derives from the builtin that fits it, so ``except ValueError`` keeps working for
callers that do not know latentkit.
"""

from __future__ import annotations

__all__ = [
    "LatentkitError",
    "ShapeError",
    "CheckpointError",
    "NotFittedError",
    "WeightsUnavailableError",
    "InputError",
]


class LatentkitError(Exception):
    """Root of every error raised by latentkit."""


class ShapeError(LatentkitError, ValueError):
    """A tensor or array has the wrong shape, dtype or rank."""


class InputError(LatentkitError, ValueError):
    """A user-supplied value (file, option, image) cannot be used as given."""


class CheckpointError(LatentkitError, ValueError):
    """A checkpoint file is unreadable, truncated, of an unknown format or refers to a forbidden global."""


class NotFittedError(LatentkitError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (scikit-learn's meaning)."""


class WeightsUnavailableError(LatentkitError, OSError):
    """Pretrained weights are neither in the cache nor downloadable (e.g. no network)."""
