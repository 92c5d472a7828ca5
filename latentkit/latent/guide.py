"""Latent guidance for class-conditional generators, done purely with vector arithmetic in W.

For a conditional mapping network ``M(z, c)``, the class-marginal latent of a given ``z`` is estimated as
the mean of ``M(z, c')`` over classes ``c'``, and the sample is moved along its class direction::

    w_marg = mean_{c' in classes} M(z, c')
    w_g    = w_marg + s * (M(z, c) - w_marg)

``s = 1`` is the ordinary conditional sample (returned bit for bit), ``s = 0`` the class-marginal latent,
``s > 1`` strengthens the class. Idea from "Exploring Guided Sampling of Conditional GANs" (ECCV 2024);
no classifier and no unconditional model are needed.

Truncation: every ``M(z, c')`` is taken with the generator's own truncation (``truncation_psi`` towards
its truncation centre, per class for StyleGAN-XL), so the result at ``s = 1`` equals
``G.mapping(z, c, truncation_psi=psi)`` and the formula stays linear in ``s``.

Cost: ``len(classes) + 1`` mapping-network evaluations per sample (all ``c_dim`` classes by default;
``num_classes_sample=K`` uses a random subset of ``K`` classes, the same for every sample, drawn from
``seed``). The synthesis network, which dominates the cost of a sample, runs once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from latentkit.checks import check_shape
from latentkit.errors import InputError
from latentkit.nets.generator import Generator
from latentkit.latent.sampling import one_hot

__all__ = ["guide", "guided_latents", "marginal_classes", "GuidanceResult"]

logger = logging.getLogger(__name__)

_ROWS_PER_CALL = 4096  # z rows per batched mapping call when averaging over classes


@dataclass(frozen=True)
class GuidanceResult:
    """Guided latents and what it took to compute them.

    Attributes:
        ws: guided latents ``[N, num_ws, w_dim]``.
        ws_conditional: the unguided conditional latents ``M(z, c)``, ``[N, num_ws, w_dim]``.
        ws_marginal: the class-marginal estimate, ``[N, num_ws, w_dim]``.
        classes: the classes averaged over for the marginal, ascending.
        scale: the guidance scale ``s``.
        mapping_calls_per_sample: mapping-network evaluations per sample (``len(classes) + 1``).
    """

    ws: torch.Tensor
    ws_conditional: torch.Tensor
    ws_marginal: torch.Tensor
    classes: tuple[int, ...]
    scale: float
    mapping_calls_per_sample: int


def marginal_classes(
    c_dim: int,
    *,
    classes: Sequence[int] | None = None,
    num_classes_sample: int | None = None,
    seed: int = 0,
) -> tuple[int, ...]:
    """The classes the marginal latent averages over.

    Args:
        c_dim: number of classes of the generator.
        classes: explicit classes (duplicates removed); excludes ``num_classes_sample``.
        num_classes_sample: draw this many distinct classes uniformly at random (without replacement)
            with ``torch.randperm(c_dim, generator=torch.Generator().manual_seed(seed))[:K]``.
        seed: seed of that draw.

    Returns:
        Sorted class indices; all of ``range(c_dim)`` when neither option is given.

    Raises:
        InputError: both options given, a class outside ``[0, c_dim)``, or ``K`` outside ``[1, c_dim]``.
    """
    if classes is not None and num_classes_sample is not None:
        raise InputError("pass either classes or num_classes_sample for the marginal, not both")
    if classes is not None:
        chosen = sorted({int(k) for k in classes})
        if not chosen:
            raise InputError("classes for the marginal is empty: give at least one class")
        bad = [k for k in chosen if not 0 <= k < c_dim]
        if bad:
            raise InputError(f"classes for the marginal must be in [0, {c_dim - 1}], got {bad}")
        return tuple(chosen)
    if num_classes_sample is not None:
        if not 1 <= int(num_classes_sample) <= c_dim:
            raise InputError(f"num_classes_sample must be in [1, {c_dim}] (the generator's c_dim), got {num_classes_sample}")
        draw = torch.randperm(c_dim, generator=torch.Generator().manual_seed(int(seed)))[: int(num_classes_sample)]
        return tuple(sorted(draw.tolist()))
    return tuple(range(c_dim))


def _labels(G: Generator, c: torch.Tensor | int | Sequence[int], n: int) -> torch.Tensor:
    if isinstance(c, torch.Tensor) and c.is_floating_point():
        check_shape(c, [n, G.c_dim], "c")
        return c
    idx = torch.as_tensor(c, dtype=torch.long).reshape(-1)
    if idx.numel() == 1:
        idx = idx.expand(n)
    if idx.numel() != n:
        raise InputError(f"c must be one class, {n} classes or labels [{n}, {G.c_dim}]; got {idx.numel()} classes")
    return one_hot(idx, G.c_dim)


@torch.no_grad()
def guided_latents(
    G: Generator,
    z: torch.Tensor,
    c: torch.Tensor | int | Sequence[int],
    *,
    scale: float,
    classes: Sequence[int] | None = None,
    num_classes_sample: int | None = None,
    seed: int = 0,
    truncation_psi: float = 1.0,
) -> GuidanceResult:
    """Latent guidance, with the unguided and marginal latents and the cost.

    Args:
        G: a class-conditional generator (``c_dim > 0``).
        z: latents ``[N, z_dim]``.
        c: labels ``[N, c_dim]`` (one-hot or soft), class indices ``[N]``, or one class for all.
        scale: guidance scale ``s`` (1: unguided, 0: marginal, > 1: stronger class).
        classes: classes to average over for the marginal (default: all ``c_dim``).
        num_classes_sample: average over this many random classes instead (for large ``c_dim``).
        seed: seed of the random class subset.
        truncation_psi: truncation applied to every mapping output (1: none).

    Returns:
        A :class:`GuidanceResult`; ``ws`` is ``[N, num_ws, w_dim]`` on the generator's device.

    Raises:
        InputError: unconditional generator, bad class options or a non-finite scale.
        ShapeError: ``z`` or ``c`` of the wrong shape.

    Example:
        >>> res = guided_latents(G, z_from_seed(0, G.z_dim), 207, scale=1.5)  # doctest: +SKIP
        >>> res.mapping_calls_per_sample  # 1000 ImageNet classes + 1
        1001
    """
    if G.c_dim == 0:
        raise InputError("guidance needs a class-conditional generator (c_dim > 0); this one is unconditional")
    if not math.isfinite(float(scale)):
        raise InputError(f"scale must be a finite number, got {scale}")
    n = check_shape(z, ["N", G.z_dim], "z")["N"]
    labels = _labels(G, c, n)
    chosen = marginal_classes(G.c_dim, classes=classes, num_classes_sample=num_classes_sample, seed=seed)

    ws_cond = G.mapping(z, labels, truncation_psi=truncation_psi)  # [N, num_ws, w_dim]
    total = torch.zeros(ws_cond.shape, dtype=torch.float64, device=ws_cond.device)
    step = max(1, _ROWS_PER_CALL // max(n, 1))
    for start in range(0, len(chosen), step):
        block = torch.as_tensor(chosen[start : start + step], dtype=torch.long)
        zz = z.repeat(len(block), 1)  # [B * N, z_dim], class-major
        cc = one_hot(block.repeat_interleave(n), G.c_dim)
        ws = G.mapping(zz, cc, truncation_psi=truncation_psi)  # [B * N, num_ws, w_dim]
        total += ws.reshape(len(block), n, *ws.shape[1:]).sum(0, dtype=torch.float64)
    ws_marg = (total / len(chosen)).to(ws_cond.dtype)
    # lerp is exact at both ends: s = 1 gives ws_cond bit for bit, s = 0 gives ws_marg.
    guided = torch.lerp(ws_marg, ws_cond, float(scale))
    calls = len(chosen) + 1
    logger.info("latent guidance s=%g over %d classes: %d mapping calls per sample", scale, len(chosen), calls)
    return GuidanceResult(guided, ws_cond, ws_marg, chosen, float(scale), calls)


def guide(
    G: Generator,
    z: torch.Tensor,
    c: torch.Tensor | int | Sequence[int],
    *,
    scale: float,
    classes: Sequence[int] | None = None,
    num_classes_sample: int | None = None,
    seed: int = 0,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """Guided W+ latents ``w_marg + s * (M(z, c) - w_marg)`` for a class-conditional generator.

    See :func:`guided_latents` for the arguments; this returns only its ``ws`` ``[N, num_ws, w_dim]``
    and logs the cost (mapping calls per sample) at INFO level.

    Example:
        >>> ws = guide(G, z, c, scale=2.0)  # doctest: +SKIP
        >>> img = G.synthesis(ws)  # [N, C, H, W]
    """
    return guided_latents(
        G, z, c, scale=scale, classes=classes, num_classes_sample=num_classes_sample, seed=seed,
        truncation_psi=truncation_psi,
    ).ws
