"""Project images into W or W+: find the latents (and noise) that make a generator reproduce them.

The optimisation follows NVIDIA's ``projector.py`` (stylegan2-ada-pytorch): Adam from the mean of
10 000 mapped samples, learning rate 0.1 with a linear ramp-up over the first 5 % of the steps and a
cosine ramp-down over the last 25 %, Gaussian noise added to the latents with a scale that decays to zero
at 75 % of the run, LPIPS VGG16 on images downscaled to at most 256 px, and a 1e5-weighted penalty on the
autocorrelation of the noise inputs, which are renormalised after every step. Differences:

* the noise inputs start from the generator's stored buffers (renormalised per image as after every
  step, instead of fresh Gaussian noise) and are returned, so the saved latents plus saved noise
  reproduce :attr:`ProjectionResult.images` exactly;
* with a prior, the run starts from the prior's mode mapped to W (``start='auto'``), not from the mean w,
  which lies far outside the prior's typical set;
* ``space='w+'`` (the default) optimises one w per layer; ``'w'`` one w broadcast to all layers;
* an optional Gaussian prior term ``prior_weight * sum_l prior.mahalanobis(w_l)`` keeps latents in
  well-behaved regions;
* N images are optimised together with per-image losses, statistics and random streams, so each
  image's result does not depend on the batch it is in;
* the state can be checkpointed every K steps and resumed bit for bit;
* for conditional generators the class can be searched: with ``classes=[...]`` every target is projected
  once per candidate class (as extra batch items) and the class with the lowest final loss is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentkit.checks import check_finite, check_image
from latentkit.errors import InputError, ShapeError
from latentkit.nets.generator import Generator

__all__ = ["ProjectionSettings", "ProjectionResult", "project", "prepare_targets", "DEFAULT_PRIOR_WEIGHT"]

logger = logging.getLogger(__name__)

DEFAULT_PRIOR_WEIGHT = 1e-5
"""Weight of the summed squared Mahalanobis distances (chosen by the experiment in benchmarks/)."""

_CHECKPOINT_VERSION = 1
_SPACES = ("w", "w+")

TargetLike = torch.Tensor | str | os.PathLike


@dataclass(frozen=True)
class ProjectionSettings:
    """Everything that determines a projection (shared by :func:`project` and ``latentkit project``).

    Attributes:
        space: ``'w+'`` (one w per layer) or ``'w'`` (one w broadcast to all layers).
        num_steps: optimisation steps.
        learning_rate: peak Adam learning rate (NVIDIA: 0.1).
        betas: Adam betas (NVIDIA: (0.9, 0.999)).
        lr_rampup_length: fraction of the run with a linear learning-rate ramp-up (0.05).
        lr_rampdown_length: fraction of the run with a cosine ramp-down to zero (0.25).
        initial_noise_factor: latent noise scale at step 0, in units of the samples' w standard deviation.
        noise_ramp_length: fraction of the run after which no latent noise is added (0.75).
        w_avg_samples: mapped samples for the starting point and the w standard deviation (10 000, drawn
            with ``np.random.RandomState(123)`` as NVIDIA does).
        start: ``'w_avg'`` (NVIDIA: the samples' mean w), ``'prior_mean'`` (the prior's mode mapped to W,
            Mahalanobis 0; the mean of w sits far outside the prior's typical set, e.g. a squared distance
            of ~1e4-3e5 per vector on the nets tried) or ``'auto'`` (``'prior_mean'`` when a prior is given).
        parametrization: ``'auto'`` (``'prior'`` when a prior is given, else ``'w'``), ``'w'`` (Adam on w,
            NVIDIA) or ``'prior'`` (Adam on the prior's whitened PCA
            coefficients u, ``w = prior.from_coefficients(u)``; the prior term is then ``|u|^2`` and the
            latent noise has the same relative scale: ``initial_noise_factor * sqrt(w_dim)`` per coordinate's
            unit). ``'prior'`` is well conditioned where the prior has tiny eigenvalues, which make
            Adam's per-coordinate steps in w blow the Mahalanobis distance up (MobileStyleGAN FFHQ, smallest
            eigenvalue 3e-8: 5e5 per vector after 2 steps in w, 0.45 after 8 steps in u).
        regularize_noise_weight: weight of the noise autocorrelation penalty (1e5).
        optimize_noise: optimise the noise inputs (else keep the stored ones).
        prior_weight: weight of ``sum_l prior.mahalanobis(w_l)`` (used only when a prior is given).
        perceptual: ``'vgg'`` (LPIPS VGG16 v0.1) or None for no perceptual term.
        perceptual_weights: VGG16 weights source (see :func:`latentkit.perceptual.lpips_vgg`).
        max_perceptual_resolution: images are area-downscaled to at most this size for LPIPS (256).
        mse_weight: weight of the pixel mean squared error (images in [-1, 1]).
        seed: seed of each image's latent-noise stream (every image gets its own stream from this seed).
    """

    space: str = "w+"
    num_steps: int = 1000
    learning_rate: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    lr_rampup_length: float = 0.05
    lr_rampdown_length: float = 0.25
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    w_avg_samples: int = 10_000
    start: str = "auto"
    parametrization: str = "auto"
    regularize_noise_weight: float = 1e5
    optimize_noise: bool = True
    prior_weight: float = DEFAULT_PRIOR_WEIGHT
    perceptual: str | None = "vgg"
    perceptual_weights: str = "auto"
    max_perceptual_resolution: int = 256
    mse_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in _SPACES:
            raise InputError(f"space must be one of {_SPACES}, got {self.space!r}")
        if int(self.num_steps) < 1:
            raise InputError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.start not in ("auto", "w_avg", "prior_mean"):
            raise InputError(f"start must be 'auto', 'w_avg' or 'prior_mean', got {self.start!r}")
        if self.parametrization not in ("auto", "w", "prior"):
            raise InputError(f"parametrization must be 'auto', 'w' or 'prior', got {self.parametrization!r}")
        if self.perceptual not in ("vgg", None):
            raise InputError(f"perceptual must be 'vgg' or None, got {self.perceptual!r}")
        if self.perceptual is None and self.mse_weight <= 0:
            raise InputError("perceptual=None needs mse_weight > 0 (otherwise nothing is fitted to the target)")
        for name in ("learning_rate", "prior_weight", "mse_weight", "regularize_noise_weight", "w_avg_samples"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.w_avg_samples < 2:
            raise InputError(f"w_avg_samples must be >= 2, got {self.w_avg_samples}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


_DEFAULTS = ProjectionSettings()


@dataclass
class ProjectionResult:
    """What :func:`project` found.

    Attributes:
        ws: ``[N, num_ws, w_dim]`` final latents (W broadcast to all layers for ``space='w'``).
        images: ``[N, C, H, W]`` the generator's raw output for ``ws`` and ``noises`` (not clamped).
        targets: ``[N, C, H, W]`` the targets as fitted (after resizing), in [-1, 1].
        losses: ``[N, num_steps]`` total loss per image per step (CPU, float32).
        loss_terms: name -> ``[N, num_steps]``: ``'perceptual'``, ``'mse'``, ``'noise'``, ``'prior'``
            (unweighted values).
        noises: name -> ``[N, 1, H, W]`` noise inputs that reproduce ``images`` (empty for StyleGAN3).
        settings: the :class:`ProjectionSettings` used.
        perceptual_weights: where the LPIPS backbone weights came from (None without a perceptual term).
        classes: ``[N]`` int64 class index per image for conditional generators with one-hot labels (the
            given class with ``c=``, the chosen one with ``classes=``); None for unconditional generators
            or labels that are not one-hot.
        class_losses: ``[N, K]`` total loss at the last step for each of the ``K`` candidate classes
            (``classes=`` search only, else None); ``classes[i] == candidate_classes[class_losses[i].argmin()]``.
        candidate_classes: the ``K`` classes searched (``classes=`` search only, else None).
    """

    ws: torch.Tensor
    images: torch.Tensor
    targets: torch.Tensor
    losses: torch.Tensor
    loss_terms: dict[str, torch.Tensor]
    noises: dict[str, torch.Tensor]
    settings: ProjectionSettings
    perceptual_weights: str | None = None
    classes: torch.Tensor | None = None
    class_losses: torch.Tensor | None = None
    candidate_classes: tuple[int, ...] | None = None


# --------------------------------------------------------------------------------------------------
# Targets.


def _fit_resolution(img: torch.Tensor, resolution: int, name: str) -> torch.Tensor:
    """Centre-crop ``[1, C, H, W]`` to a square and resize it (antialiased bicubic) to ``resolution``."""
    h, w = img.shape[2:]
    if (h, w) == (resolution, resolution):
        return img
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[:, :, top : top + side, left : left + side]
    logger.info(
        "%s: centre-cropped %dx%d to %dx%d and resized to %dx%d", name, w, h, side, side, resolution, resolution
    )
    return F.interpolate(img, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)


def _fit_channels(img: torch.Tensor, channels: int) -> torch.Tensor:
    if img.shape[1] == channels:
        return img
    if img.shape[1] == 1:
        return img.expand(-1, channels, -1, -1)
    if img.shape[1] == 3 and channels == 1:
        return (img * torch.tensor([0.299, 0.587, 0.114], device=img.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ShapeError(f"cannot turn a {img.shape[1]}-channel target into the generator's {channels} channels")


def prepare_targets(G: Generator, targets: TargetLike | Sequence[TargetLike]) -> torch.Tensor:
    """Load and fit targets to the generator: ``[N, img_channels, img_resolution, img_resolution]``.

    Args:
        G: the generator.
        targets: an image file path (PNG/JPEG/WebP...; RGBA, greyscale, 16-bit handled), a float tensor
            ``[C, H, W]`` or ``[N, C, H, W]`` in [-1, 1], or a sequence of these.

    Returns:
        float32 CPU tensor in [-1, 1], centre-cropped and resized to ``G.img_resolution`` (logged).

    Raises:
        InputError: an unreadable file, an empty list, or tensor values outside [-1, 1].
        ShapeError: a tensor that is not an image batch.
    """
    from latentkit.io import load_image

    items = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not items:
        raise InputError("targets is empty: pass at least one image path or tensor")
    out = []
    for k, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            img = item.detach().to("cpu", torch.float32)
            if img.ndim == 3:
                img = img.unsqueeze(0)
            check_image(img, f"targets[{k}]")
            check_finite(img, f"targets[{k}]")
            lo, hi = float(img.min()), float(img.max())
            if lo < -1.01 or hi > 1.01:
                raise InputError(
                    f"targets[{k}] must hold values in [-1, 1], got [{lo:.3g}, {hi:.3g}]; "
                    "for uint8-range images use img / 127.5 - 1"
                )
            name = f"targets[{k}]"
        else:
            img = load_image(item, channels=3 if G.img_channels == 3 else 1)
            name = os.fspath(item)
        img = _fit_channels(img, G.img_channels)
        out.extend(_fit_resolution(one, G.img_resolution, name) for one in img.split(1))
    return torch.cat(out).clamp(-1, 1)


# --------------------------------------------------------------------------------------------------
# Pieces of the optimisation.


def _w_stats(G: Generator, c: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: mean w ``[N, w_dim]`` and the scalar std ``[N]`` of ``n_samples`` mapped samples of
    its class (NVIDIA: ``RandomState(123)``; std = sqrt(sum of squared deviations / n))."""
    device = G.w_avg.device
    z = torch.from_numpy(np.random.RandomState(123).randn(n_samples, G.z_dim)).to(device, torch.float32)
    keys = [tuple(row.tolist()) for row in c.cpu()]
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    means, stds = [], []
    for key, row in zip(keys, c):
        if key not in cache:
            with torch.no_grad():
                w = torch.cat([G.map_latent(chunk, row.expand(len(chunk), -1)) for chunk in z.split(2500)])
            mean = w.to(torch.float64).mean(0)
            std = ((w.to(torch.float64) - mean).square().sum() / n_samples).sqrt()
            cache[key] = (mean.to(torch.float32), std.to(torch.float32))
        means.append(cache[key][0])
        stds.append(cache[key][1])
    return torch.stack(means), torch.stack(stds)


def _learning_rate(s: ProjectionSettings, step: int) -> float:
    t = step / s.num_steps
    ramp = min(1.0, (1.0 - t) / s.lr_rampdown_length) if s.lr_rampdown_length > 0 else 1.0
    ramp = 0.5 - 0.5 * np.cos(ramp * np.pi)
    ramp = ramp * (min(1.0, t / s.lr_rampup_length) if s.lr_rampup_length > 0 else 1.0)
    return float(s.learning_rate * ramp)


def _noise_scale(s: ProjectionSettings, step: int) -> float:
    t = step / s.num_steps
    if s.noise_ramp_length <= 0:
        return 0.0
    return s.initial_noise_factor * max(0.0, 1.0 - t / s.noise_ramp_length) ** 2


def _noise_penalty(noises: dict[str, torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
    """Per image: squared autocorrelation at one-pixel shifts over a pyramid down to 8x8, ``[N]``."""
    total = torch.zeros(n, device=device)
    for buf in noises.values():
        x = buf  # [N, 1, H, W]
        while True:
            total = total + (x * x.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (x * x.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, kernel_size=2)
    return total


@torch.no_grad()
def _renormalise(buf: torch.Tensor) -> None:
    """In place, per image: zero mean and unit variance of a noise buffer ``[N, 1, H, W]``."""
    buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
    buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def _fingerprint(
    G: Generator,
    targets: torch.Tensor,
    c: torch.Tensor,
    settings: ProjectionSettings,
    prior: Any,
    perceptual_weights: str | None,
) -> str:
    digest = hashlib.sha256()
    digest.update(targets.numpy().tobytes())
    digest.update(c.cpu().numpy().tobytes())
    meta = {
        "settings": settings.to_dict(),
        "generator": G.sha256 or str(G.source),
        "arch": G.architecture,
        "prior": None if prior is None else type(prior).__name__,
        "perceptual": perceptual_weights,
    }
    digest.update(json.dumps(meta, sort_keys=True).encode())
    mean = getattr(prior, "mean_", None)  # a different prior file must not resume this run
    if isinstance(mean, torch.Tensor):
        digest.update(mean.detach().to("cpu", torch.float64).numpy().tobytes())
    return digest.hexdigest()


def _merge_settings(settings: ProjectionSettings | None, overrides: dict[str, Any]) -> ProjectionSettings:
    changed = {k: v for k, v in overrides.items() if v != getattr(_DEFAULTS, k)}
    if settings is None:
        return dataclasses.replace(_DEFAULTS, **changed)
    if changed:
        raise InputError(
            f"pass either settings= or the options {sorted(changed)}, not both "
            "(use dataclasses.replace(settings, ...) to change a settings object)"
        )
    return settings


# --------------------------------------------------------------------------------------------------
# The projector.


def project(
    G: Generator,
    targets: TargetLike | Sequence[TargetLike],
    *,
    space: str = _DEFAULTS.space,
    prior: Any = None,
    prior_weight: float = _DEFAULTS.prior_weight,
    num_steps: int = _DEFAULTS.num_steps,
    perceptual: Any = _DEFAULTS.perceptual,
    mse_weight: float = _DEFAULTS.mse_weight,
    seed: int = _DEFAULTS.seed,
    settings: ProjectionSettings | None = None,
    c: torch.Tensor | None = None,
    classes: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    progress: bool = True,
) -> ProjectionResult:
    """Find latents (and noise) that make ``G`` reproduce each target image.

    Args:
        G: the generator (its parameters stay untouched).
        targets: image path(s) and/or float tensors ``[N, C, H, W]`` in [-1, 1]; resized and centre-cropped
            to ``G.img_resolution`` with a logged notice (see :func:`prepare_targets`).
        space: ``'w+'`` or ``'w'``.
        prior: a fitted :class:`~latentkit.prior.GaussianPrior` (anything with a differentiable
            ``mahalanobis(w [..., w_dim]) -> [...]``), or None for no prior term.
        prior_weight: weight of the prior term (per optimised w vector).
        num_steps: optimisation steps.
        perceptual: ``'vgg'`` (LPIPS VGG16 v0.1 with ``settings.perceptual_weights``), a ready
            :class:`~latentkit.perceptual.PerceptualLoss`, or None (then ``mse_weight`` must be > 0).
        mse_weight: weight of the pixel MSE term.
        seed: seed of each image's latent-noise stream.
        settings: all options at once (:class:`ProjectionSettings`); exclusive with the options above.
        c: class labels ``[N, c_dim]`` for conditional generators (exclusive with ``classes``).
        classes: search the class (conditional generators): each target is projected once per class in
            this list, as extra batch items (results do not depend on the batch), and the class with the
            lowest total loss at the last step is kept (:attr:`ProjectionResult.classes`, with all the
            candidates' losses in :attr:`ProjectionResult.class_losses`). Costs ``len(classes)`` times one
            projection; ``callback`` then sees ``[N * K, num_ws, w_dim]`` latents ordered image-major.
        device: where to compute (default: the generator's device; the generator is not moved).
        checkpoint: file to save the optimisation state to every ``checkpoint_every`` steps; if it exists
            and belongs to the same run (same targets, settings, generator), the run resumes from it.
        checkpoint_every: steps between checkpoints.
        callback: called as ``callback(step, ws)`` after each step with the current latents
            ``[N, num_ws, w_dim]`` (without latent noise), e.g. to record a video.
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`ProjectionResult`.

    Raises:
        InputError: invalid options, unreadable targets, a checkpoint of a different run, or ``classes``
            that are empty, repeated, out of ``[0, c_dim)``, given with ``c=`` or on an unconditional net.
        ShapeError: targets or labels of the wrong shape.
        WeightsUnavailableError: no pretrained LPIPS weights available (see ``perceptual_weights``).

    Example:
        >>> result = project(G, "face.png", prior=GaussianPrior.cached(G))  # doctest: +SKIP
        >>> result.ws.shape  # [1, G.num_ws, G.w_dim]
    """
    from tqdm.auto import tqdm

    from latentkit.perceptual import PerceptualLoss, lpips_vgg

    net = perceptual if isinstance(perceptual, PerceptualLoss) else None
    settings = _merge_settings(
        settings,
        {
            "space": space,
            "prior_weight": prior_weight,
            "num_steps": num_steps,
            "seed": seed,
            "perceptual": "vgg" if net is not None else perceptual,
            "mse_weight": mse_weight,
        },
    )
    s = settings
    here = G.w_avg.device
    device = torch.device(device) if device is not None else here
    if device.type != here.type or device.index not in (None, here.index):  # 'cuda' matches 'cuda:0'
        raise InputError(f"device={device} but the generator is on {here}; move it with G.to(device)")
    device = here
    if prior is not None and not callable(getattr(prior, "mahalanobis", None)):
        raise InputError(
            f"prior must have a mahalanobis(ws) method (a fitted GaussianPrior), got {type(prior).__name__}"
        )
    target_cpu = prepare_targets(G, targets)
    n = target_cpu.shape[0]
    if classes is not None:
        return _project_class_search(
            G,
            target_cpu,
            _candidate_classes(G, classes, c),
            settings=s,
            prior=prior,
            perceptual=net if net is not None else _DEFAULTS.perceptual,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            callback=callback,
            progress=progress,
        )
    labels = G.prepare_labels(c, n)
    if s.perceptual == "vgg" and net is None:
        net = lpips_vgg(s.perceptual_weights, device=device, max_resolution=s.max_perceptual_resolution)
    if net is not None:
        net = net.to(device)
    target = target_cpu.to(device)
    target_feats = None
    if net is not None:
        with torch.no_grad():
            target_feats = net.features(target)

    w_avg, w_std = _w_stats(G, labels, s.w_avg_samples)  # [N, w_dim], [N]
    layers = 1 if s.space == "w" else G.num_ws
    start_w = w_avg
    if s.start == "prior_mean" or (s.start == "auto" and prior is not None):
        if prior is None or not callable(getattr(prior, "from_coefficients", None)):
            raise InputError("start='prior_mean' needs a fitted GaussianPrior (with from_coefficients) as prior=")
        with torch.no_grad():
            mode = prior.from_coefficients(torch.zeros(1, G.w_dim, device=device))  # [1, w_dim]
        start_w = mode.to(device, torch.float32).expand(n, -1)
    start_w = start_w.unsqueeze(1).repeat(1, layers, 1)  # [N, layers, w_dim]
    in_prior = s.parametrization == "prior" or (s.parametrization == "auto" and prior is not None)
    if in_prior:
        if prior is None or not callable(getattr(prior, "coefficients", None)):
            raise InputError("parametrization='prior' needs a fitted GaussianPrior as prior=")
        with torch.no_grad():
            start_w = prior.coefficients(start_w).to(torch.float32)  # u, [N, layers, w_dim]
        w_std = torch.full_like(w_std, math.sqrt(G.w_dim))  # RMS norm of u, as w_std is of w
    w_opt = start_w.detach().clone().requires_grad_(True)  # w, or u with parametrization='prior'

    def to_w(x: torch.Tensor) -> torch.Tensor:
        return prior.from_coefficients(x) if in_prior else x

    stored = {k: v.to(device, torch.float32) for k, v in G.const_noise().items()}
    noises = {k: v.expand(n, -1, -1, -1).clone() for k, v in stored.items()}
    if s.optimize_noise:  # the same renormalisation as after every step, so step 0 is not an outlier for Adam
        for buf in noises.values():
            _renormalise(buf.requires_grad_(True))
    params = [w_opt] + (list(noises.values()) if s.optimize_noise else [])
    optimizer = torch.optim.Adam(params, lr=s.learning_rate, betas=s.betas)
    streams = [torch.Generator().manual_seed(int(s.seed)) for _ in range(n)]
    names = ("perceptual", "mse", "noise", "prior")
    history: list[torch.Tensor] = []  # per step: [N, 5] (total + terms)

    start = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    fingerprint = _fingerprint(G, target_cpu, labels, s, prior, getattr(net, "weights", None))
    if ckpt_path is not None and ckpt_path.is_file():
        start = _restore(ckpt_path, fingerprint, w_opt, noises, optimizer, streams, history)
        logger.info("project: resuming from %s at step %d of %d", ckpt_path, start, s.num_steps)

    bar = tqdm(total=s.num_steps, initial=start, desc="project", disable=not progress, leave=False)
    for step in range(start, s.num_steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(s, step)
        scale = (w_std * _noise_scale(s, step)).view(n, 1, 1)
        w_noise = torch.stack([torch.randn(w_opt.shape[1:], generator=g) for g in streams]).to(device)
        ws = to_w(w_opt + w_noise * scale).expand(-1, G.num_ws, -1)  # [N, num_ws, w_dim]
        images = G.synthesis(ws, noise_mode="const", noise=noises or None)
        zero = torch.zeros(n, device=device)
        terms = {
            "perceptual": net.distance_from_features(net.features(images), target_feats) if net is not None else zero,
            "mse": (images - target).square().mean(dim=(1, 2, 3)) if s.mse_weight > 0 else zero,
            "noise": _noise_penalty(noises, n, device) if s.optimize_noise else zero,
            "prior": (w_opt.square().sum(dim=2) if in_prior else prior.mahalanobis(w_opt)).sum(dim=1)
            if prior is not None
            else zero,
        }
        loss = (
            terms["perceptual"]
            + s.mse_weight * terms["mse"]
            + s.regularize_noise_weight * terms["noise"]
            + (s.prior_weight * terms["prior"] if prior is not None else zero)
        )  # [N]
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # a sum keeps each image's gradient its own
        optimizer.step()
        for buf in noises.values():
            _renormalise(buf)
        history.append(torch.stack([loss.detach()] + [terms[k].detach() for k in names], dim=1).cpu())
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach().mean()):.4f}")
        if callback is not None:
            with torch.no_grad():
                callback(step, to_w(w_opt.detach()).expand(-1, G.num_ws, -1).clone())
        if ckpt_path is not None and ((step + 1) % max(1, checkpoint_every) == 0 or step + 1 == s.num_steps):
            _save(ckpt_path, fingerprint, step + 1, w_opt, noises, optimizer, streams, history)
    bar.close()

    with torch.no_grad():
        final_ws = to_w(w_opt.detach()).to(torch.float32).expand(-1, G.num_ws, -1).contiguous()
        final_noise = {k: v.detach().clone() for k, v in noises.items()}
        images = G.synthesis(final_ws, noise_mode="const", noise=final_noise or None)
    table = torch.stack(history, dim=2)  # [N, 5, num_steps]
    return ProjectionResult(
        ws=final_ws,
        images=images,
        targets=target_cpu,
        losses=table[:, 0].contiguous(),
        loss_terms={k: table[:, i + 1].contiguous() for i, k in enumerate(names)},
        noises=final_noise,
        settings=s,
        perceptual_weights=getattr(net, "weights", None),
        classes=_class_indices(labels),
    )


def _candidate_classes(G: Generator, classes: Sequence[int], c: torch.Tensor | None) -> tuple[int, ...]:
    """Validate the ``classes=`` of a class search: distinct ints in ``[0, c_dim)``."""
    if c is not None:
        raise InputError("pass either c= (a given class) or classes= (search over classes), not both")
    if G.c_dim == 0:
        raise InputError("classes= needs a class-conditional generator; this one is unconditional (c_dim=0)")
    try:
        chosen = tuple(int(k) for k in classes)
    except (TypeError, ValueError) as err:
        raise InputError(f"classes must be a list of class indices, got {classes!r}") from err
    if not chosen:
        raise InputError("classes is empty: give at least one class to search over")
    bad = [k for k in chosen if not 0 <= k < G.c_dim]
    if bad:
        raise InputError(f"classes must lie in [0, {G.c_dim - 1}] (the generator's c_dim is {G.c_dim}), got {bad}")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"classes has repeated entries: {list(chosen)}; give each class once")
    return chosen


def _class_indices(labels: torch.Tensor) -> torch.Tensor | None:
    """``[N]`` class indices of one-hot labels ``[N, c_dim]``; None when unconditional or not one-hot."""
    if labels.shape[1] == 0:
        return None
    rows = labels.detach().cpu()
    one_hot = ((rows == 0) | (rows == 1)).all() and bool((rows.sum(1) == 1).all())
    return rows.argmax(1) if one_hot else None


def _project_class_search(
    G: Generator,
    target_cpu: torch.Tensor,
    candidates: tuple[int, ...],
    **kwargs: Any,
) -> ProjectionResult:
    """Project every target once per candidate class and keep, per target, the lowest final loss."""
    from latentkit.sampling import one_hot

    n, k = target_cpu.shape[0], len(candidates)
    logger.info("project: searching %d classes per image (%d projections)", k, n * k)
    labels = one_hot(list(candidates) * n, G.c_dim, device=G.w_avg.device)  # image-major: [N * K, c_dim]
    full = project(G, target_cpu.repeat_interleave(k, dim=0), c=labels, **kwargs)
    final = full.losses[:, -1].reshape(n, k)  # [N, K]
    best = final.argmin(dim=1)  # [N]
    rows = torch.arange(n) * k + best
    dev_rows = rows.to(full.ws.device)
    return ProjectionResult(
        ws=full.ws[dev_rows].contiguous(),
        images=full.images[dev_rows].contiguous(),
        targets=target_cpu,
        losses=full.losses[rows].contiguous(),
        loss_terms={name: v[rows].contiguous() for name, v in full.loss_terms.items()},
        noises={name: v[dev_rows].contiguous() for name, v in full.noises.items()},
        settings=full.settings,
        perceptual_weights=full.perceptual_weights,
        classes=torch.tensor(candidates, dtype=torch.long)[best],
        class_losses=final.contiguous(),
        candidate_classes=candidates,
    )


# --------------------------------------------------------------------------------------------------
# Checkpoints: tensors and plain data only, read back with torch.load(weights_only=True).


def _save(
    path: Path,
    fingerprint: str,
    step: int,
    w_opt: torch.Tensor,
    noises: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    streams: list[torch.Generator],
    history: list[torch.Tensor],
) -> None:
    from latentkit.io import atomic_path

    state = {
        "version": _CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "step": step,
        "w_opt": w_opt.detach().cpu(),
        "noises": {k: v.detach().cpu() for k, v in noises.items()},
        "optimizer": optimizer.state_dict(),
        "rng": [g.get_state() for g in streams],
        "history": torch.stack(history) if history else torch.zeros(0),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _restore(
    path: Path,
    fingerprint: str,
    w_opt: torch.Tensor,
    noises: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    streams: list[torch.Generator],
    history: list[torch.Tensor],
) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise InputError(f"cannot read checkpoint {path}: {err}; delete it to start afresh") from err
    if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
        raise InputError(f"{path} is not a latentkit projection checkpoint (version {_CHECKPOINT_VERSION}); delete it")
    if state["fingerprint"] != fingerprint:
        raise InputError(
            f"checkpoint {path} belongs to another run (different targets, settings or generator): delete it "
            "or use another output folder"
        )
    with torch.no_grad():
        w_opt.copy_(state["w_opt"])
        for k, v in noises.items():
            v.copy_(state["noises"][k])
    optimizer.load_state_dict(state["optimizer"])
    for g, rng in zip(streams, state["rng"]):
        g.set_state(rng)
    history.extend(state["history"].unbind(0) if state["history"].numel() else [])
    return int(state["step"])
