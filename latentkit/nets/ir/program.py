"""Execute an OpenVINO IR graph with PyTorch operations: differentiable, on any device, any batch size.

:class:`IRProgram` walks the graph (:class:`latentkit.load.openvino_ir.IRGraph`, plain data) in
topological order and applies, for each layer, a PyTorch function that follows OpenVINO's definition of
the operation (opset1/3/7 semantics for the about twenty types listed in :data:`SUPPORTED_OPS`). Nothing
from the file is executed: the graph only selects among these functions. Shape arithmetic (``ShapeOf``,
``Gather``, ``Concat`` on shapes) runs on the CPU at call time, so graphs exported with dynamic batch
shapes accept any batch size. On the CPU, convolutions take channels-last inputs (oneDNN's fast layout);
values do not depend on the layout beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from latentkit.errors import CheckpointError, LatentkitError
from latentkit.nets.ir.fuse import find_separable_modconvs, run_separable_modconv

if TYPE_CHECKING:
    from latentkit.nets.ir.graph import IRGraph, IRLayer

__all__ = ["IRProgram", "SUPPORTED_OPS"]

Value = torch.Tensor
_Ref = tuple[int, int]  # (layer id, output port id)


def _flag(attrs: dict[str, str], key: str, default: bool) -> bool:
    return attrs.get(key, str(default)).strip().lower() in ("true", "1")


def _ints(attrs: dict[str, str], key: str, default: Sequence[int]) -> tuple[int, ...]:
    text = attrs.get(key, "").replace(" ", "")
    return tuple(int(t) for t in text.split(",")) if text else tuple(default)


def _as_list(x: Value) -> list[int]:
    return [int(v) for v in x.reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# ------------------------------------------------------------------------------------------------------
# Operations: each takes the layer's parsed attributes and its input values and returns its outputs.


def _binary(fn: Callable[[Value, Value], Value]) -> Callable[[dict, list[Value]], list[Value]]:
    return lambda attrs, x: [fn(x[0], x[1])]


def _matmul(attrs: dict, x: list[Value]) -> list[Value]:
    a, b = x
    if attrs["transpose_a"] and a.ndim > 1:
        a = a.transpose(-1, -2)
    if attrs["transpose_b"] and b.ndim > 1:
        b = b.transpose(-1, -2)
    return [torch.matmul(a, b)]


def _prelu(attrs: dict, x: list[Value]) -> list[Value]:
    data, slope = x
    if "slope" in attrs:  # leaky_relu casts the slope to float32 again: the same product as OpenVINO's
        return [F.leaky_relu(data, attrs["slope"])]
    if data.ndim > 1:  # one slope per channel (axis 1)
        slope = slope.reshape([1, -1] + [1] * (data.ndim - 2))
    return [torch.where(data >= 0, data, data * slope)]


def _conv(attrs: dict, x: list[Value]) -> list[Value]:
    data, weight = x
    groups = 1
    if attrs["grouped"]:  # [G, C_out/G, C_in/G, kH, kW] -> [C_out, C_in/G, kH, kW]
        groups = weight.shape[0]
        weight = weight.reshape((-1,) + tuple(weight.shape[2:]))
    begin, end = attrs["pads_begin"], attrs["pads_end"]
    if begin != end:
        data = F.pad(data, (begin[1], end[1], begin[0], end[0]))
        begin = (0, 0)
    if data.device.type == "cpu":  # oneDNN convolves channels-last tensors about twice as fast
        data = data.contiguous(memory_format=torch.channels_last)
    return [F.conv2d(data, weight, stride=attrs["strides"], padding=begin, dilation=attrs["dilations"], groups=groups)]


def _conv_transpose(attrs: dict, x: list[Value]) -> list[Value]:
    data, weight = x
    if attrs["grouped"] and attrs["disjoint"] and weight.shape[1] == 1 and weight.shape[2] == 1:
        # Kernel windows do not overlap (stride == kernel, no padding) and each output is one product of
        # one input: out[n, c, i * kh + a, j * kw + b] = data[n, c, i, j] * weight[c, 0, 0, a, b].
        n, c, h, w = data.shape
        kh, kw = weight.shape[3:]
        if kw == 1 and data.is_contiguous():  # [N, C, H, kh, W]: a broadcast multiply with W innermost
            out = data[:, :, :, None, :] * weight.reshape(1, c, 1, kh, 1)
            return [out.reshape(n, c, h * kh, w)]
        if data.device.type == "cpu":  # oneDNN's transposed convolution is fast on channels-last tensors
            data = data.contiguous(memory_format=torch.channels_last)
    groups = 1
    if attrs["grouped"]:  # [G, C_in/G, C_out/G, kH, kW] -> [C_in, C_out/G, kH, kW]
        groups = weight.shape[0]
        weight = weight.reshape((-1,) + tuple(weight.shape[2:]))
    out = F.conv_transpose2d(data, weight, stride=attrs["strides"], padding=attrs["pads_begin"],
                             output_padding=attrs["output_padding"], groups=groups, dilation=attrs["dilations"])
    return [out]


def _shape_of(attrs: dict, x: list[Value]) -> list[Value]:
    return [torch.tensor(list(x[0].shape), dtype=attrs["dtype"])]


def _gather(attrs: dict, x: list[Value]) -> list[Value]:
    data, indices, axis = x
    ax = _axis(int(axis), data.ndim)
    idx = indices.to(device=data.device, dtype=torch.long)
    idx = torch.where(idx < 0, idx + data.shape[ax], idx)
    out = data.index_select(ax, idx.reshape(-1))
    return [out.reshape(tuple(data.shape[:ax]) + tuple(indices.shape) + tuple(data.shape[ax + 1:]))]


def _unsqueeze(attrs: dict, x: list[Value]) -> list[Value]:
    data, axes = x
    rank = data.ndim + axes.numel()
    out = data
    for ax in sorted(_axis(a, rank) for a in _as_list(axes)):
        out = out.unsqueeze(ax)
    return [out]


def _squeeze(attrs: dict, x: list[Value]) -> list[Value]:
    data = x[0]
    if len(x) == 1:
        return [data.squeeze()]
    axes = [_axis(a, data.ndim) for a in _as_list(x[1])]
    return [data.squeeze(tuple(axes))] if axes else [data]


def _reshape(attrs: dict, x: list[Value]) -> list[Value]:
    data, shape = x
    target = _as_list(shape)
    if attrs["special_zero"]:
        target = [data.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return [data.reshape(target)]


def _variadic_split(attrs: dict, x: list[Value]) -> list[Value]:
    data, axis, lengths = x
    ax = _axis(int(axis), data.ndim)
    sizes = _as_list(lengths)
    if -1 in sizes:
        sizes[sizes.index(-1)] = data.shape[ax] - (sum(sizes) + 1)
    return list(torch.split(data, sizes, dim=ax))


def _tile(attrs: dict, x: list[Value]) -> list[Value]:
    data, repeats = x
    reps = _as_list(repeats)
    reps = [1] * (data.ndim - len(reps)) + reps
    return [data.repeat(*reps)]


def _broadcast(attrs: dict, x: list[Value]) -> list[Value]:
    data, target = x[0], _as_list(x[1])
    if attrs["mode"] == "bidirectional":
        target = list(torch.broadcast_shapes(tuple(data.shape), tuple(target)))
    return [torch.broadcast_to(data, target)]


def _concat(attrs: dict, x: list[Value]) -> list[Value]:
    return [torch.cat(x, dim=_axis(attrs["axis"], x[0].ndim))]


def _reduce_mean(attrs: dict, x: list[Value]) -> list[Value]:
    data, axes = x
    dims = tuple(_axis(a, data.ndim) for a in _as_list(axes))
    return [data.mean(dim=dims, keepdim=attrs["keep_dims"])]


_OPS: dict[str, Callable[[dict, list[Value]], list[Value]]] = {
    "Add": _binary(torch.add),
    "Subtract": _binary(torch.sub),
    "Multiply": _binary(torch.mul),
    "Divide": _binary(torch.div),
    "Power": _binary(torch.pow),
    "MatMul": _matmul,
    "PReLU": _prelu,
    "Convolution": _conv,
    "GroupConvolution": _conv,
    "ConvolutionBackpropData": _conv_transpose,
    "GroupConvolutionBackpropData": _conv_transpose,
    "ShapeOf": _shape_of,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "VariadicSplit": _variadic_split,
    "Tile": _tile,
    "Broadcast": _broadcast,
    "Concat": _concat,
    "ReduceMean": _reduce_mean,
}
SUPPORTED_OPS = ("Parameter", "Const", "Result", *sorted(_OPS))
"""IR operation types :class:`IRProgram` executes (2-D convolutions only)."""


def _parse_attrs(layer: IRLayer) -> dict[str, Any]:
    """Turn a layer's string attributes into what its operation function reads; refuse what it cannot do."""
    a, where = layer.attrs, f"IR layer {layer.id} ({layer.name!r}, {layer.type})"
    t = layer.type
    if t == "MatMul":
        return {"transpose_a": _flag(a, "transpose_a", False), "transpose_b": _flag(a, "transpose_b", False)}
    if t in ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData"):
        if a.get("auto_pad", "explicit") not in ("explicit", "notset", "valid"):
            raise CheckpointError(f"{where}: auto_pad={a['auto_pad']!r} is not supported (explicit pads only)")
        if len(layer.inputs) != 2 or len(layer.inputs[0].dims) != 4:
            raise CheckpointError(f"{where}: only 2-D convolutions with two inputs are supported")
        valid = a.get("auto_pad") == "valid"
        parsed = {
            "grouped": t.startswith("Group"),
            "strides": _ints(a, "strides", (1, 1)),
            "dilations": _ints(a, "dilations", (1, 1)),
            "pads_begin": (0, 0) if valid else _ints(a, "pads_begin", (0, 0)),
            "pads_end": (0, 0) if valid else _ints(a, "pads_end", (0, 0)),
            "output_padding": _ints(a, "output_padding", (0, 0)),
        }
        for key, low, high in (("strides", 1, 64), ("dilations", 1, 64), ("pads_begin", 0, 4096),
                               ("pads_end", 0, 4096), ("output_padding", 0, 64)):
            if len(parsed[key]) != 2 or not all(low <= v <= high for v in parsed[key]):
                raise CheckpointError(f"{where}: {key}={list(parsed[key])} must be two integers in [{low}, {high}]")
        if t.endswith("BackpropData") and parsed["pads_begin"] != parsed["pads_end"]:
            raise CheckpointError(f"{where}: asymmetric pads of a transposed convolution are not supported")
        kernel = tuple(layer.inputs[1].dims[-2:])
        parsed["disjoint"] = (
            parsed["strides"] == kernel and parsed["dilations"] == (1, 1) and parsed["pads_begin"] == (0, 0)
            and parsed["pads_end"] == (0, 0) and parsed["output_padding"] == (0, 0)
        )
        return parsed
    if t == "ShapeOf":
        return {"dtype": torch.int32 if a.get("output_type") == "i32" else torch.int64}
    if t == "Gather" and int(a.get("batch_dims", "0")) != 0:
        raise CheckpointError(f"{where}: Gather with batch_dims != 0 is not supported")
    if t == "Reshape":
        return {"special_zero": _flag(a, "special_zero", False)}
    if t == "Broadcast":
        mode = a.get("mode", "numpy")
        if mode not in ("numpy", "bidirectional"):
            raise CheckpointError(f"{where}: Broadcast mode {mode!r} is not supported (numpy, bidirectional)")
        return {"mode": mode}
    if t == "Concat":
        return {"axis": int(a.get("axis", "0"))}
    if t == "ReduceMean":
        return {"keep_dims": _flag(a, "keep_dims", False)}
    if t in ("Add", "Subtract", "Multiply", "Divide", "Power") and a.get("auto_broadcast", "numpy") not in (
        "numpy", "none"
    ):
        raise CheckpointError(f"{where}: auto_broadcast={a['auto_broadcast']!r} is not supported")
    return {}


class IRProgram(torch.nn.Module):
    """An OpenVINO IR graph as a differentiable PyTorch module.

    Floating-point constants become parameters (``constants['c<layer id>']``), so ``.to(device)`` moves
    them; integer constants (shapes, axes, indices) stay on the CPU, where all shape arithmetic runs.

    Chains of layers that MobileStyleGAN's separable modulated convolutions consist of (style multiply,
    depthwise and 1x1 convolution, noise, bias, leaky ReLU) run as one fused operation
    (:func:`~latentkit.nets.ops.separable_modconv.separable_modconv`); ``fuse=False`` runs every layer
    on its own (the same function up to float rounding).

    Args:
        graph: the parsed IR (:func:`latentkit.load.openvino_ir.read_ir`).
        fuse: run recognised layer chains as fused operations.

    Attributes:
        reuse_buffers: calls without autograd keep each fused operation's output buffer and write into it
            again on the next call (about the size of all intermediate feature maps of one call; freed by
            :meth:`release_buffers`). The returned tensor is never such a buffer.

    Raises:
        CheckpointError: if the graph uses an operation outside :data:`SUPPORTED_OPS` or an unsupported
            attribute, or does not have exactly one input and one output.
    """

    def __init__(self, graph: IRGraph, *, fuse: bool = True) -> None:
        super().__init__()
        unknown = sorted({layer.type for layer in graph.layers.values()} - set(SUPPORTED_OPS))
        if unknown:
            raise CheckpointError(
                f"IR graph {graph.name!r} uses operations latentkit cannot execute: {unknown}; "
                f"supported: {list(SUPPORTED_OPS)}"
            )
        params, results = graph.of_type("Parameter"), graph.of_type("Result")
        if len(params) != 1 or len(results) != 1:
            raise CheckpointError(
                f"IR graph {graph.name!r} must have one input and one output, got {len(params)} Parameter "
                f"and {len(results)} Result layers"
            )
        self.name = graph.name
        self.input_layer, self.output_layer = params[0], results[0]
        self.constants = torch.nn.ParameterDict()
        self._int_constants: dict[int, torch.Tensor] = {}
        self._steps: list[tuple[int, str, dict[str, Any], list[_Ref], list[tuple[int, int]], list[int]]] = []
        try:
            fused = {m.layers[-1]: m for m in find_separable_modconvs(graph)} if fuse else {}
        except (ValueError, KeyError, TypeError, OverflowError) as err:
            raise CheckpointError(f"IR graph {graph.name!r}: malformed attributes ({err})") from err
        absorbed = {lid for m in fused.values() for lid in m.layers[:-1]}
        self.fused_layers = sum(len(m.layers) for m in fused.values())
        shared: dict[tuple, torch.Tensor] = {}  # constants that view the same BIN bytes share one tensor
        for layer in graph.topological_order():
            if layer.id in absorbed:
                continue
            if layer.id in fused:
                m = fused[layer.id]
                attrs = {"slots": tuple(m.inputs), "padding": m.padding, "slope": m.slope}
                keys = [key for key, _ in m.inputs.values()]
                refs = [ref for _, ref in m.inputs.values()]
                self._steps.append((layer.id, "SeparableModConv", attrs, refs, keys, [layer.outputs[0].id]))
                continue
            if layer.type == "Const":
                value = layer.value
                if value is None:
                    raise CheckpointError(f"IR layer {layer.id} ({layer.name!r}): a Const without a value")
                key = (value.__array_interface__["data"][0], value.shape, value.dtype.str)
                if key not in shared:
                    kind = np.float32 if value.dtype.kind == "f" else np.int64
                    shared[key] = torch.from_numpy(value.astype(kind))  # one writable copy per byte range
                if value.dtype.kind == "f":
                    self.constants[f"c{layer.id}"] = torch.nn.Parameter(shared[key], requires_grad=False)
                else:
                    self._int_constants[layer.id] = shared[key]
                continue
            refs = [(src, port) for src, port in graph.producers(layer.id)]
            outs = [p.id for p in layer.outputs]
            try:
                attrs = _parse_attrs(layer)
            except (ValueError, KeyError, TypeError, OverflowError) as err:
                raise CheckpointError(
                    f"IR layer {layer.id} ({layer.name!r}, {layer.type}): malformed attributes ({err})"
                ) from err
            if layer.type == "PReLU":  # a constant scalar slope is read once here, not on every call
                slope = graph.layers[refs[1][0]].value
                if slope is not None and slope.size == 1 and slope.dtype.kind == "f":
                    attrs["slope"] = float(slope.reshape(()))
            self._steps.append((layer.id, layer.type, attrs, refs, [(layer.id, k) for k in range(len(refs))], outs))
        # Free each intermediate value after its last use (saves memory at 1024x1024 without autograd).
        last_use: dict[_Ref, int] = {}
        for i, (_, _, _, refs, _, _) in enumerate(self._steps):
            for ref in refs:
                last_use[ref] = i
        self._release: list[list[_Ref]] = [[] for _ in self._steps]  # linear in the number of values
        for ref, j in last_use.items():
            self._release[j].append(ref)
        # Without autograd, each fused step writes into its buffer from the previous call: fresh
        # [N, 64, 512, 512] tensors cost more in page faults than the arithmetic that fills them.
        self.reuse_buffers = True
        self._workspace: dict[int, dict[str, torch.Tensor]] = {}
        self._running = False

    def release_buffers(self) -> None:
        """Free the buffers that calls without autograd keep for reuse (see :attr:`reuse_buffers`)."""
        self._workspace.clear()

    def constant(self, layer_id: int) -> torch.Tensor:
        """The value of a ``Const`` layer (float constants on the module's device, integers on the CPU)."""
        if layer_id in self._int_constants:
            return self._int_constants[layer_id]
        return self.constants[f"c{layer_id}"]

    def extra_repr(self) -> str:
        return f"{self.name}: {len(self._steps)} ops, {len(self.constants)} float constants"

    def forward(self, x: torch.Tensor, replace: dict[tuple[int, int], torch.Tensor] | None = None) -> torch.Tensor:
        """Execute the graph.

        Args:
            x: the value of the graph's single ``Parameter`` (its dims with any batch size).
            replace: optional ``(layer id, input index) -> tensor``: feed that input of that layer with the
                given tensor instead of what the graph computes (used for W+ and noise inputs).

        Returns:
            The value reaching the graph's ``Result`` layer.
        """
        if torch.is_grad_enabled() or not self.reuse_buffers or self._running:
            return self._run(x, replace or {}, None)
        self._running = True  # a re-entrant or concurrent call allocates its own buffers
        try:
            result = self._run(x, replace or {}, self._workspace)
        finally:
            self._running = False
        held = {t.untyped_storage().data_ptr() for step in self._workspace.values() for t in step.values()}
        return result.clone() if result.untyped_storage().data_ptr() in held else result

    def _run(
        self, x: torch.Tensor, replace: dict[tuple[int, int], torch.Tensor], workspace: dict[int, dict] | None
    ) -> torch.Tensor:
        values: dict[_Ref, torch.Tensor] = {(self.input_layer.id, self.input_layer.outputs[0].id): x}
        result: torch.Tensor | None = None
        for i, (lid, op, attrs, refs, keys, outs) in enumerate(self._steps):
            if op == "Parameter":
                continue
            inputs = [
                replace[key] if key in replace else (values[ref] if ref in values else self.constant(ref[0]))
                for key, ref in zip(keys, refs, strict=True)
            ]
            if op == "Result":
                result = inputs[0]
            else:
                try:
                    if op == "SeparableModConv":
                        produced = run_separable_modconv(attrs, inputs, None if workspace is None else workspace.setdefault(i, {}))
                    else:
                        produced = _OPS[op](attrs, inputs)
                    for port, value in zip(outs, produced, strict=True):
                        values[(lid, port)] = value
                except (RuntimeError, ValueError, IndexError, TypeError) as err:
                    if isinstance(err, LatentkitError):
                        raise
                    raise CheckpointError(f"IR layer {lid} ({op}) failed: {str(err).splitlines()[0][:300]}") from err
            for ref in self._release[i]:
                values.pop(ref, None)
        if result is None:  # pragma: no cover - guaranteed by the constructor
            raise CheckpointError("IR graph has no Result")
        return result
