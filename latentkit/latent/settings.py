"""Defaults of the latent layer, in one torch-free module: the library's signatures use them and the CLI
shows them in ``--help`` without importing torch or numpy."""

from __future__ import annotations

__all__ = ["DEFAULT_AMOUNTS", "DEFAULT_CACHED_SAMPLES", "DEFAULT_DEMO_ROWS", "DEFAULT_DEMO_TAUS", "DEFAULT_POOL", "DEFAULT_NU_SAMPLES", "DEFAULT_PSI", "DEFAULT_TAU",
           "DIAGNOSTIC_SAMPLES", "NU_SEED_OFFSET", "PRIOR_BATCH_SIZE", "PRIOR_SAMPLES", "RADIUS_MODEL", "RADIUS_MODELS"]

PRIOR_SAMPLES = 1_000_000
"""Latents :meth:`GaussianPrior.from_generator` streams through the mapping network (``latentkit fit-prior``)."""
PRIOR_BATCH_SIZE = 10_000
"""Latents per mapping call when fitting (memory only)."""
DEFAULT_CACHED_SAMPLES = 100_000
"""Latents of the per-generator cached prior (:func:`~latentkit.latent.prior_cache.cached_prior`)."""
DIAGNOSTIC_SAMPLES = 10_000
"""Held-out mapping outputs of :func:`~latentkit.latent.diagnostics.diagnose_generator`."""

DEFAULT_TAU = 3.0
"""Compression threshold, in standard deviations of the whitened coefficients."""
DEFAULT_PSI = 0.7
"""Truncation factor of the baseline."""
DEFAULT_DEMO_TAUS = (1.0, 2.0, 3.0)
"""The tau columns of the compress demo (:func:`~latentkit.latent.compress_demo.compress_demo`) when none are given."""
DEFAULT_POOL = 64
"""Seeds the compress demo searches for the most extreme latents (0 .. pool - 1)."""
DEFAULT_DEMO_ROWS = 8
"""Latents the compress demo shows when no seeds or latents are given."""

RADIUS_MODEL = "student-t"
"""The prior file's name of the Student-t radius model."""
RADIUS_MODELS = ("gaussian", RADIUS_MODEL)
"""The choices of ``cached_prior(radius=)`` and ``--prior-radius``."""
DEFAULT_NU_SAMPLES = 20_000
"""Held-out W vectors nu is fitted on (its standard error is then well below 1)."""
NU_SEED_OFFSET = 3
"""nu's z stream: the prior's seed + 3 (from_generator draws classes with + 1, diagnostics + 2)."""

DEFAULT_AMOUNTS = (-3.0, -1.5, 0.0, 1.5, 3.0)
"""Edit amounts in standard deviations of a direction."""
