"""The operations an :class:`~latentkit.nets.ir.program.IRProgram` applies, one PyTorch function per OpenVINO
IR layer type (opset1/3/7 semantics), and the parsing of each layer's string attributes.

Nothing from the file is executed: a layer's type only selects among these functions, and its attributes
are parsed into the few typed values each function reads (malformed ones are a CheckpointError naming
the layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from latentkit.errors import CheckpointError

if TYPE_CHECKING:
    from latentkit.nets.ir.graph import IRLayer

__all__ = ["OPS", "SUPPORTED_OPS", "parse_attrs"]

Value = torch.Tensor


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
    if (not torch.is_grad_enabled() and attrs["grouped"] and attrs["disjoint"] and weight.shape[1] == 1
            and weight.shape[2] == 1 and weight.shape[4] == 1 and data.is_contiguous()):
        # Kernel windows do not overlap (stride == kernel, no padding), so each output is one product of one
        # input: out[n, c, i * kh + a, j] = data[n, c, i, j] * weight[c, 0, 0, a, 0], a broadcast multiply.
        # (Under autograd its gradient would come back in [N, C, H, W] layout; oneDNN's stays channels-last.)
        n, c, h, w = data.shape
        kh = weight.shape[3]
        return [(data[:, :, :, None, :] * weight.reshape(1, c, 1, kh, 1)).reshape(n, c, h * kh, w)]
    if data.device.type == "cpu":  # oneDNN: fast on channels-last tensors, and so are its gradients
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


OPS: dict[str, Callable[[dict, list[Value]], list[Value]]] = {
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
SUPPORTED_OPS = ("Parameter", "Const", "Result", *sorted(OPS))
"""IR operation types :class:`IRProgram` executes (2-D convolutions only)."""


def parse_attrs(layer: IRLayer) -> dict[str, Any]:
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
