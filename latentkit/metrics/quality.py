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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError, WeightsUnavailableError

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

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
FEATURES = ("inception", "pixels", "dlib_face", "precomputed")
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
#: KID as torch-fidelity and the KID paper compute it: 100 subsets of (at most) 1000 samples, cubic
#: polynomial kernel ``(x.y / D + 1) ** 3``.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PIXEL_SIZE = 16

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


def _as_features(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x), dtype=torch.float64)
    if t.ndim != 2:
        raise ShapeError(f"{name} must be features [N, D], got {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ShapeError(f"{name} holds non-finite values (NaN or inf)")
    return t


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

    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
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

    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
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
    nearest_k: int = 5,
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

    a, b = _as_features(real_features, "real_features"), _as_features(fake_features, "fake_features")
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) <= nearest_k + 1 or nearest_k < 1:
        raise ShapeError(
            f"precision/recall/density/coverage need [N, D] features with equal D and N > nearest_k + 1 >= 2, got "
            f"{list(a.shape)}, {list(b.shape)}, nearest_k={nearest_k}"
        )
    with contextlib.redirect_stdout(_io.StringIO()):  # prdc prints the sample counts
        out = compute_prdc(real_features=a.numpy(), fake_features=b.numpy(), nearest_k=nearest_k)
    return {key: float(value) for key, value in out.items()}


# --------------------------------------------------------------------------------------------------
# Feature extractors: uint8 [B, 3, H, W] -> [B, D].


def inception_cache_path() -> Path:
    """Where torch-fidelity's Inception weights are looked up: torch's hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(INCEPTION_URL).name


def _inception_extractor(weights: str | os.PathLike | None, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = Path(weights) if weights is not None else inception_cache_path()
    if weights is not None and not path.is_file():
        raise InputError(f"inception_weights file not found: {path}")
    if path.is_file():
        try:  # refuse anything but a plain state dict before torch-fidelity loads it
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(f"{path} is not a plain Inception state dict readable with weights_only=True: {err}") from err
        kwargs: dict[str, Any] = {"feature_extractor_weights_path": str(path)}
    else:
        kwargs = {}
    try:
        with contextlib.redirect_stdout(_io.StringIO()):
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], verbose=False, **kwargs)
    except Exception as err:
        raise WeightsUnavailableError(
            f"the FID Inception-v3 weights are not cached and cannot be downloaded ({type(err).__name__}: {err}). "
            f"Download {INCEPTION_URL} and put it at {path} (the torch hub cache; set TORCH_HOME to move it), "
            f"or pass inception_weights= (--inception-weights). Offline, features='pixels' or 'dlib_face' give "
            f"stand-in distances named fd_<features>, not FID."
        ) from err
    net = net.to(device)

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(batch.to(device))[0].double().cpu()

    return run


def _pixel_extractor(batch: torch.Tensor) -> torch.Tensor:
    small = torch.nn.functional.interpolate(batch.double() / 255.0, size=(PIXEL_SIZE, PIXEL_SIZE), mode="area")
    return small.flatten(1)  # [B, 3 * 16 * 16]


def _dlib_extractor() -> Callable[[torch.Tensor], torch.Tensor]:
    from latentkit.metrics.identity import FaceEmbedder

    embedder = FaceEmbedder("dlib", detect=False)

    def run(batch: torch.Tensor) -> torch.Tensor:
        arrays = [np.ascontiguousarray(x) for x in batch.permute(0, 2, 3, 1).numpy()]
        return embedder.embed(arrays)[0].double()

    return run


def feature_extractor(
    features: str = "inception",
    *,
    inception_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from uint8 images ``[B, 3, H, W]`` to float64 features ``[B, D]`` on the CPU.

    Args:
        features: ``'inception'``, ``'pixels'`` or ``'dlib_face'`` (see :func:`evaluate`).
        inception_weights: local Inception weights file (``'inception'`` only).
        device: where the Inception network runs (default CPU).

    Raises:
        InputError: unknown feature space.
        WeightsUnavailableError: Inception weights missing offline.
    """
    if features == "inception":
        return _inception_extractor(inception_weights, torch.device(device or "cpu"))
    if features == "pixels":
        return _pixel_extractor
    if features == "dlib_face":
        return _dlib_extractor()
    raise InputError(f"features must be one of {FEATURES}, got {features!r}")


# --------------------------------------------------------------------------------------------------
# Sources -> batches of uint8 [B, 3, H, W].


def _image_files(folder: Path) -> list[Path]:
    from latentkit.io import IMAGE_SUFFIXES

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in folder {folder}")
    return files


def _uint8(img: torch.Tensor) -> torch.Tensor:
    from latentkit.io import to_uint8

    out = torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2)  # [B, C, H, W] uint8
    return out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out


def _batches(source: Any, name: str, *, num_samples: int | None, seed: int, batch_size: int) -> tuple[int, Iterator[torch.Tensor]]:
    """(count, iterator over uint8 [B, 3, H, W] batches) for a folder, an image tensor or a Generator."""
    from latentkit.nets.generator import Generator

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_dir():
            raise InputError(f"{name}: folder not found: {path}")
        files = _image_files(path)
        if num_samples is not None:
            files = files[:num_samples]

        def from_files() -> Iterator[torch.Tensor]:
            from latentkit.io import load_image

            pending: list[torch.Tensor] = []
            for file in files:
                img = _uint8(load_image(file))
                if pending and (img.shape != pending[0].shape or len(pending) == batch_size):
                    yield torch.cat(pending)
                    pending = []
                pending.append(img)
            if pending:
                yield torch.cat(pending)

        return len(files), from_files()
    if isinstance(source, Generator):
        if num_samples is None or num_samples < 2:
            raise InputError(f"{name} is a generator: pass num_samples >= 2 (--num-samples), got {num_samples}")
        return num_samples, _generator_batches(source, num_samples, seed=seed, batch_size=batch_size)
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or source.shape[1] not in (1, 3) or not source.is_floating_point():
            raise ShapeError(f"{name} must be float images [N, C, H, W] in [-1, 1] (C = 1 or 3), got {source.dtype} {list(source.shape)}")
        return len(source), (_uint8(source[i : i + batch_size]) for i in range(0, len(source), batch_size))
    raise InputError(f"{name} must be a folder, an image tensor [N, C, H, W] or a Generator, got {type(source).__name__}")


def _generator_batches(G: Any, num_samples: int, *, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Untruncated samples for seeds ``seed .. seed + num_samples - 1`` (z as NVIDIA's gen_images.py draws it)."""
    from latentkit.latent.sampling import one_hot, z_from_seed

    for start in range(seed, seed + num_samples, batch_size):
        seeds = range(start, min(start + batch_size, seed + num_samples))
        z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds])
        c = None
        if G.c_dim:
            classes = [int(np.random.RandomState(s).randint(G.c_dim)) for s in seeds]
            c = one_hot(classes, G.c_dim)
        with torch.no_grad():
            yield _uint8(G(z.to(G.w_avg.device), None if c is None else c.to(G.w_avg.device)).cpu())


def extract_features(
    source: Any,
    *,
    features: str = "inception",
    num_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    inception_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Features ``[N, D]`` float64 of a folder, an image tensor ``[N, C, H, W]`` in [-1, 1] or a Generator's
    untruncated samples (seeds ``seed ..``). Options as in :func:`evaluate`."""
    if features == "precomputed":
        return _as_features(source, "features")
    run = feature_extractor(features, inception_weights=inception_weights, device=device)
    return _run_extractor(run, source, "source", features=features, num_samples=num_samples, seed=seed,
                          batch_size=batch_size, progress=progress)


def _run_extractor(
    run: Callable[[torch.Tensor], torch.Tensor], source: Any, name: str, *, features: str, num_samples: int | None,
    seed: int, batch_size: int, progress: bool,
) -> torch.Tensor:
    from tqdm import tqdm

    count, batches = _batches(source, name, num_samples=num_samples, seed=seed, batch_size=batch_size)
    out = []
    with tqdm(total=count, disable=not progress, desc=f"{features} features ({name})", unit="img", leave=False) as bar:
        for batch in batches:
            out.append(run(batch))
            bar.update(len(batch))
    return torch.cat(out)


def metric_keys(features: str) -> tuple[str, str]:
    """The result keys of the Fréchet and kernel distances in a feature space: ``('fid', 'kid')`` for
    Inception, ``('fd', 'kd')`` for precomputed features, else ``('fd_<features>', 'kd_<features>')``."""
    return {"inception": ("fid", "kid"), "precomputed": ("fd", "kd")}.get(features, (f"fd_{features}", f"kd_{features}"))


def evaluate(
    real: Source,
    fake: Source,
    *,
    metrics: Sequence[str] = METRICS,
    features: str = "inception",
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
        features: ``'inception'`` (torch-fidelity's Inception-v3, 2048-d; keys ``fid``/``kid``);
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
    if features not in FEATURES:
        raise InputError(f"features must be one of {FEATURES}, got {features!r}")
    if features == "precomputed":
        feats_real, feats_fake = _as_features(real, "real"), _as_features(fake, "fake")
    else:
        run = feature_extractor(features, inception_weights=inception_weights, device=device)  # built once
        common = {"features": features, "num_samples": num_samples, "seed": seed, "batch_size": 32, "progress": progress}
        feats_real = _run_extractor(run, real, "real", **common)
        feats_fake = _run_extractor(run, fake, "fake", **common)
    if feats_real.shape[1] != feats_fake.shape[1]:
        raise ShapeError(f"real and fake features differ in size: {feats_real.shape[1]} vs {feats_fake.shape[1]}")

    fd_key, kd_key = metric_keys(features)
    values: dict[str, float] = {}
    if "fid" in metrics:
        values[fd_key] = frechet_distance(feats_real, feats_fake)
    if "kid" in metrics:
        values[kd_key], values[f"{kd_key}_std"] = kernel_distance(feats_real, feats_fake, seed=seed)
    wanted_prdc = [m for m in metrics if m in ("precision", "recall", "density", "coverage")]
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
