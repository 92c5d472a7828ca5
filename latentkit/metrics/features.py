"""Feature spaces for sample-quality metrics: uint8 images ``[B, 3, H, W]`` -> float64 features ``[B, D]``.

``'inception'`` is torch-fidelity's Inception-v3 (the TF-FID port, 2048-d pool features; weights from
torch's hub cache, a download, or a local file); ``'pixels'`` (16x16 thumbnails) and ``'dlib_face'`` (dlib's
face embedding) are offline stand-ins whose distances are named ``fd_<features>``, never FID.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError, WeightsUnavailableError
from latentkit.metrics.image_sources import image_batches
from latentkit.metrics.settings import FEATURES

__all__ = ["FEATURES", "INCEPTION_URL", "PIXEL_SIZE", "as_features", "extract_features", "feature_extractor",
           "inception_cache_path", "resolve_features", "run_extractor"]

OFFLINE_FALLBACK = "pixels"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
PIXEL_SIZE = 16
_INCEPTION_NOTE = ("or pass inception_weights= (--inception-weights FILE). Offline, features='pixels' or 'dlib_face' "
                   "(--features pixels|dlib_face, or --features auto to fall back by itself) give stand-in distances "
                   "named fd_<features>, not FID")


def as_features(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Precomputed features as float64 ``[N, D]``, checked for shape and finiteness."""
    t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x), dtype=torch.float64)
    if t.ndim != 2:
        raise ShapeError(f"{name} must be features [N, D], got {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{name} holds non-finite values (NaN or inf)")
    return t



def inception_cache_path() -> Path:
    """Where torch-fidelity's Inception weights are looked up: torch's hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(INCEPTION_URL).name


def _inception_extractor(weights: str | os.PathLike | None, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = Path(weights) if weights is not None else inception_cache_path()
    if weights is not None and not path.is_file():
        raise InputError(f"inception_weights file not found: {path}")
    if not path.is_file():  # torch-fidelity's own file, fetched by latentkit's one downloader
        from latentkit.hub import download_url

        download_url(INCEPTION_URL, path, what="the FID Inception-v3 weights", note=_INCEPTION_NOTE)
    try:  # refuse anything but a plain state dict before torch-fidelity loads it
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"{path} is not a plain Inception state dict readable with weights_only=True: {err}") from err
    try:
        with contextlib.redirect_stdout(_io.StringIO()):
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], verbose=False,
                                              feature_extractor_weights_path=str(path))
    except Exception as err:
        raise WeightsUnavailableError(
            f"torch-fidelity cannot build its Inception-v3 from {path} ({type(err).__name__}: {err}); "
            f"{_INCEPTION_NOTE}"
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


def resolve_features(features: str, inception_weights: str | os.PathLike | None = None) -> str:
    """``'auto'`` -> ``'inception'`` when its weights are given or cached, else the offline stand-in
    ``'pixels'`` (logged, and the result's keys say ``fd_pixels``, never ``fid``); other names unchanged."""
    import logging

    if features != "auto":
        return features
    if inception_weights is not None or inception_cache_path().is_file():
        return "inception"
    logging.getLogger(__name__).warning(
        "features='auto': no Inception-v3 weights cached at %s, measuring in the offline '%s' space instead "
        "(fd_%s, not FID; --inception-weights FILE for FID)", inception_cache_path(), OFFLINE_FALLBACK, OFFLINE_FALLBACK)
    return OFFLINE_FALLBACK


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
        return as_features(source, "features")
    run = feature_extractor(features, inception_weights=inception_weights, device=device)
    return run_extractor(run, source, "source", features=features, num_samples=num_samples, seed=seed,
                          batch_size=batch_size, progress=progress)


def run_extractor(
    run: Callable[[torch.Tensor], torch.Tensor], source: Any, name: str, *, features: str, num_samples: int | None,
    seed: int, batch_size: int, progress: bool,
) -> torch.Tensor:
    """Run ``run`` over the uint8 batches of ``source`` (see :func:`~latentkit.metrics.image_sources.image_batches`) with a progress bar: ``[N, D]``."""
    from tqdm import tqdm

    count, batches = image_batches(source, name, num_samples=num_samples, seed=seed, batch_size=batch_size)
    out = []
    with tqdm(total=count, disable=not progress, desc=f"{features} features ({name})", unit="img", leave=False) as bar:
        for batch in batches:
            out.append(run(batch))
            bar.update(len(batch))
    return torch.cat(out)
