"""Project images into W or W+: find the latents (and noise) that make a generator reproduce them.

The optimisation follows NVIDIA's ``projector.py`` (stylegan2-ada-pytorch): Adam from the mean of
10 000 mapped samples, learning rate 0.1 with a linear ramp-up over the first 5 % of the steps and a
cosine ramp-down over the last 25 %, Gaussian noise added to the latents with a scale that decays to zero
at 75 % of the run, LPIPS VGG16 on images downscaled to at most 256 px, and a 1e5-weighted penalty on the
autocorrelation of the noise inputs, which are renormalised after every step. Differences:

* the noise inputs start from the generator's stored buffers (renormalised per image as after every
  step, instead of fresh Gaussian noise) and are returned, so the saved latents plus saved noise
  reproduce :attr:`ProjectionResult.images` exactly when rendered without autograd, as here (with autograd
  on a frozen network the modulated convolutions take their unfused form, equal up to float rounding);
* with a prior, the run starts from the prior's mode mapped to W (``start='auto'``), not from the mean w,
  which lies far outside the prior's typical set;
* ``space='w+'`` (the default) optimises one w per layer; ``'w'`` one w broadcast to all layers;
* an optional Gaussian prior term ``prior_weight * sum_l prior.penalty(w_l)`` (the squared Mahalanobis
  distance of a :class:`~latentkit.latent.prior.GaussianPrior`) keeps latents in
  well-behaved regions (or the heavier-tailed Student-t radius prior's, which fits W's radius better);
* N images are optimised together with per-image losses, statistics and random streams, so each
  image's result does not depend on the batch it is in;
* the state can be checkpointed every K steps and resumed bit for bit;
* for conditional generators the class can be searched: with ``classes=[...]`` every target is projected
  once per candidate class (as extra batch items) and the class with the lowest final loss is kept.

This module holds the public API (targets, the run, its result); the settings are
:mod:`latentkit.projection.settings`, the optimisation state and one step of it
:mod:`latentkit.projection.state`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F

from latentkit.checks import check_finite, check_image
from latentkit.errors import InputError, ShapeError
from latentkit.latent.prior_protocol import LatentPrior
from latentkit.nets.generator import Generator
from latentkit.projection.encoder import ImageEncoder
from latentkit.projection.settings import DEFAULT_CHECKPOINT_EVERY, DEFAULT_PRIOR_WEIGHT, LOSS_TERMS, ProjectionSettings
from latentkit.projection.settings import converged
from latentkit.projection.fingerprint import fingerprint, run_fingerprint
from latentkit.projection.state import ProjectionState
from latentkit.projection.steps import ProjectionInterrupted, run_steps

if TYPE_CHECKING:
    from latentkit.projection.lpips import PerceptualLoss

__all__ = ["ProjectionSettings", "ProjectionResult", "ProjectionInterrupted", "project", "prepare_targets", "DEFAULT_PRIOR_WEIGHT"]

logger = logging.getLogger(__name__)

TargetLike = torch.Tensor | str | os.PathLike

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
        steps_run: optimisation steps run (``num_steps`` unless the stopping rule ended the run sooner).
        stop_reason: ``'num_steps'`` or ``'converged'`` (``settings.stop_tol``'s rule).
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
    steps_run: int = 0
    stop_reason: str = "num_steps"
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
            ``[C, H, W]`` or ``[N, C, H, W]`` in the generator's output range (about [-1, 1]; raw
            ``G.synthesis`` output, which overshoots it, is taken as it is), or a sequence of these.

    Returns:
        float32 CPU tensor, centre-cropped and resized to ``G.img_resolution`` (logged); file targets are
        in [-1, 1], tensor targets keep their values.

    Raises:
        InputError: an unreadable file, an empty list, non-finite tensor values, or tensor values that look
            like uint8 data (0-255) rather than the generator's output range.
        ShapeError: a tensor that is not an image batch.
    """
    from latentkit.io import load_image

    items: list[TargetLike] = list(targets) if isinstance(targets, (list, tuple)) else [cast(TargetLike, targets)]
    if not items:
        raise InputError("targets is empty: pass at least one image path or tensor")
    out: list[torch.Tensor] = []
    for k, item in enumerate(items):
        name = f"targets[{k}]" if isinstance(item, torch.Tensor) else os.fspath(item)
        if isinstance(item, torch.Tensor):
            img = item.detach().to("cpu", torch.float32)
            if img.ndim == 3:
                img = img.unsqueeze(0)
            check_image(img, name)
            check_finite(img, name)
            _refuse_uint8_range(img, name)
        else:
            img = load_image(item, channels=3 if G.img_channels == 3 else 1)
        img = _fit_channels(img, G.img_channels)
        fitted = (_fit_resolution(one, G.img_resolution, name) for one in img.split(1))
        # Resampling a file's [-1, 1] pixels may overshoot slightly; a tensor's values are the caller's.
        out.extend(one.clamp(-1, 1) if not isinstance(item, torch.Tensor) else one for one in fitted)
    return torch.cat(out)


# Generators overshoot [-1, 1] (raw StyleGAN output reaches about +-5); 0-255 data is far beyond that.
_OVERSHOOT_LIMIT = 32.0


def _refuse_uint8_range(img: torch.Tensor, name: str) -> None:
    """Refuse values that look like 0-255 pixels instead of the generator's [-1, 1] (with overshoot)."""
    lo, hi = float(img.min()), float(img.max())
    if (lo >= 0 and hi > 2) or max(-lo, hi) > _OVERSHOOT_LIMIT:
        raise InputError(
            f"{name} holds values in [{lo:.3g}, {hi:.3g}], which looks like 0-255 pixel data; targets are in "
            "the generator's output range (about [-1, 1]): for uint8-range images use img / 127.5 - 1"
        )


# --------------------------------------------------------------------------------------------------
# The projector.


def project(
    G: Generator,
    targets: TargetLike | Sequence[TargetLike],
    *,
    settings: ProjectionSettings | None = None,
    prior: LatentPrior | None = None,
    c: torch.Tensor | None = None,
    classes: Sequence[int] | None = None,
    perceptual_net: PerceptualLoss | None = None,
    encoder: ImageEncoder | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    progress: bool = True,
) -> ProjectionResult:
    """Find latents (and noise) that make ``G`` reproduce each target image.

    Every option of the optimisation is a field of ``settings`` (one way to configure it; the CLI builds
    the same object); the keywords here say what to run it on and how to run it. Computation happens
    where ``G``'s parameters are.

    Args:
        G: the generator (its parameters stay untouched).
        targets: image path(s) and/or float tensors ``[N, C, H, W]`` in the generator's output range;
            resized and centre-cropped to ``G.img_resolution`` with a logged notice (see :func:`prepare_targets`).
        settings: the :class:`ProjectionSettings` (None: the defaults, NVIDIA's 1000 steps).
        prior: a fitted :class:`~latentkit.latent.prior.GaussianPrior`, the Student-t radius prior around one
            (:class:`~latentkit.latent.radius.StudentTRadius`, e.g. ``cached_prior(G, radius="student-t")``;
            its penalty is ``(nu + w_dim) log(1 + d2 / (nu - 2))`` instead of ``d2``, in either
            parametrization), a :class:`~latentkit.latent.pn_prior.PNPrior`, anything fitted that meets
            :class:`~latentkit.latent.prior_protocol.LatentPrior` (a differentiable ``penalty(w [..., w_dim])
            -> [...]``), or None for no prior term.
        c: class labels ``[N, c_dim]`` for conditional generators (exclusive with ``classes``).
        classes: search the class (conditional generators): each target is projected once per class in
            this list, as extra batch items (results do not depend on the batch), and the class with the
            lowest total loss at the last step is kept (:attr:`ProjectionResult.classes`, with all the
            candidates' losses in :attr:`ProjectionResult.class_losses`). Costs ``len(classes)`` times one
            projection; ``callback`` then sees ``[N * K, num_ws, w_dim]`` latents ordered image-major.
        perceptual_net: a ready :class:`~latentkit.projection.lpips.PerceptualLoss` to reuse (e.g. across
            batches); None builds LPIPS from ``settings.perceptual_weights`` when ``settings.perceptual`` is
            ``'vgg'``.
        encoder: an image encoder (:class:`~latentkit.projection.encoder.ImageEncoder`, e.g.
            :func:`~latentkit.projection.encoder_file.load_encoder`) whose prediction for each target is the
            start (``settings.start`` ``'encoder'`` or ``'auto'``); ``start='encoder'`` requires one.
        checkpoint: file to save the optimisation state to every ``checkpoint_every`` steps and when
            interrupted (Ctrl-C); if it exists and belongs to the same run (same targets, settings,
            generator, prior), the run resumes from it.
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
        ProjectionInterrupted: Ctrl-C (or SIGTERM turned into KeyboardInterrupt by the caller) during the
            run; the state was saved to ``checkpoint`` first when one is given.

    Example:
        >>> result = project(G, "face.png", prior=cached_prior(G), settings=ProjectionSettings(num_steps=300))  # doctest: +SKIP
        >>> result.ws.shape  # [1, G.num_ws, G.w_dim]
    """
    from latentkit.projection.lpips import PerceptualLoss, lpips_vgg

    s = settings if settings is not None else ProjectionSettings()
    if not isinstance(s, ProjectionSettings):
        raise InputError(f"settings must be a ProjectionSettings, got {type(s).__name__}")
    if perceptual_net is not None and not isinstance(perceptual_net, PerceptualLoss):
        raise InputError(f"perceptual_net must be a PerceptualLoss (lpips_vgg(...)), got {type(perceptual_net).__name__}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    net = perceptual_net if s.perceptual == "vgg" else None
    device = G.w_avg.device
    if prior is not None and not isinstance(prior, LatentPrior):
        raise InputError(
            "prior must be a fitted LatentPrior with penalty(w), w_dim and mean_ (a fitted GaussianPrior, whose "
            f"penalty is mahalanobis(w); a StudentTRadius; a PNPrior), got {type(prior).__name__}"
        )
    if s.start == "encoder" and encoder is None:
        raise InputError("start='encoder' needs encoder= (load_encoder(path, G)); train one with 'latentkit train-encoder'")
    if encoder is not None and s.start not in ("encoder", "auto"):
        raise InputError(f"encoder= is given but settings.start is {s.start!r}: use start='encoder' (or 'auto')")
    target_cpu = prepare_targets(G, targets)
    n = target_cpu.shape[0]
    if classes is not None:
        candidates = _candidate_classes(G, classes, c)
        return _project_class_search(G, target_cpu, candidates, settings=s, prior=prior, perceptual_net=net, encoder=encoder,
                                     checkpoint=checkpoint, checkpoint_every=checkpoint_every, callback=callback,
                                     progress=progress)
    labels = G.prepare_labels(c, n)
    if s.perceptual == "vgg" and net is None:
        net = lpips_vgg(s.perceptual_weights, device=device, max_resolution=s.max_perceptual_resolution)
    if net is not None:
        net = net.to(device)
    target = target_cpu.to(device)
    start_ws = _encode(G, encoder, target) if encoder is not None else None
    state = ProjectionState(G, target, labels, s, prior=prior, perceptual=net, start_ws=start_ws)

    start = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    weights = None if net is None else net.weights
    run_id = fingerprint(G, target_cpu, labels, s, prior, weights, start_ws)
    described = {**run_fingerprint(G, s, prior)[1], "perceptual": weights}
    if ckpt_path is not None and ckpt_path.is_file():
        start = state.restore(ckpt_path, run_id, described)
        logger.info("project: resuming from %s at step %d of %d", ckpt_path, start, s.num_steps)

    def report(step: int) -> None:
        if callback is not None:
            with torch.no_grad():
                callback(step, state.latents().expand(-1, G.num_ws, -1).clone())

    def settled() -> bool:  # reads the loss history back to the host: asked only while the rule is on
        return converged(s, [row[:, 0].tolist() for row in state.history[-2 * s.stop_window:]], len(state.history))

    done, stop_reason = run_steps(state, start=start, num_steps=s.num_steps, checkpoint=ckpt_path, run_id=run_id,
                                  checkpoint_every=checkpoint_every, progress=progress, desc="project",
                                  after_step=report if callback is not None else None,
                                  stop=settled if s.stop_tol > 0 else None,
                                  described=described)
    if stop_reason == "converged":
        logger.info("project: converged after %d of %d steps (stop_tol %g)", done, s.num_steps, s.stop_tol)

    with torch.no_grad():
        final_ws = state.latents().to(torch.float32).expand(-1, G.num_ws, -1).contiguous()
        final_noise = {k: v.detach().clone() for k, v in state.noises.items()}
        images = G.synthesis(final_ws, noise_mode="const", noise=final_noise or None)
    table = torch.stack(state.history, dim=2)  # [N, 5, num_steps]
    return ProjectionResult(
        ws=final_ws,
        images=images,
        targets=target_cpu,
        losses=table[:, 0].contiguous(),
        loss_terms={k: table[:, i + 1].contiguous() for i, k in enumerate(LOSS_TERMS)},
        noises=final_noise,
        settings=s,
        perceptual_weights=None if net is None else net.weights,
        steps_run=done,
        stop_reason=stop_reason,
        classes=_class_indices(labels),
    )


def _encode(G: Generator, encoder: ImageEncoder, target: torch.Tensor) -> torch.Tensor:
    """The encoder's prediction for the targets ``[N, C, H, W]``: ``ws [N, num_ws, w_dim]``, checked."""
    if (encoder.num_ws, encoder.w_dim) != (G.num_ws, G.w_dim):
        raise InputError(f"the encoder predicts [{encoder.num_ws}, {encoder.w_dim}] latents, the generator takes "
                         f"[{G.num_ws}, {G.w_dim}]: use an encoder trained for this network")
    with torch.no_grad():
        ws = torch.cat([encoder(part) for part in target.split(16)])
    G.check_ws(ws)
    check_finite(ws, "the encoder's prediction")
    return ws.to(torch.float32)

def _candidate_classes(G: Generator, classes: Sequence[int], c: torch.Tensor | None) -> tuple[int, ...]:
    """Validate the ``classes=`` of a class search: distinct ints in ``[0, c_dim)``."""
    from latentkit.latent.sampling import resolve_classes

    if c is not None:
        raise InputError("pass either c= (a given class) or classes= (search over classes), not both")
    if G.c_dim == 0:
        raise InputError("classes= needs a class-conditional generator; this one is unconditional (c_dim=0)")
    return tuple(resolve_classes(G, classes, name="classes", unique=True) or ())


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
    **run: Any,
) -> ProjectionResult:
    """Project every target once per candidate class and keep, per target, the lowest final loss."""
    from latentkit.latent.sampling import one_hot

    n, k = target_cpu.shape[0], len(candidates)
    logger.info("project: searching %d classes per image (%d projections)", k, n * k)
    labels = one_hot(list(candidates) * n, G.c_dim, device=G.w_avg.device)  # image-major: [N * K, c_dim]
    full = project(G, target_cpu.repeat_interleave(k, dim=0), c=labels, **run)
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
        steps_run=full.steps_run,
        stop_reason=full.stop_reason,
    )

