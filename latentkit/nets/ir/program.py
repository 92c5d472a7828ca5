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

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.errors import CheckpointError, LatentkitError
from latentkit.nets.ir.fuse import (
    find_separable_modconvs, find_subband_upsamples, run_separable_modconv, run_subband_upsample,
)
from latentkit.nets.ir.ops import OPS, SUPPORTED_OPS, parse_attrs

if TYPE_CHECKING:
    from latentkit.nets.ir.graph import IRGraph

__all__ = ["IRProgram", "SUPPORTED_OPS"]

Value = torch.Tensor
_Ref = tuple[int, int]  # (layer id, output port id)


class IRProgram(torch.nn.Module):
    """An OpenVINO IR graph as a differentiable PyTorch module.

    Floating-point constants become parameters (``constants['c<layer id>']``), so ``.to(device)`` moves
    them; integer constants (shapes, axes, indices) stay on the CPU, where all shape arithmetic runs.

    Chains of layers that MobileStyleGAN's separable modulated convolutions consist of (style multiply,
    depthwise and 1x1 convolution, noise, bias, leaky ReLU) run as one fused operation
    (:func:`~latentkit.nets.ops.separable_modconv.separable_modconv`), and so do its inverse wavelet steps
    (:func:`~latentkit.nets.ops.subband_upsample.subband_upsample`); ``fuse=False`` runs every layer on
    its own (the same function up to float rounding).

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
            upsamples = {m.layers[-1]: m for m in find_subband_upsamples(graph)} if fuse else {}
        except (ValueError, KeyError, TypeError, OverflowError) as err:
            raise CheckpointError(f"IR graph {graph.name!r}: malformed attributes ({err})") from err
        absorbed = {lid for m in (*fused.values(), *upsamples.values()) for lid in m.layers[:-1]}
        self.fused_layers = sum(len(m.layers) for m in (*fused.values(), *upsamples.values()))
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
            if layer.id in upsamples:
                u = upsamples[layer.id]
                keys, refs = [key for key, _ in u.inputs.values()], [ref for _, ref in u.inputs.values()]
                attrs = {"slots": tuple(u.inputs), "channels": u.channels, "shared_kernels": u.shared_kernels}
                self._steps.append((layer.id, "SubbandUpsample", attrs, refs, keys, [layer.outputs[0].id]))
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
                attrs = parse_attrs(layer)
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
                    elif op == "SubbandUpsample":
                        produced = run_subband_upsample(attrs, inputs)
                    else:
                        produced = OPS[op](attrs, inputs)
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
