"""Projection in Z: find z that makes ``G(z)`` reproduce a target, for generators without a W space.

Made for wrapped ``G(z)`` modules (:func:`latentkit.wrap`), and usable on any generator (it then
optimises z through mapping and synthesis). It is the optimisation of
:func:`latentkit.projection.project.project` with z as the variable: the same
:class:`~latentkit.projection.settings.ProjectionSettings` losses (LPIPS-VGG and/or MSE), Adam with the same
learning-rate ramp and decaying latent noise (scaled by ``sqrt(z_dim)``, the RMS norm of a standard-normal z,
as NVIDIA scales by the RMS norm of w), and as the regulariser the standard-normal prior on z:
``prior_weight * |z|^2`` (the squared Mahalanobis distance under N(0, I)). The run starts at z = 0, the
prior's mode. Settings about W and noise inputs (``space``, ``start``, ``parametrization``,
``w_avg_samples``, ``optimize_noise``, ``regularize_noise_weight``) do not apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from latentkit.errors import InputError
from latentkit.nets.generator import Generator
from latentkit.projection.project import TargetLike, prepare_targets
from latentkit.projection.settings import ProjectionSettings, learning_rate_at, noise_scale_at

__all__ = ["ZProjectionResult", "project_z", "Z_LOSS_TERMS"]

Z_LOSS_TERMS = ("perceptual", "mse", "prior")


@dataclass
class ZProjectionResult:
    """What :func:`project_z` found.

    Attributes:
        z: ``[N, z_dim]`` final latents.
        images: ``[N, C, H, W]`` ``G(z)`` (not clamped).
        targets: ``[N, C, H, W]`` the targets as fitted, in [-1, 1].
        losses: ``[N, num_steps]`` total loss per image per step (CPU, float32).
        loss_terms: ``'perceptual'``, ``'mse'``, ``'prior'`` -> ``[N, num_steps]`` (unweighted).
        settings: the settings used.
        perceptual_weights: where the LPIPS weights came from (None without a perceptual term).
    """

    z: torch.Tensor
    images: torch.Tensor
    targets: torch.Tensor
    losses: torch.Tensor
    loss_terms: dict[str, torch.Tensor]
    settings: ProjectionSettings
    perceptual_weights: str | None = None


def project_z(
    G: Generator,
    targets: TargetLike | Sequence[TargetLike],
    *,
    settings: ProjectionSettings | None = None,
    perceptual_net: Any = None,
    progress: bool = True,
) -> ZProjectionResult:
    """Find z (one per target) so that ``G(z)`` reproduces each target image.

    Args:
        G: the generator, e.g. ``latentkit.wrap(module, ...)``; unconditional (its parameters stay untouched).
        targets: image path(s) and/or float tensors ``[N, C, H, W]`` in [-1, 1] (see
            :func:`~latentkit.projection.project.prepare_targets`).
        settings: :class:`ProjectionSettings` (None: defaults); see the module docstring for which apply.
        perceptual_net: a ready LPIPS :class:`~latentkit.projection.lpips.PerceptualLoss`, or None to build
            it from ``settings.perceptual_weights`` when ``settings.perceptual == 'vgg'``.
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`ZProjectionResult`. Each image's result depends only on its own target (not on the batch).

    Raises:
        InputError: invalid settings or a conditional generator.
        ShapeError: targets of the wrong shape.
        WeightsUnavailableError: no pretrained LPIPS weights (see ``perceptual_weights``).

    Example:
        >>> G = latentkit.wrap(my_dcgan, z_dim=100, img_resolution=64)  # doctest: +SKIP
        >>> result = project_z(G, "face.png", settings=ProjectionSettings(num_steps=300))  # doctest: +SKIP
        >>> result.z.shape  # [1, 100]
    """
    from tqdm.auto import tqdm

    from latentkit.projection.lpips import PerceptualLoss, lpips_vgg

    s = settings if settings is not None else ProjectionSettings()
    if not isinstance(s, ProjectionSettings):
        raise InputError(f"settings must be a ProjectionSettings, got {type(s).__name__}")
    if G.c_dim:
        raise InputError("project_z: class-conditional generators are not supported; use project() in W")
    if perceptual_net is not None and not isinstance(perceptual_net, PerceptualLoss):
        raise InputError(f"perceptual_net must be a PerceptualLoss (lpips_vgg(...)), got {type(perceptual_net).__name__}")
    device = G.w_avg.device
    net = perceptual_net if s.perceptual == "vgg" else None
    if s.perceptual == "vgg" and net is None:
        net = lpips_vgg(s.perceptual_weights, device=device, max_resolution=s.max_perceptual_resolution)
    if net is not None:
        net = net.to(device)
    target_cpu = prepare_targets(G, targets)
    target = target_cpu.to(device)
    n = target.shape[0]
    target_feats = None
    if net is not None:
        with torch.no_grad():
            target_feats = net.features(target)

    z_opt = torch.zeros(n, G.z_dim, device=device, requires_grad=True)  # the prior's mode
    optimizer = torch.optim.Adam([z_opt], lr=s.learning_rate, betas=s.betas)
    streams = [torch.Generator().manual_seed(int(s.seed)) for _ in range(n)]  # one per image: batch-free
    z_std = math.sqrt(G.z_dim)
    history = []
    zero = torch.zeros(n, device=device)
    with tqdm(total=s.num_steps, desc="project_z", disable=not progress, leave=False) as bar:
        for step in range(s.num_steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(s, step)
            noise = torch.stack([torch.randn(G.z_dim, generator=g) for g in streams]).to(device)
            images = G(z_opt + noise * (z_std * noise_scale_at(s, step)))
            terms = {
                "perceptual": net.distance_from_features(net.features(images), target_feats)
                if net is not None and target_feats is not None else zero,
                "mse": (images - target).square().mean(dim=(1, 2, 3)) if s.mse_weight > 0 else zero,
                "prior": z_opt.square().sum(dim=1),
            }
            loss = terms["perceptual"] + s.mse_weight * terms["mse"] + s.prior_weight * terms["prior"]  # [N]
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # a sum keeps each image's gradient its own
            optimizer.step()
            history.append(torch.stack([loss.detach()] + [terms[k].detach() for k in Z_LOSS_TERMS], 1).cpu())
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach().mean()):.4f}")
    with torch.no_grad():
        final_z = z_opt.detach().to(torch.float32).clone()
        images = G(final_z)
    table = torch.stack(history, dim=2) if history else torch.zeros(n, 1 + len(Z_LOSS_TERMS), 0)  # [N, 4, steps]
    return ZProjectionResult(
        z=final_z, images=images, targets=target_cpu, losses=table[:, 0].contiguous(),
        loss_terms={k: table[:, i + 1].contiguous() for i, k in enumerate(Z_LOSS_TERMS)}, settings=s,
        perceptual_weights=getattr(net, "weights", None),
    )
