"""Interpolation between latents: lerp in W, lerp in the Gaussianized space v, slerp in Z.

In W+ every layer is interpolated on its own. ``space='v'`` maps both endpoints through the prior's
:meth:`~latentkit.latent.prior.GaussianPrior.transform` (undo the mapping network's last leaky ReLU), lerps
there and maps back with :meth:`~latentkit.latent.prior.GaussianPrior.inverse_transform`. Because that map is
linear on each half-axis, a coordinate whose sign is the same at both ends follows exactly the W lerp;
only coordinates that cross zero take the bent, prior-respecting path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


import torch

from latentkit.video import VIDEO_SUFFIXES, save_video  # re-exported: interpolation videos
from latentkit.checks import check_count, check_render
from latentkit.errors import InputError, ShapeError

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator
    from latentkit.latent.prior import GaussianPrior

__all__ = ["SPACES", "interpolate", "interpolation_weights", "pair_latents", "render_interpolation", "save_video", "slerp"]

MAX_STEPS = 100_000
"""Most points :func:`render_interpolation` renders per path."""

SPACES = ("w", "v", "z")


def interpolation_weights(steps: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``steps`` evenly spaced weights from 0 to 1 inclusive, ``[steps]``.

    Raises:
        InputError: ``steps < 2``.
    """
    if int(steps) != steps or steps < 2:
        raise InputError(f"steps must be an integer >= 2 (both endpoints are included), got {steps}")
    return torch.linspace(0, 1, int(steps), device=device, dtype=dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along the last axis: the direction moves on the great circle, the norm
    is interpolated linearly (StyleGAN's mapping normalises z, so only the direction matters to it).

    Args:
        a: ``[..., D]``.
        b: ``[..., D]`` (same shape).
        t: weights broadcastable to ``a[..., :1]``, e.g. ``[S, 1, 1]`` for a batch ``[N, D]``.

    Returns:
        ``[..., D]`` (broadcast with ``t``); ``t = 0`` gives ``a`` and ``t = 1`` gives ``b`` exactly.
    """
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = a / norm_a.clamp_min(torch.finfo(a.dtype).tiny)
    unit_b = b / norm_b.clamp_min(torch.finfo(b.dtype).tiny)
    cos = (unit_a * unit_b).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    small = sin.abs() < 1e-6
    safe_sin = torch.where(small, torch.ones_like(sin), sin)
    wa = torch.where(small, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    wb = torch.where(small, t, torch.sin(t * omega) / safe_sin)
    direction = wa * unit_a + wb * unit_b
    out = direction * torch.lerp(norm_a, norm_b, t)
    # Exact endpoints (round-off in the sines would move them by a few ulp).
    out = torch.where(t == 0, a.expand_as(out), out)
    return torch.where(t == 1, b.expand_as(out), out)


def interpolate(
    a: torch.Tensor,
    b: torch.Tensor,
    steps: int,
    *,
    space: str = "w",
    prior: GaussianPrior | None = None,
) -> torch.Tensor:
    """Interpolate from ``a`` to ``b`` in ``steps`` evenly spaced points, both endpoints included.

    Args:
        a: start latents: W+ ``[N, num_ws, w_dim]`` or W ``[N, w_dim]`` for ``space`` 'w'/'v';
            Z ``[N, z_dim]`` for 'z'.
        b: end latents, same shape as ``a``.
        steps: number of points (>= 2).
        space: ``'w'`` (linear, per layer), ``'v'`` (linear in the prior's Gaussianized space, per layer;
            needs ``prior``) or ``'z'`` (spherical).
        prior: a fitted :class:`~latentkit.latent.prior.GaussianPrior` of the same generator (``space='v'``).

    Returns:
        ``[steps, *a.shape]``: point ``s`` of pair ``n`` is ``out[s, n]``; ``out[0]`` equals ``a`` and
        ``out[-1]`` equals ``b`` exactly.

    Raises:
        InputError: unknown ``space``, ``steps < 2``, or ``space='v'`` without a prior.
        ShapeError: ``a`` and ``b`` differ in shape or have the wrong rank.

    Example:
        >>> path = interpolate(ws_a, ws_b, 8, space="v", prior=prior)  # [8, N, num_ws, w_dim]  # doctest: +SKIP
        >>> frames = G.synthesis(path.flatten(0, 1))                   # doctest: +SKIP
    """
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ShapeError(f"{name} must be a float tensor, got {type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    if a.shape != b.shape:
        raise ShapeError(f"a and b must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    wanted = (2,) if space == "z" else (2, 3)
    if a.ndim not in wanted:
        expected = "[N, z_dim]" if space == "z" else "[N, num_ws, w_dim] or [N, w_dim]"
        raise ShapeError(f"a and b must be {expected} for space={space!r}, got {list(a.shape)}")
    t = interpolation_weights(steps, device=a.device, dtype=a.dtype).reshape(-1, *([1] * a.ndim))  # [S, 1, ...]
    b = b.to(a.device)

    if space == "z":
        return slerp(a.unsqueeze(0), b.unsqueeze(0), t)
    if space == "w":
        out = torch.lerp(a.unsqueeze(0), b.unsqueeze(0), t)
    else:
        if prior is None:
            raise InputError("space='v' interpolates through a Gaussian prior: pass prior= (GaussianPrior.load or --prior)")
        va, vb = prior.transform(a), prior.transform(b)
        out = prior.inverse_transform(torch.lerp(va.unsqueeze(0), vb.unsqueeze(0), t))
    # torch.lerp(x, y, 1) computes x + (y - x), which can differ from y by an ulp; pin both ends.
    out[0] = a
    out[-1] = b
    return out


def pair_latents(
    a: torch.Tensor, b: torch.Tensor, *, row_a: int | None = None, row_b: int | None = None, space: str = "w"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs to interpolate between, from two files' latents (:func:`latentkit.io.load_latents`).

    Args:
        a, b: ``[Na, L, D]`` and ``[Nb, L, D]`` (W+ ``L = num_ws``, W ``L = 1``; Z files ``[N, 1, z_dim]``).
        row_a, row_b: keep only this latent of ``a`` / ``b`` (0-based); None keeps all.
        space: ``'z'`` drops the layer axis (``[N, z_dim]``); ``'w'``/``'v'`` keep it.

    Returns:
        ``(a, b)`` with as many latents each: equal counts as given, or one latent paired with each of the
        other side's.

    Raises:
        InputError: a row out of range, or counts that differ with neither being 1.
    """
    for name, latents, row in (("A", a, row_a), ("B", b, row_b)):
        if row is not None and not 0 <= row < latents.shape[0]:
            raise InputError(f"--row-{name.lower()} {row} (row_{name.lower()}) is out of range: {name} holds "
                             f"{latents.shape[0]} latents")
    a = a if row_a is None else a[row_a : row_a + 1]
    b = b if row_b is None else b[row_b : row_b + 1]
    if a.shape[0] != b.shape[0] and 1 in (a.shape[0], b.shape[0]):  # one latent against each of the others
        n = max(a.shape[0], b.shape[0])
        a, b = a.expand(n, *a.shape[1:]), b.expand(n, *b.shape[1:])
    if a.shape[0] != b.shape[0]:
        raise InputError(f"A holds {a.shape[0]} latents and B {b.shape[0]}: pick one of each with --row-a K --row-b K "
                         "(row_a=, row_b=)")
    return (a[:, 0], b[:, 0]) if space == "z" else (a, b)  # z: [N, z_dim]


def render_interpolation(
    G: Generator,
    a: torch.Tensor,
    b: torch.Tensor,
    steps: int,
    *,
    space: str = "w",
    prior: GaussianPrior | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> torch.Tensor:
    """Interpolate and render: the images along each path.

    Args:
        G: the generator.
        a, b: W+ ``[N, num_ws, w_dim]`` (a W ``[N, w_dim]`` or ``[N, 1, w_dim]`` is broadcast to every
            layer) for 'w'/'v'; Z ``[N, z_dim]`` for 'z' (mapped without truncation; class-conditional
            generators need W latents).
        steps, space, prior: as :func:`interpolate`.
        noise_mode: as ``G.synthesis``.
        batch_size: images rendered per call (memory only).

    Returns:
        Images ``[steps, N, C, H, W]`` in about [-1, 1], on the generator's device.

    Raises:
        ShapeError: latents that do not fit ``G``.
        InputError: as :func:`interpolate`; Z paths on a conditional generator.
    """
    steps = check_count(steps, "steps", lo=2, limit=MAX_STEPS)
    check_render(steps * (int(a.shape[0]) if a.ndim >= 2 else 1), G, "the interpolation")
    device = G.w_avg.device
    a, b = a.to(device), b.to(device)
    if space == "z":
        if G.c_dim:
            raise InputError("space='z' on a class-conditional generator: interpolate W latents instead (space 'w' or 'v')")
        path = interpolate(a, b, steps, space="z")  # [S, N, z_dim]
        flat = path.flatten(0, 1)
        if G.num_ws == 0:  # a wrapped G(z) module (latentkit.wrap): no W space, z goes straight in
            with torch.no_grad():
                images = torch.cat([G(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)])
            return images.reshape(int(steps), -1, *images.shape[1:])
        with torch.no_grad():
            ws = torch.cat([G.mapping(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)])
    else:
        if a.ndim == 2:
            a, b = a.unsqueeze(1), b.unsqueeze(1)
        if a.ndim == 3 and a.shape[1] == 1:
            a, b = a.expand(-1, G.num_ws, -1), b.expand(-1, G.num_ws, -1)
        G.check_ws(a)
        ws = interpolate(a, b, steps, space=space, prior=prior).flatten(0, 1)  # [S * N, num_ws, w_dim]
    with torch.no_grad():
        images = torch.cat([G.synthesis(ws[i : i + batch_size], noise_mode=noise_mode) for i in range(0, len(ws), batch_size)])
    return images.reshape(int(steps), -1, *images.shape[1:])
