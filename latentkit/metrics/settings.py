"""Defaults and settings of the metrics layer, in one torch-free module: the library's signatures use them
and the CLI shows them in ``--help`` without importing torch or numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from latentkit.errors import InputError
from latentkit.latent.settings import DEFAULT_CACHED_SAMPLES

__all__ = ["ANALYSIS_AMOUNT", "ANALYSIS_SAMPLES", "DEFAULT_COMPONENTS", "EPSILON", "FEATURES", "METRICS", "NEAREST_K",
           "ON_MISSING", "PPL_BATCH_SIZE", "PPL_SAMPLES", "TradeoffSettings", "parse_floats"]

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
"""What :func:`~latentkit.metrics.quality.evaluate` computes by default."""
FEATURES = ("inception", "pixels", "dlib_face", "precomputed")
"""Feature spaces of the distances (:mod:`latentkit.metrics.features`)."""
NEAREST_K = 5
"""k of precision, recall, density and coverage."""

ON_MISSING = ("raise", "nan")
"""What :func:`~latentkit.metrics.identity_report.compare_face_files` does with a pair without a face."""

PPL_SAMPLES = 50_000
"""Paths of :func:`~latentkit.metrics.ppl.perceptual_path_length` (NVIDIA's)."""
PPL_BATCH_SIZE = 16
"""Paths per batch (memory only in fp64)."""
EPSILON = 1e-4
"""Step of the perceptual path length (NVIDIA's)."""

DEFAULT_COMPONENTS = 20
"""Directions ``latentkit directions`` finds and analyses."""
ANALYSIS_SAMPLES = 8
"""Base latents :func:`~latentkit.metrics.direction_analysis.analyse_directions` averages over."""
ANALYSIS_AMOUNT = 2.0
"""Edit size of the analysis, in standard deviations."""


@dataclass(frozen=True)
class TradeoffSettings:
    """Options of :func:`tradeoff` (the CLI builds the same object).

    Attributes:
        taus: compression thresholds (standard deviations, > 0).
        psis: truncation factors in [0, 1].
        num_samples: N, samples per setting (and reference samples when no real images are given).
        seed: first seed; samples use ``seed .. seed + N - 1``, the generated reference the next N.
        features: feature space of the distances, as in :func:`latentkit.metrics.quality.evaluate`
            (``'auto'``, the default: ``'inception'`` (FID/KID) when its weights are cached, else the offline
            stand-in ``'pixels'``, named as such; ``'dlib_face'`` is another offline stand-in).
        identity_backend: ``'auto'`` (facenet when its weights are cached or given, else dlib), ``'facenet'`` or ``'dlib'``.
        detect_faces: find faces before embedding; False (default) embeds the whole image, right for
            generators trained on aligned faces.
        face_weights: local facenet weights file (facenet backend).
        inception_weights: local Inception weights file (``features='inception'``).
        prior_samples: samples for fitting the prior when none is given.
        batch_size: images rendered per batch (memory only).
    """

    taus: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    psis: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    num_samples: int = 1000
    seed: int = 0
    features: str = "auto"
    identity_backend: str = "auto"
    detect_faces: bool = False
    face_weights: str | None = None
    inception_weights: str | None = None
    prior_samples: int = DEFAULT_CACHED_SAMPLES
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not self.taus and not self.psis:
            raise InputError("taus and psis are both empty: give at least one setting")
        if any(not (math.isfinite(t) and t > 0) for t in self.taus):
            raise InputError(f"taus must be positive numbers, got {list(self.taus)}")
        if any(not (math.isfinite(p) and 0 <= p <= 1) for p in self.psis):
            raise InputError(f"psis must be in [0, 1], got {list(self.psis)}")
        if self.num_samples < 2:
            raise InputError(f"num_samples must be >= 2, got {self.num_samples}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    """``'1,2,3'`` -> ``(1.0, 2.0, 3.0)``; an empty string gives ``()``.

    Raises:
        InputError: a part that is not a number.
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError as err:
            raise InputError(f"{name} must be comma-separated numbers like '1,2,3', got {text!r}") from err
    return tuple(out)
