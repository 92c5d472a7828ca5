"""Editing latents along a direction, in standard deviations, on a range of layers.

:func:`edit` moves W+ latents ``ws [N, num_ws, w_dim]`` by ``amount`` standard deviations of a
:class:`~latentkit.latent.directions.Directions`, either in v (undo the last activation exactly, move,
re-apply it) or in W, on all layers or on a layer range as GANSpace's ``start..end``. Layers outside
the range are returned bit for bit, and ``amount = 0`` returns a copy of ``ws``.

:func:`edit_sweep` stacks several amounts (input latent major, amount minor), :func:`render_edits`
renders them (grids: :func:`latentkit.grid.save_labelled_grid`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentkit.checks import check_render, check_shape
from latentkit.errors import InputError
from latentkit.latent.directions import SPACES, Directions, check_single
from latentkit.latent.prior import v_to_w, w_to_v
from latentkit.latent.settings import DEFAULT_AMOUNTS

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator

__all__ = ["edit", "edit_sweep", "parse_layers", "parse_amounts", "render_edits", "ramp_amounts", "EditResult",
           "DEFAULT_AMOUNTS"]


LayerSpec = int | str | range | slice | Sequence[int] | None


def parse_layers(layers: LayerSpec, num_ws: int) -> list[int]:
    """Resolve a layer selection to sorted layer indices in ``[0, num_ws)``.

    Args:
        layers: None (all layers); an int; a ``range`` or ``slice`` (end exclusive, as Python's); a list of
            indices; or a string ``'0-7'`` (inclusive, as ``--seeds``), ``'4-'`` (4 to the last), ``'0,2,5'``
            or ``'0..8'`` (GANSpace's ``start..end``, end exclusive).
        num_ws: the generator's number of W+ rows.

    Raises:
        InputError: unparseable text, an empty selection or an index outside ``[0, num_ws)``.
    """
    if layers is None:
        return list(range(num_ws))
    if isinstance(layers, slice):
        picked = list(range(num_ws))[layers]
    elif isinstance(layers, int):
        picked = [layers]
    elif isinstance(layers, str):
        picked = []
        for part in layers.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:(-|\.\.)(\d*))?", part)
            if match is None:
                raise InputError(f"cannot parse layers {layers!r}: expected e.g. '0-7', '8-', '0..8' or '0,2,5'")
            lo, sep, hi = int(match.group(1)), match.group(2), match.group(3)
            if sep is None:
                picked.append(lo)
            elif sep == "-":
                picked.extend(range(lo, (int(hi) if hi else num_ws - 1) + 1))
            else:
                picked.extend(range(lo, int(hi) if hi else num_ws))
    else:
        picked = [int(i) for i in layers]
    bad = [i for i in picked if not 0 <= i < num_ws]
    if bad:
        raise InputError(f"layers {bad} are outside 0..{num_ws - 1} (this generator has num_ws = {num_ws})")
    if not picked:
        raise InputError(f"the layer selection {layers!r} is empty")
    return sorted(set(picked))


MAX_AMOUNT = 1000.0
"""Largest edit amount :func:`parse_amounts` accepts, in standard deviations."""
MAX_AMOUNTS = 1000
"""Most amounts :func:`parse_amounts` accepts."""


def parse_amounts(text: str) -> list[float]:
    """Parse ``'-3,-1.5,0,1.5,3'`` into floats (standard deviations).

    Raises:
        InputError: on anything that is not a comma-separated list of finite numbers.
    """
    try:
        amounts = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"cannot parse amounts {text!r}: expected numbers separated by commas, e.g. -3,-1.5,0,1.5,3") from None
    if not amounts or not all(np.isfinite(amounts)):
        raise InputError(f"amounts {text!r} must be one or more finite numbers")
    if len(amounts) > MAX_AMOUNTS or max(abs(a) for a in amounts) > MAX_AMOUNT:
        raise InputError(f"amounts {text!r:.60} must be at most {MAX_AMOUNTS:,} numbers within +-{MAX_AMOUNT:g} "
                         "standard deviations (latents beyond are not images)")
    return amounts


def ramp_amounts(amounts: Sequence[float], frames: int) -> list[float]:
    """``frames`` amounts from ``min(amounts)`` to ``max(amounts)`` and back (a looping video sweep)."""
    lo, hi = min(amounts), max(amounts)
    half = np.linspace(lo, hi, max(2, -(-int(frames) // 2)))
    return [float(a) for a in np.concatenate([half, half[-2:0:-1]])][: max(2, int(frames))]


def _step(direction: Directions, space: str | None, like: torch.Tensor) -> tuple[str, torch.Tensor]:
    check_single(direction)
    space = direction.space if space is None else space
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")
    if space != direction.space:
        raise InputError(f"this direction was found in {direction.space!r} space and its standard deviation is "
                         f"measured there: edit with space={direction.space!r}, or find a direction in {space!r}")
    if like.shape[-1] != direction.w_dim:
        raise InputError(f"the latents have w_dim {like.shape[-1]}, the direction {direction.w_dim}: "
                         "was it found for another generator?")
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return space, (direction.vectors[0] * direction.sigmas[0]).to(device=like.device, dtype=dtype)


def edit(
    ws: torch.Tensor,
    direction: Directions,
    amount: float,
    *,
    layers: LayerSpec = None,
    space: str | None = None,
) -> torch.Tensor:
    """Move latents ``amount`` standard deviations along ``direction`` on the chosen layers.

    In v: ``w' = v_to_w(w_to_v(w) + amount * sigma * d)``; in W: ``w' = w + amount * sigma * d``. For the
    prior's component ``k`` (:func:`~latentkit.latent.directions.prior_directions`) an edit of ``a`` in v
    changes ``prior.coefficients(w')[..., k]`` by exactly ``a`` on the edited layers and no other
    coefficient. Differentiable in ``ws``.

    Args:
        ws: W+ latents ``[N, num_ws, w_dim]``.
        direction: one direction (``dirs[k]``).
        amount: in standard deviations of latents along the direction.
        layers: which W+ rows to edit (see :func:`parse_layers`; None: all).
        space: ``'v'`` or ``'w'``; None (default) uses the direction's own space, which is the only one
            its standard deviation is defined in.

    Returns:
        ``[N, num_ws, w_dim]`` in the dtype and device of ``ws``; rows outside ``layers`` equal ``ws``.

    Raises:
        ShapeError: ``ws`` is not ``[N, num_ws, w_dim]``. InputError: a bad direction, space or layer range.

    Example:
        >>> dirs = prior_directions(prior, n_components=10)              # doctest: +SKIP
        >>> older = edit(ws, dirs[3], 2.0, layers="0-7")                  # doctest: +SKIP
    """
    check_shape(ws, ["N", "num_ws", "w_dim"], "ws")
    space, step = _step(direction, space, ws)
    rows = parse_layers(layers, ws.shape[1])
    out = ws.clone()
    if float(amount) == 0.0:
        return out
    picked = ws[:, rows]  # [N, L, w_dim]
    if space == "v":
        out[:, rows] = v_to_w(w_to_v(picked, direction.slope, direction.gain) + float(amount) * step,
                              direction.slope, direction.gain)
    else:
        out[:, rows] = picked + float(amount) * step
    return out


def edit_sweep(
    ws: torch.Tensor,
    direction: Directions,
    amounts: Sequence[float] = DEFAULT_AMOUNTS,
    *,
    layers: LayerSpec = None,
    space: str | None = None,
) -> torch.Tensor:
    """:func:`edit` for every amount: ``[N * len(amounts), num_ws, w_dim]``, input latent major, amount minor."""
    if len(amounts) == 0:
        raise InputError("amounts is empty: give at least one amount, e.g. [-3, 0, 3]")
    edited = torch.stack([edit(ws, direction, a, layers=layers, space=space) for a in amounts], 1)
    return edited.flatten(0, 1)  # [N * A, num_ws, w_dim]


@dataclass
class EditResult:
    """What :func:`render_edits` produced.

    Attributes:
        ws: ``[N * A, num_ws, w_dim]`` edited latents (input latent major, amount minor).
        images: ``[N * A, C, H, W]`` in [-1, 1], on the CPU, float32.
        amounts: the ``A`` amounts.
        layers: the edited layer indices.
    """

    ws: torch.Tensor
    images: torch.Tensor
    amounts: list[float]
    layers: list[int]


@torch.no_grad()
def render_edits(
    G: Generator,
    ws: torch.Tensor,
    direction: Directions,
    amounts: Sequence[float] = DEFAULT_AMOUNTS,
    *,
    layers: LayerSpec = None,
    space: str | None = None,
    noise_mode: str = "const",
    batch_size: int = 8,
    progress: bool = True,
) -> EditResult:
    """Edit ``ws [N, num_ws, w_dim]`` by every amount (:func:`edit_sweep`) and render the results with ``G``."""
    from tqdm.auto import tqdm

    G.check_ws(ws)
    check_render(int(ws.shape[0]) * len(list(amounts)), G, "the edit")
    edited = edit_sweep(ws.to(G.w_avg.device), direction, list(amounts), layers=layers, space=space)
    chunks = list(edited.split(max(1, int(batch_size))))
    images = [G.synthesis(chunk, noise_mode=noise_mode).float().cpu()
              for chunk in tqdm(chunks, desc="rendering edits", disable=not progress, leave=False)]
    return EditResult(edited, torch.cat(images), [float(a) for a in amounts], parse_layers(layers, G.num_ws))


