"""3x3 convolutions (stride 1, padding 1) by Winograd's minimal filtering F(4x4, 3x3), for the CPU.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): every 4x4 block of outputs is
``A^T [(G g G^T) . (B^T d B)] A`` for the 6x6 input tile ``d`` around it, so a layer of ``C -> K``
channels costs 36 products per tile and channel pair instead of 144 (4x fewer), as 36 independent
matrix products ``[tiles, C] @ [C, K]``. The transforms here are Lavin's, with interpolation points
0, 1, -1, 2, -2 and infinity; the filter transform is computed in float64 and cast once.

Where it pays: on a CPU the tile transforms are memory passes that a direct convolution does not make, so
it wins on deep layers (C, K >= 256: 1.7-2.1x forward + backward on an AVX2 EPYC, 2 threads) and loses on
wide shallow ones (64 channels at 256 px: 0.63x); :class:`~latentkit.projection.lpips.PerceptualLoss`
uses it only for layers with 256 or more output channels. Its round-off is larger than a direct
convolution's (3-7x in float32 on single layers; the interpolation points 2 and -2 scale the transforms by
up to 8): fine for a loss, so it is used in float32 on the CPU and nowhere it would change a reference
output.
Gradients flow to the input (and bias): the transforms are linear and the filter a constant; only the
tile extraction has its own backward.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["winograd_filter", "winograd_conv3x3"]

_TILE = 4  # outputs per tile side
_ALPHA = 6  # inputs per tile side (_TILE + 3 - 1)

# Lavin & Gray's F(4x4, 3x3): input transform B^T [6, 6], filter transform G [6, 3], output transform A^T [4, 6].
_BT = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_G = (
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)
_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)


@functools.lru_cache(maxsize=8)
def _tile_transforms(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B^T (x) B^T [36, 36], A^T (x) A^T [16, 36])``: (B^T d B)[a, b] = sum_ij BT[a, i] BT[b, j] d[i, j]."""
    bt = torch.tensor(_BT, dtype=torch.float64, device=device)
    at = torch.tensor(_AT, dtype=torch.float64, device=device)
    return torch.kron(bt, bt).to(dtype), torch.kron(at, at).to(dtype)


def winograd_filter(weight: torch.Tensor) -> torch.Tensor:
    """The transformed filter ``G g G^T`` of every channel pair, laid out for :func:`winograd_conv3x3`.

    Args:
        weight: ``[K, C, 3, 3]`` (``torch.nn.Conv2d`` layout).

    Returns:
        ``[36, C, K]`` in the dtype and device of ``weight`` (computed in float64).
    """
    if weight.ndim != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"winograd_filter needs a [K, C, 3, 3] weight, got {list(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,kcij,bj->abck", g, weight.detach().to(torch.float64), g)  # [6, 6, C, K]
    return u.reshape(_ALPHA * _ALPHA, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


class _Tiles(torch.autograd.Function):
    """The overlapping 6x6 input tiles (stride 4) of a padded ``[N, Hp, Wp, C]`` map as ``[36, P * C]``.

    Its backward adds the tiles' gradients back in two passes per axis (the 4 rows a tile owns, then the
    2 it shares with the next tile) instead of the generic ``unfold`` backward, which took a fifth of a
    deep layer's forward + backward on the CPU (LPIPS forward + backward 1.20x -> 1.37x direct with it).
    """

    @staticmethod
    def forward(ctx, xp: torch.Tensor) -> torch.Tensor:
        n, hp, wp, c = xp.shape
        th, tw = (hp - 2) // _TILE, (wp - 2) // _TILE
        ctx.shape = (n, th, tw, c)
        tiles = xp.unfold(1, _ALPHA, _TILE).unfold(2, _ALPHA, _TILE)  # [N, th, tw, C, 6, 6] (a view)
        return tiles.permute(4, 5, 0, 1, 2, 3).reshape(_ALPHA * _ALPHA, n * th * tw * c)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, th, tw, c = ctx.shape
        g = grad.view(_ALPHA, _ALPHA, n, th, tw, c).permute(2, 3, 0, 4, 1, 5)  # [N, th, 6 (i), tw, 6 (j), C]
        cols = g.new_zeros(n, th, _ALPHA, tw + 1, _TILE, c)  # column 4 * u + j' of the padded map
        cols[:, :, :, :tw] = g[..., :_TILE, :]
        cols[:, :, :, 1:, : _ALPHA - _TILE] += g[..., _TILE:, :]
        cols = cols.view(n, th, _ALPHA, (tw + 1) * _TILE, c)[:, :, :, : tw * _TILE + 2]  # [N, th, 6, Wp, C]
        rows = g.new_zeros(n, th + 1, _TILE, tw * _TILE + 2, c)  # row 4 * t + i' of the padded map
        rows[:, :th] = cols[:, :, :_TILE]
        rows[:, 1:, : _ALPHA - _TILE] += cols[:, :, _TILE:]
        return rows.view(n, (th + 1) * _TILE, tw * _TILE + 2, c)[:, : th * _TILE + 2]  # [N, Hp, Wp, C]


def winograd_conv3x3(x: torch.Tensor, filt: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` computed with F(4x4, 3x3) tiles.

    Args:
        x: ``[N, C, H, W]``; channels-last memory is read without a copy.
        filt: ``[36, C, K]`` from :func:`winograd_filter` (same dtype and device as ``x``).
        bias: ``[K]`` or None.

    Returns:
        ``[N, K, H, W]`` in channels-last memory format; differentiable with respect to ``x`` (and ``bias``).
    """
    n, c, h, w = x.shape
    if filt.ndim != 3 or filt.shape[0] != _ALPHA * _ALPHA or filt.shape[1] != c:
        raise ValueError(f"winograd_conv3x3: filter {list(filt.shape)} does not fit an input of {c} channels")
    k = filt.shape[2]
    th, tw = -(-h // _TILE), -(-w // _TILE)  # tiles per column and row
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + tw * _TILE - w, 1, 1 + th * _TILE - h))  # [N, Hp, Wp, C]
    tiles = _Tiles.apply(xp)  # [36, P * C], P = N * th * tw
    b_in, a_out = _tile_transforms(x.dtype, x.device)  # [36, 36], [16, 36]
    v = (b_in @ tiles).view(_ALPHA * _ALPHA, n * th * tw, c)  # [36, P, C]
    m = torch.bmm(v, filt)  # [36, P, K]
    y = (a_out @ m.view(_ALPHA * _ALPHA, -1)).view(_TILE, _TILE, n, th, tw, k)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, th * _TILE, tw * _TILE, k)[:, :h, :w]  # [N, H, W, K]
    if bias is not None:
        y = y + bias
    return y.permute(0, 3, 1, 2)  # [N, K, H, W], channels-last memory
