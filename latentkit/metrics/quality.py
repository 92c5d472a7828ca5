"""Sample quality: FID, KID and precision / recall / density / coverage.

The numbers come from maintained libraries: torch-fidelity computes the Fréchet distance and the kernel
(MMD) distance from features and provides the Inception-v3 feature extractor (the TF-FID port, 2048-d
pool features); ``prdc`` (Naeem et al. 2020) computes precision, recall, density and coverage.
latentkit only gathers the images and names the results.

Names say what was measured. With ``features='inception'`` the keys are ``fid``, ``kid``, ``kid_std``.
With a stand-in extractor they are ``fd_<extractor>``, ``kd_<extractor>`` and ``kd_<extractor>_std``
(e.g. ``fd_pixels``): a Fréchet distance in another feature space is not an FID and is not comparable
with published FIDs. Precision/recall/density/coverage keep their names; :attr:`EvaluationResult.features`
records the space they were measured in.
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError
from latentkit.metrics.settings import METRICS, NEAREST_K
from latentkit.metrics.features import (
    FEATURES,
    INCEPTION_URL,
    as_features,
    extract_features,
    feature_extractor,
    inception_cache_path,
    resolve_features,
    run_extractor,
)

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = [
    "FEATURES",
    "INCEPTION_URL",
    "METRICS",
    "EvaluationResult",
    "evaluate",
    "extract_features",
    "feature_extractor",
    "frechet_distance",
    "inception_cache_path",
    "kernel_distance",
    "metric_keys",
    "prdc_metrics",
]

logger = logging.getLogger(__name__)

#: KID as torch-fidelity and the KID paper compute it: 100 subsets of (at most) 1000 samples, cubic
#: polynomial kernel ``(x.y / D + 1) ** 3``.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000

Source = Union[str, os.PathLike, torch.Tensor, np.ndarray, "Generator"]


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: metric name -> value (see the module docstring for the names).
        features: the feature space (``'inception'``, ``'pixels'``, ``'dlib_face'`` or ``'precomputed'``).
        num_real, num_fake: how many samples each side had.
        nearest_k: the k of precision/recall/density/coverage.
    """

    metrics: dict[str, float]
    features: str
    num_real: int
    num_fake: int
    nearest_k: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metrics": dict(self.metrics),
            "features": self.features,
            "num_real": self.num_real,
            "num_fake": self.num_fake,
            "nearest_k": self.nearest_k,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------------
# Distances on features.


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (torch-fidelity's formula):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.

    Args:
        features_a: ``[N_a, D]``, N_a >= 2.
        features_b: ``[N_b, D]``, N_b >= 2.

    Returns:
        The distance (>= 0 up to round-off).

    Raises:
        ShapeError: on mismatched D, fewer than 2 samples or non-finite values.
    """
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    a, b = as_features(features_a, "features_a"), as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ShapeError(f"features must be [N, D] with equal D and N >= 2, got {list(a.shape)} and {list(b.shape)}")
    stats_a, stats_b = fid_features_to_statistics(a), fid_features_to_statistics(b)
    with contextlib.redirect_stdout(_io.StringIO()):
        value = fid_statistics_to_metric(stats_a, stats_b, verbose=False)
    return float(next(iter(value.values())))


def kernel_distance(
    features_a: torch.Tensor | np.ndarray,
    features_b: torch.Tensor | np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel (MMD^2) distance with the cubic polynomial kernel, torch-fidelity's unbiased estimator.

    Args:
        features_a: ``[N_a, D]``.
        features_b: ``[N_b, D]``.
        subsets: number of random subsets averaged (KID paper: 100).
        subset_size: samples per subset; default ``min(1000, N_a, N_b)``.
        seed: seed of the subset sampling.

    Returns:
        ``(mean, std)`` over subsets.

    Raises:
        ShapeError: on mismatched D or a subset larger than a set.
    """
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = as_features(features_a, "features_a"), as_features(features_b, "features_b")
    size = min(KID_SUBSET_SIZE, len(a), len(b)) if subset_size is None else subset_size
    if a.shape[1] != b.shape[1] or size < 2 or size > min(len(a), len(b)):
        raise ShapeError(
            f"kernel distance needs [N, D] features with equal D and 2 <= subset_size <= N, got "
            f"{list(a.shape)}, {list(b.shape)}, subset_size={size}"
        )
    out = kid_features_to_metric(
        a, b, kid_subsets=subsets, kid_subset_size=size, kid_kernel="poly", kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=seed, verbose=False,
    )
    mean, std = out.values()
    return float(mean), float(std)


def prdc_metrics(
    real_features: torch.Tensor | np.ndarray,
    fake_features: torch.Tensor | np.ndarray,
    *,
    nearest_k: int = NEAREST_K,
) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) from the ``prdc`` package.

    Each real (fake) sample gets a ball reaching its k-th nearest real (fake) neighbour. Precision: share
    of fakes inside some real ball; recall: share of reals inside some fake ball; density: mean number of
    real balls holding a fake, divided by k; coverage: share of real balls holding at least one fake.
    k = 5 is the paper's recommendation (for 10k samples per side).

    Args:
        real_features: ``[N_real, D]``, N_real > nearest_k + 1.
        fake_features: ``[N_fake, D]``, N_fake > nearest_k + 1.
        nearest_k: k of the k-nearest-neighbour balls.

    Returns:
        ``{'precision', 'recall', 'density', 'coverage'}`` floats.

    Raises:
        ShapeError: on mismatched D or too few samples for k.
    """
    from prdc import compute_prdc

    a, b = as_features(real_features, "real_features"), as_features(fake_features, "fake_features")
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) <= nearest_k + 1 or nearest_k < 1:
        raise ShapeError(
            f"precision/recall/density/coverage need [N, D] features with equal D and N > nearest_k + 1 >= 2, got "
            f"{list(a.shape)}, {list(b.shape)}, nearest_k={nearest_k}"
        )
    with contextlib.redirect_stdout(_io.StringIO()):  # prdc prints the sample counts
        out = compute_prdc(real_features=a.numpy(), fake_features=b.numpy(), nearest_k=nearest_k)
    return {key: float(value) for key, value in out.items()}


def metric_keys(features: str) -> tuple[str, str]:
    """The result keys of the Fréchet and kernel distances in a feature space: ``('fid', 'kid')`` for
    Inception, ``('fd', 'kd')`` for precomputed features, else ``('fd_<features>', 'kd_<features>')``."""
    return {"inception": ("fid", "kid"), "precomputed": ("fd", "kd")}.get(features, (f"fd_{features}", f"kd_{features}"))


def _check_prdc_sizes(real: Source, fake: Source, wanted: list[str], *, nearest_k: int, num_samples: int | None,
                      seed: int) -> None:
    """Precision/recall/density/coverage need more than ``nearest_k + 1`` samples per side: count them (cheap)."""
    from latentkit.metrics.image_sources import image_batches

    counts = [image_batches(src, name, num_samples=num_samples, seed=seed, batch_size=1)[0]
              for src, name in ((real, "real"), (fake, "fake"))]
    if min(counts) <= nearest_k + 1:
        raise InputError(
            f"{', '.join(wanted)} need more than nearest_k + 1 = {nearest_k + 1} images on each side, got "
            f"{counts[0]} real and {counts[1]} fake: add images, lower nearest_k (--nearest-k), or ask only for "
            "fid,kid (--metrics fid,kid)"
        )


def evaluate(
    real: Source,
    fake: Source,
    *,
    metrics: Sequence[str] = METRICS,
    features: str = "auto",
    nearest_k: int = 5,
    num_samples: int | None = None,
    seed: int = 0,
    inception_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Compare real and generated images: FID, KID, precision, recall, density, coverage.

    Args:
        real: a folder of images, images ``[N, C, H, W]`` in [-1, 1], or a Generator; with
            ``features='precomputed'``, features ``[N, D]``.
        fake: as ``real``; a Generator is sampled untruncated for seeds ``seed .. seed + num_samples - 1``.
        metrics: any of ``'fid'`` (Fréchet distance), ``'kid'`` (kernel distance, also gives its std over
            subsets), ``'precision'``, ``'recall'``, ``'density'``, ``'coverage'``.
        features: ``'auto'`` (``'inception'`` when its weights are given or cached, else ``'pixels'``, with a
            warning); ``'inception'`` (torch-fidelity's Inception-v3, 2048-d; keys ``fid``/``kid``);
            ``'pixels'`` (16x16 RGB thumbnails, 768-d, offline; keys ``fd_pixels``/``kd_pixels``);
            ``'dlib_face'`` (dlib face-recognition ResNet on the whole image, 128-d, offline, needs
            ``latentkit[dlib]``; keys ``fd_dlib_face``/``kd_dlib_face``); ``'precomputed'`` (inputs are
            features; keys ``fd``/``kd``).
        nearest_k: k of precision/recall/density/coverage (5, as recommended by Naeem et al. 2020).
        num_samples: samples drawn from a Generator (required then); caps the images read from a folder.
        seed: first seed for Generator samples and the KID subset sampling.
        inception_weights: local Inception weights file (default: torch's hub cache, else download).
        device: where the feature network runs (default CPU).
        progress: tqdm bar on stderr.

    Returns:
        :class:`EvaluationResult`.

    Raises:
        InputError: unknown metric or feature space, missing folder, too few samples.
        ShapeError: bad tensor layouts.
        WeightsUnavailableError: Inception weights missing offline (the message says where to put them).

    Example:
        >>> evaluate("ffhq/", G, num_samples=10000).metrics["fid"]  # doctest: +SKIP
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise InputError(f"metrics must be a non-empty subset of {METRICS}, got {list(metrics)}")
    features = resolve_features(features, inception_weights)
    if features not in FEATURES:
        raise InputError(f"features must be one of {FEATURES} or 'auto', got {features!r}")
    wanted_prdc = [m for m in metrics if m in ("precision", "recall", "density", "coverage")]
    if features == "precomputed":
        if not isinstance(real, (torch.Tensor, np.ndarray)) or not isinstance(fake, (torch.Tensor, np.ndarray)):
            raise InputError("features='precomputed' needs real and fake as feature arrays [N, D]")
        feats_real, feats_fake = as_features(real, "real"), as_features(fake, "fake")
    else:
        run = feature_extractor(features, inception_weights=inception_weights, device=device)  # built once
        if wanted_prdc:  # counts first: a too small set fails now, not after every feature is computed
            _check_prdc_sizes(real, fake, wanted_prdc, nearest_k=nearest_k, num_samples=num_samples, seed=seed)
        feats_real, feats_fake = (run_extractor(run, source, name, features=features, num_samples=num_samples, seed=seed,
                                                batch_size=32, progress=progress)
                                  for source, name in ((real, "real"), (fake, "fake")))
    if feats_real.shape[1] != feats_fake.shape[1]:
        raise ShapeError(f"real and fake features differ in size: {feats_real.shape[1]} vs {feats_fake.shape[1]}")

    fd_key, kd_key = metric_keys(features)
    values: dict[str, float] = {}
    if "fid" in metrics:
        values[fd_key] = frechet_distance(feats_real, feats_fake)
    if "kid" in metrics:
        values[kd_key], values[f"{kd_key}_std"] = kernel_distance(feats_real, feats_fake, seed=seed)
    if wanted_prdc:
        out = prdc_metrics(feats_real, feats_fake, nearest_k=nearest_k)
        values.update({m: out[m] for m in wanted_prdc})
    notes = []
    if features not in ("inception", "precomputed"):
        notes.append(f"distances measured in the '{features}' feature space: not comparable with published FID/KID")
    if min(len(feats_real), len(feats_fake)) < 2 * feats_real.shape[1] and ("fid" in metrics):
        notes.append(
            f"fewer samples ({min(len(feats_real), len(feats_fake))}) than twice the feature size ({feats_real.shape[1]}): "
            "the Fréchet distance is strongly biased upwards"
        )
    return EvaluationResult(values, features, len(feats_real), len(feats_fake), nearest_k, notes)
