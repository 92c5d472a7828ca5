"""Find fusable layer patterns in an OpenVINO IR graph (plain graph matching; nothing is executed).

:func:`find_separable_modconvs` finds MobileStyleGAN's depthwise-separable modulated layers::

    Multiply(x [N, C, H, W], s [N, C, 1, 1]) -> [GroupConvolution depthwise kxk] -> Convolution 1x1
        -> [Add noise const [1, 1, H, W]] -> [Add bias const [1, C_out, 1, 1]] -> [PReLU scalar slope]

(bracketed layers optional, the two Adds in either order), where every intermediate value has exactly one
consumer, so that :class:`~latentkit.nets.ir.program.IRProgram` can run the chain as one
:func:`~latentkit.nets.ops.separable_modconv.separable_modconv` call (:func:`run_separable_modconv`).

:func:`find_subband_upsamples` finds the inverse wavelet steps between them::

    Add(up(Add(up(p0), up(p1))), up(Add(up(p2), up(p3))))

(``up``: a depthwise transposed convolution with disjoint windows), run as one
:func:`~latentkit.nets.ops.subband_upsample.subband_upsample` (:func:`run_subband_upsample`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from latentkit.errors import CheckpointError
from latentkit.nets.ir.ops import parse_attrs
from latentkit.nets.ops.separable_modconv import separable_modconv
from latentkit.nets.ops.subband_upsample import compose_kernels, subband_upsample

if TYPE_CHECKING:
    from latentkit.nets.ir.graph import IRGraph, IRLayer

__all__ = [
    "SeparableModConvMatch", "SubbandUpsampleMatch", "find_separable_modconvs", "find_subband_upsamples",
    "run_separable_modconv", "run_subband_upsample",
]

Key = tuple[int, int]  # (layer id, input index): what IRProgram.forward's ``replace`` addresses
Ref = tuple[int, int]  # (layer id, output port id)


@dataclass(frozen=True)
class SeparableModConvMatch:
    """One matched chain.

    Attributes:
        layers: ids of all layers the chain replaces, first to last.
        inputs: slot name -> (replace key, producer ref); slots ``x``, ``styles``, ``weight`` and, when
            present, ``depthwise``, ``noise``, ``bias``.
        padding: the depthwise convolution's symmetric padding ``(ph, pw)``.
        slope: the PReLU slope, or None without activation.
    """

    layers: tuple[int, ...]
    inputs: dict[str, tuple[Key, Ref]]
    padding: tuple[int, int]
    slope: float | None


def _ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    text = (text or "").replace(" ", "")
    return tuple(int(t) for t in text.split(",")) if text else default


def _plain(layer: IRLayer) -> bool:
    """Stride 1, dilation 1 and explicit symmetric padding."""
    a = layer.attrs
    try:
        pads = _ints(a.get("pads_begin"), (0, 0)), _ints(a.get("pads_end"), (0, 0))
        _ints(a.get("strides"), (1, 1)), _ints(a.get("dilations"), (1, 1))
    except ValueError:  # malformed: not fused; the op-by-op path reports it, naming the layer
        return False
    return (
        _ints(a.get("strides"), (1, 1)) == (1, 1) and _ints(a.get("dilations"), (1, 1)) == (1, 1)
        and pads[0] == pads[1] and a.get("auto_pad", "explicit") in ("explicit", "notset")
    )


def _uses(graph: IRGraph) -> Counter:
    """How many edges leave each ``(layer, output port)``."""
    return Counter((e.from_layer, e.from_port) for e in graph.edges)


def _inputs_of(graph: IRGraph, lid: int) -> list[Ref]:
    """The producers of every input of ``lid``, or [] if one is unconnected (then nothing is fused there;
    the op-by-op path reports the layer)."""
    try:
        return graph.producers(lid)
    except CheckpointError:
        return []


def _single_use(graph: IRGraph, uses: Counter, lid: int) -> bool:
    """``lid`` has one output, read by exactly one edge."""
    outs = graph.layers[lid].outputs
    return len(outs) == 1 and uses[(lid, outs[0].id)] == 1


def find_separable_modconvs(graph: IRGraph) -> list[SeparableModConvMatch]:
    """All non-overlapping matches of the separable modulated layer pattern, in graph order."""
    layers = graph.layers
    uses = _uses(graph)

    def inputs_of(lid: int) -> list[Ref]:
        return _inputs_of(graph, lid)

    def const(ref: Ref):
        layer = layers[ref[0]]
        return layer.value if layer.type == "Const" and layer.value is not None else None

    def single_use(lid: int) -> bool:
        return _single_use(graph, uses, lid)

    matches = []
    for conv in graph.topological_order():
        if conv.type != "Convolution" or not _plain(conv):
            continue
        refs = inputs_of(conv.id)
        weight = const(refs[1]) if len(refs) == 2 else None
        if weight is None or weight.ndim != 4 or weight.shape[2:] != (1, 1) or _ints(conv.attrs.get("pads_begin"), (0, 0)) != (0, 0):
            continue
        c_out, c = int(weight.shape[0]), int(weight.shape[1])
        chain, slots = [conv.id], {"weight": ((conv.id, 1), refs[1])}
        padding = (0, 0)
        head = layers[refs[0][0]]
        if head.type == "GroupConvolution" and single_use(head.id) and _plain(head):
            dw_refs = inputs_of(head.id)
            dw = const(dw_refs[1]) if len(dw_refs) == 2 else None
            if dw is None or dw.ndim != 5 or tuple(dw.shape[:3]) != (c, 1, 1):
                continue
            padding = _ints(head.attrs.get("pads_begin"), (0, 0))
            slots["depthwise"] = ((head.id, 1), dw_refs[1])
            chain.insert(0, head.id)
            head = layers[dw_refs[0][0]]
        if head.type != "Multiply" or not single_use(head.id) or not single_use(chain[0]):
            continue
        mul_refs = inputs_of(head.id)
        dims = [tuple(p.dims) for p in head.inputs]
        if len(mul_refs) != 2 or any(len(d) != 4 or d[1] != c for d in dims):
            continue
        styles = [k for k, d in enumerate(dims) if d[2:] == (1, 1)]
        if len(styles) != 1 or dims[1 - styles[0]][2] * dims[1 - styles[0]][3] <= 1:
            continue
        k_style = styles[0]
        slots["styles"] = ((head.id, k_style), mul_refs[k_style])
        slots["x"] = ((head.id, 1 - k_style), mul_refs[1 - k_style])
        chain.insert(0, head.id)
        # Forward from the 1x1 convolution: optional noise and bias Adds, then an optional PReLU.
        tail, slope = conv.id, None
        while single_use(tail):
            nxt = graph.consumers(tail)[0].to_layer
            layer = layers[nxt]
            add_refs = inputs_of(nxt)
            if layer.type == "Add" and len(add_refs) == 2:
                k = 1 if add_refs[0][0] == tail else 0
                value = const(add_refs[k])
                if value is None or add_refs[1 - k][0] != tail or value.ndim != 4:
                    break
                shape = tuple(value.shape)
                if shape[:2] == (1, 1) and "noise" not in slots:
                    slots["noise"] = ((nxt, k), add_refs[k])
                elif shape == (1, c_out, 1, 1) and "bias" not in slots:
                    slots["bias"] = ((nxt, k), add_refs[k])
                else:
                    break
            elif layer.type == "PReLU" and len(add_refs) == 2:
                value = const(add_refs[1])
                if value is None or value.size != 1 or value.dtype.kind != "f":
                    break
                slope = float(value.reshape(()))
                chain.append(nxt)
                break
            else:
                break
            chain.append(nxt)
            tail = nxt
        matches.append(SeparableModConvMatch(tuple(chain), slots, (int(padding[0]), int(padding[1])), slope))
    return matches


def run_separable_modconv(
    attrs: dict[str, Any], x: list[torch.Tensor], workspace: dict[str, torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Run one matched chain: ``attrs`` holds ``slots`` (the names of ``x``'s entries), ``padding``, ``slope``.

    ``workspace`` (no autograd only): this step's buffer from the previous call, reused when its shape fits.
    """
    v = dict(zip(attrs["slots"], x, strict=True))
    data, dw, out = v["x"], v.get("depthwise"), None
    if workspace is not None:
        n, _, h, w = data.shape
        if dw is not None:
            (ph, pw), (kh, kw) = attrs["padding"], dw.shape[-2:]
            h, w = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
        shape = (max(n, v["styles"].shape[0]), h, w, v["weight"].shape[0])
        out = workspace.get("out")
        if out is None or tuple(out.shape) != shape or out.dtype != data.dtype or out.device != data.device:
            out = workspace["out"] = torch.empty(shape, dtype=data.dtype, device=data.device)
    return [separable_modconv(
        data, v["styles"], v["weight"], v.get("bias"), noise=v.get("noise"), slope=attrs["slope"],
        depthwise=None if dw is None else dw.reshape((-1,) + tuple(dw.shape[2:])), padding=attrs["padding"], out=out,
    )]


@dataclass(frozen=True)
class SubbandUpsampleMatch:
    """One matched inverse wavelet step.

    Attributes:
        layers: ids of the nine layers it replaces (the final Add last).
        inputs: slot name -> (replace key, producer ref): ``part0..3`` (the sub-bands), or ``x`` when they are
            channels of one tensor; ``inner0..3`` (their first up-sampling kernels, ``[C, 1, 1, kh, kw]``) and
            ``outer0``, ``outer1`` (the second, for parts 0-1 and 2-3).
        channels: with ``x``: ``channels[c * 4 + q]`` is the channel of ``x`` holding sub-band ``q`` of
            channel ``c``; None with ``part0..3``.
        shared_kernels: every channel has the same six kernels (a wavelet), read off the constants once so
            that running the step needs no data-dependent check (a device sync on a GPU).
    """

    layers: tuple[int, ...]
    inputs: dict[str, tuple[Key, Ref]]
    channels: tuple[int, ...] | None = None
    shared_kernels: bool = False


def find_subband_upsamples(graph: IRGraph) -> list[SubbandUpsampleMatch]:
    """All matches of ``Add(up(Add(up, up)), up(Add(up, up)))`` with single-use intermediates, in graph order."""
    layers = graph.layers
    uses = _uses(graph)

    def inputs_of(lid: int) -> list[Ref]:
        return _inputs_of(graph, lid)

    def single_use(lid: int) -> bool:
        return _single_use(graph, uses, lid)

    def up(ref: Ref) -> tuple[int, Ref, Ref] | None:
        """(layer, data ref, kernel ref) if ``ref`` is a single-use disjoint depthwise up-sampling."""
        layer = layers[ref[0]]
        if layer.type != "GroupConvolutionBackpropData" or not single_use(layer.id):
            return None
        refs = inputs_of(layer.id)
        kernel = layers[refs[1][0]] if len(refs) == 2 else None
        if kernel is None or kernel.type != "Const" or kernel.value is None or kernel.value.ndim != 5:
            return None
        if tuple(kernel.value.shape[1:3]) != (1, 1):
            return None
        try:
            disjoint = parse_attrs(layer)["disjoint"]
        except (ValueError, KeyError, TypeError, OverflowError):  # CheckpointError is a ValueError
            return None  # malformed: the op-by-op path reports it, naming the layer
        return (layer.id, refs[0], refs[1]) if disjoint else None

    def pair(ref: Ref) -> tuple[list[int], list[tuple[int, Ref, Ref]]] | None:
        """An Add of two up-samplings with the same kernel shape: (the Add, its two up-samplings)."""
        layer = layers[ref[0]]
        if layer.type != "Add" or not single_use(layer.id):
            return None
        terms = [up(r) for r in inputs_of(layer.id)]
        if len(terms) != 2 or None in terms:
            return None
        return [layer.id], terms

    matches = []
    for top in graph.topological_order():
        if top.type != "Add":
            continue
        outer = [up(r) for r in inputs_of(top.id)]
        if len(outer) != 2 or None in outer:
            continue
        inner = [pair(o[1]) for o in outer]
        if None in inner:
            continue
        ups = [t for _, terms in inner for t in terms]
        values = [layers[t[2][0]].value for t in ups] + [layers[o[2][0]].value for o in outer]
        kernels = [v.shape for v in values]
        if len({k[0] for k in kernels}) != 1 or len({k[3:] for k in kernels[:4]}) != 1 or len({k[3:] for k in kernels[4:]}) != 1:
            continue
        shared = all(bool((v == v[:1]).all()) for v in values)
        slots: dict[str, tuple[Key, Ref]] = {}
        for q, (lid, data, kernel) in enumerate(ups):
            slots[f"part{q}"] = ((lid, 0), data)
            slots[f"inner{q}"] = ((lid, 1), kernel)
        for k, (lid, _, kernel) in enumerate(outer):
            slots[f"outer{k}"] = ((lid, 1), kernel)
        chain = [t[0] for t in ups] + [a for adds, _ in inner for a in adds] + [o[0] for o in outer] + [top.id]
        source = _split_source(graph, [t[1] for t in ups], uses)
        channels = None
        if source is not None:  # the four sub-bands are channels of one tensor: read them from it directly
            views, (key, ref), channels = source
            for q in range(4):
                del slots[f"part{q}"]
            slots = {"x": (key, ref), **slots}
            chain = views + chain
        matches.append(SubbandUpsampleMatch(tuple(chain), slots, channels, shared))
    return matches


def _split_source(graph: IRGraph, parts: list[Ref], uses: Counter) -> tuple[list[int], tuple[Key, Ref], tuple] | None:
    """If the sub-bands are ``VariadicSplit(x, 1, [C, 3C])`` port 0 and the three ``Squeeze(VariadicSplit(
    Reshape(port 1, [N, C, 3, H, W]), 2, [1, 1, 1]), 2)``, as MobileStyleGAN's export spells them: (the view
    layers, x's (replace key, ref), the channel of x of each (c, q) in order ``c * 4 + q``); else None."""
    layers = graph.layers

    def producer(lid: int, k: int) -> Ref | None:
        refs = _inputs_of(graph, lid)
        return refs[k] if len(refs) > k else None

    def const(ref: Ref | None) -> list[int] | None:
        layer = None if ref is None else layers[ref[0]]
        if layer is None or layer.type != "Const" or layer.value is None or layer.value.dtype.kind not in "iu":
            return None
        return [int(v) for v in layer.value.reshape(-1)]

    def only_use(ref: Ref) -> bool:
        return uses[ref] == 1

    first = layers[parts[0][0]]
    if first.type != "VariadicSplit" or len(first.outputs) != 2 or not all(only_use((first.id, p.id)) for p in first.outputs):
        return None
    axis, lengths = const(producer(first.id, 1)), const(producer(first.id, 2))
    dims = [list(p.dims) for p in first.outputs]
    if axis not in ([1], [-3]) or lengths is None or len(lengths) != 2 or parts[0] != (first.id, first.outputs[0].id):
        return None
    c = dims[0][1]
    if len(dims[0]) != 4 or dims[1][1:] != [3 * c] + dims[0][2:]:
        return None
    squeezes = [layers[p[0]] for p in parts[1:]]
    splits = {producer(sq.id, 0) for sq in squeezes}
    if any(sq.type != "Squeeze" or const(producer(sq.id, 1)) not in ([2], [-3]) for sq in squeezes) or len(
            {r[0] for r in splits if r is not None}) != 1:
        return None
    second = layers[next(iter(splits))[0]]
    if second.type != "VariadicSplit" or const(producer(second.id, 1)) not in ([2], [-3]):
        return None
    if const(producer(second.id, 2)) != [1, 1, 1] or not all(only_use((second.id, p.id)) for p in second.outputs):
        return None
    reshape = layers[producer(second.id, 0)[0]]
    if reshape.type != "Reshape" or producer(reshape.id, 0) != (first.id, first.outputs[1].id):
        return None
    if list(reshape.outputs[0].dims)[1:] != [c, 3] + dims[0][2:] or not only_use((reshape.id, reshape.outputs[0].id)):
        return None
    order = [p.id for p in second.outputs]
    j = [order.index(producer(sq.id, 0)[1]) for sq in squeezes]  # which third each sub-band is
    channels = tuple(ch for k in range(c) for ch in (k, c + 3 * k + j[0], c + 3 * k + j[1], c + 3 * k + j[2]))
    views = [first.id, reshape.id, second.id] + [sq.id for sq in squeezes]
    return views, ((first.id, 0), producer(first.id, 0)), channels


def run_subband_upsample(attrs: dict[str, Any], x: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run one matched inverse wavelet step: ``attrs['slots']`` names the entries of ``x``."""
    v = dict(zip(attrs["slots"], x, strict=True))
    flat = {k: t.reshape(t.shape[0], t.shape[3], t.shape[4]) for k, t in v.items() if k.startswith(("inner", "outer"))}
    kernels = [compose_kernels(flat[f"inner{q}"], flat[f"outer{q // 2}"]) for q in range(4)]
    shared = attrs.get("shared_kernels")
    if "x" in v:
        return [subband_upsample(None, kernels, source=v["x"], channels=attrs["channels"], shared=shared)]
    return [subband_upsample([v[f"part{q}"] for q in range(4)], kernels, shared=shared)]
