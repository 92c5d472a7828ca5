"""Depthwise-separable modulated convolution (MobileStyleGAN's layer) with style, bias, noise and activation fused.

One MobileStyleGAN layer, as its OpenVINO IR spells it, is six full-resolution passes::

    x * s  ->  depthwise kxk  ->  1x1 conv  ->  + noise  ->  + bias  ->  leaky_relu

The style ``s [N, C, 1, 1]`` scales input channels, and the depthwise convolution acts on each channel
alone, so ``depthwise(x * s) == depthwise(x) * s`` and the style folds into each sample's 1x1 weights:
``W_n = W * s_n`` (``[C_out, C]``, a few thousand numbers instead of a ``[N, C, H, W]`` multiply). The 1x1
convolution then is one (batched) matrix product over channels-last pixels, and noise, bias and the
activation run in place on its output. Mathematically the same function; values differ from the
op-by-op order only by float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["separable_modconv"]


def separable_modconv(
    x: torch.Tensor,
    styles: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    depthwise: torch.Tensor | None = None,
    padding: tuple[int, int] = (0, 0),
    noise: torch.Tensor | None = None,
    slope: float | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``leaky_relu(conv1x1(depthwise(x * styles), weight) + noise + bias, slope)`` in few passes.

    Args:
        x: ``[N, C, H, W]`` (any memory format; channels-last is fastest).
        styles: broadcastable to ``[N, C, 1, 1]`` (e.g. ``[N, C, 1, 1]`` or ``[1, C, 1, 1]``).
        weight: 1x1 weights ``[C_out, C, 1, 1]`` (or ``[C_out, C]``).
        bias: broadcastable to ``[1, C_out, 1, 1]``, or None.
        depthwise: optional depthwise kernel ``[C, 1, kh, kw]`` applied (stride 1) before the 1x1 conv.
        padding: symmetric zero padding of the depthwise convolution ``(ph, pw)``.
        noise: optional, broadcastable to ``[N, 1, H', W']`` (a 0-dim tensor too), added before the bias.
        slope: leaky ReLU slope, or None for no activation.
        out: optional buffer ``[N, H', W', C_out]`` to write the result into (no autograd), so that repeated
            calls reuse memory instead of faulting in fresh pages.

    Returns:
        ``[N, C_out, H', W']``, channels-last in memory, in the dtype of ``x``.
    """
    if depthwise is not None:
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, depthwise, padding=padding, groups=x.shape[1])
    if torch.is_autocast_enabled(x.device.type):  # the products below are not autocast (in place, out=)
        x = x.to(torch.get_autocast_dtype(x.device.type))
    n, c, h, w = x.shape
    c_out = weight.shape[0]
    wt = weight.reshape(c_out, c).t().to(x.dtype)  # [C, C_out]
    s = styles.reshape(-1, c, 1).to(x.dtype)  # [Ns, C, 1]: scales rows of wt
    pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # [N, HW, C]: a view when x is channels-last
    n = max(n, s.shape[0])
    shape = (n, h, w, c_out)
    nz = None if noise is None else (noise.permute(0, 2, 3, 1) if noise.ndim == 4 else noise).to(x.dtype)
    b = None if bias is None else bias.reshape(c_out).to(x.dtype)
    if nz is not None and nz.ndim < 4:  # a scalar (e.g. noise_mode='none' feeds 0): fold it into the bias
        b, nz = (nz if b is None else b + nz).expand(c_out), None
    same = s.shape[0] == 1 and n == pixels.shape[0]  # one weight matrix for all samples
    if torch.is_grad_enabled():
        if not weight.requires_grad and (slope is None or slope > 0):
            return _StyleGradient.apply(x, s, wt, b, nz, slope)
        # Out of place: an in-place update of a view would make autograd copy the whole base tensor.
        if same:
            flat = pixels.reshape(n * h * w, c)
            acc = (flat @ (wt * s[0]) if b is None else torch.addmm(b, flat, wt * s[0])).view(shape)
        else:
            wn = (wt.unsqueeze(0) * s).expand(n, c, c_out)
            acc = torch.bmm(pixels.expand(n, h * w, c), wn) if b is None else torch.baddbmm(b, pixels.expand(n, h * w, c), wn)
            acc = acc.view(shape)
        if nz is not None:
            acc = acc + nz
        out = acc if slope is None else F.leaky_relu(acc, slope)
        return out.permute(0, 3, 1, 2)
    return _forward(pixels, s, wt, b, nz, slope, shape, out)


def _forward(
    pixels: torch.Tensor, s: torch.Tensor, wt: torch.Tensor, b: torch.Tensor | None, nz: torch.Tensor | None,
    slope: float | None, shape: tuple[int, int, int, int], out: torch.Tensor | None,
) -> torch.Tensor:
    """The layer without autograd: ``pixels [N, HW, C]`` -> ``[N, C_out, H, W]`` (channels-last memory)."""
    n, h, w, c_out = shape
    c = pixels.shape[-1]
    same = s.shape[0] == 1 and n == pixels.shape[0]
    # Without autograd: start from noise + bias (one pass writing [N, H, W, C_out]) and let the matrix
    # product accumulate into it (beta = 1): two fewer full-resolution passes than conv, + noise, + bias.
    fits = out is not None and out.dtype == pixels.dtype and tuple(out.shape) == shape
    acc = out if fits else torch.empty(shape, dtype=pixels.dtype, device=pixels.device)
    if nz is not None and b is not None:
        torch.add(nz.expand(shape[:3] + (1,)), b, out=acc)
    elif nz is None and b is None:
        acc.zero_()
    else:
        acc.copy_((b if nz is None else nz).expand(shape))
    acc3 = acc.view(n, h * w, c_out)
    if same:
        acc3.view(n * h * w, c_out).addmm_(pixels.reshape(n * h * w, c), wt * s[0])
    else:
        acc3.baddbmm_(pixels.expand(n, h * w, c), (wt.unsqueeze(0) * s).expand(n, c, c_out))
    out = acc if slope is None else F.leaky_relu_(acc, slope) if slope > 0 else F.leaky_relu(acc, slope)
    return out.permute(0, 3, 1, 2)  # [N, C_out, H, W], channels-last memory


class _StyleGradient(torch.autograd.Function):
    """The layer with a backward pass that never forms the per-sample weight gradient.

    For ``acc = (y * s) @ W + noise + bias`` and ``G = dL/dacc @ W^T`` (one matrix product shared by all
    samples): ``dL/dy = G * s`` and ``dL/ds = sum over pixels of G * y``, an elementwise product and a
    reduction where autograd's route (``dL/d(W * s_n) = pixels^T @ dL/dacc`` per sample, then a reduction
    to ``s``) costs a second matrix product as large as the forward's. ``W`` (the network's constant
    weights) gets no gradient; the bias and the noise get theirs (sums of ``dL/dacc``).
    """

    @staticmethod
    def forward(ctx, y, s, wt, b, nz, slope):  # noqa: D102 - see the class docstring
        n, c, h, w = y.shape
        shape = (max(n, s.shape[0]), h, w, wt.shape[1])
        pixels = y.permute(0, 2, 3, 1).reshape(n, h * w, c)
        out = _forward(pixels, s, wt, b, nz, slope, shape, None)
        ctx.slope, ctx.shapes = slope, (s.shape, None if b is None else b.shape, None if nz is None else nz.shape)
        ctx.save_for_backward(pixels, s, wt, out if slope is not None else None)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 - see the class docstring
        pixels, s, wt, out = ctx.saved_tensors
        s_shape, b_shape, nz_shape = ctx.shapes
        n, c_out, h, w = grad.shape
        if grad.device.type == "cpu":  # the layout of out and of the GEMM below: one transpose, then fast passes
            grad = grad.contiguous(memory_format=torch.channels_last)
        if out is not None:  # d leaky_relu from its output (same sign as its input for a positive slope)
            grad = torch.ops.aten.leaky_relu_backward(grad, out, ctx.slope, True)
        g = grad.permute(0, 2, 3, 1).reshape(n, h * w, c_out)  # [N, HW, C_out], a view when channels-last
        need_y, need_s, _, need_b, need_nz, _ = ctx.needs_input_grad
        grad_y = grad_s = grad_b = grad_nz = None
        c = wt.shape[0]
        if need_s and 4 * c_out > c:
            big = (g.reshape(n * h * w, c_out) @ wt.t()).view(n, h * w, c)  # [N, HW, C]
            grad_s = (big * pixels).sum(1).unsqueeze(-1)  # [N, C, 1]
            if need_y:
                grad_y = big.mul_(s.transpose(1, 2))  # big is not needed again
        else:
            # Few outputs (a to-image layer: 64 -> 12): dL/ds_c = sum_o W[c, o] * (pixels^T @ G)[c, o] is a
            # product over the narrow gradient instead of a full [N, HW, C] one (1.5x this backward at 1 thread).
            if need_s:
                grad_s = (torch.matmul(pixels.transpose(1, 2), g) * wt).sum(-1, keepdim=True)  # [N, C, 1]
            if need_y:
                wn = (wt * s).transpose(1, 2)  # [Ns, C_out, C]: the forward's per-sample weights
                grad_y = (g.reshape(n * h * w, c_out) @ wn[0]).view(n, h * w, c) if wn.shape[0] == 1 else g @ wn
        if grad_s is not None and s_shape[0] == 1 and n > 1:
            grad_s = grad_s.sum(0, keepdim=True)
        if grad_y is not None:
            grad_y = grad_y.view(n, h, w, c)
            grad_y = grad_y.sum(0, keepdim=True) if pixels.shape[0] == 1 and n > 1 else grad_y
            grad_y = grad_y.permute(0, 3, 1, 2)  # [N, C, H, W], channels-last memory
        if need_b:
            grad_b = g.sum((0, 1)).reshape(b_shape)
        if need_nz:
            grad_nz = g.sum(-1).view(n, h, w, 1)
            if nz_shape[0] == 1 and n > 1:
                grad_nz = grad_nz.sum(0, keepdim=True)
            grad_nz = grad_nz.reshape(nz_shape)
        return grad_y, grad_s, None, grad_b, grad_nz, None
