"""The OpenVINO IR graph as plain data: layers, ports, edges and the constants they hold.

Built by :func:`latentkit.load.openvino_ir.read_ir` from the ``.xml`` / ``.bin`` files and run by
:class:`latentkit.nets.ir.program.IRProgram`; nothing here reads files or executes anything.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from latentkit.errors import CheckpointError

__all__ = ["IRPort", "IRLayer", "IREdge", "IRGraph"]


@dataclass(frozen=True)
class IRPort:
    """One input or output port of a layer.

    Attributes:
        id: the port id, unique within the layer.
        dims: the static shape written in the XML (``-1`` for a dynamic dimension).
        precision: e.g. ``'FP32'`` ('' if absent).
        names: tensor names attached to an output port (empty for inputs).
    """

    id: int
    dims: tuple[int, ...]
    precision: str = ""
    names: tuple[str, ...] = ()


@dataclass
class IRLayer:
    """One layer (node) of the graph.

    Attributes:
        id: layer id.
        name: layer name.
        type: operation type, e.g. ``'Convolution'``, ``'Const'``.
        version: opset, e.g. ``'opset1'``.
        attrs: the attributes of the ``<data>`` element as strings.
        inputs, outputs: ports in document order.
        value: the constant for ``Const`` layers (read-only NumPy array), else None.
    """

    id: int
    name: str
    type: str
    version: str
    attrs: dict[str, str]
    inputs: tuple[IRPort, ...]
    outputs: tuple[IRPort, ...]
    value: np.ndarray | None = None


@dataclass(frozen=True)
class IREdge:
    """A data edge: output ``from_port`` of ``from_layer`` feeds input ``to_port`` of ``to_layer``."""

    from_layer: int
    from_port: int
    to_layer: int
    to_port: int


@dataclass
class IRGraph:
    """A parsed IR model.

    Attributes:
        name: the ``<net name=...>`` attribute.
        version: IR version (``'10'`` or ``'11'``).
        layers: layer id -> layer.
        edges: all data edges.
    """

    name: str
    version: str
    layers: dict[int, IRLayer]
    edges: list[IREdge] = field(default_factory=list)

    def _index(self) -> tuple[dict[int, dict[int, tuple[int, int]]], dict[int, list[IREdge]]]:
        """Edges by destination and by source, built once (linear time) and rebuilt if edges were added."""
        cached = self.__dict__.get("_edge_index")
        if cached is not None and cached[0] == len(self.edges):
            return cached[1], cached[2]
        feeding: dict[int, dict[int, tuple[int, int]]] = {}
        leaving: dict[int, list[IREdge]] = {}
        for e in self.edges:
            feeding.setdefault(e.to_layer, {})[e.to_port] = (e.from_layer, e.from_port)
            leaving.setdefault(e.from_layer, []).append(e)
        self.__dict__["_edge_index"] = (len(self.edges), feeding, leaving)
        return feeding, leaving

    def producers(self, layer_id: int) -> list[tuple[int, int]]:
        """``(from_layer, from_port)`` feeding each input port of ``layer_id``, in port order.

        Raises:
            CheckpointError: if an input port of the layer is not connected.
        """
        layer = self.layers[layer_id]
        feeding = self._index()[0].get(layer_id, {})
        missing = [p.id for p in layer.inputs if p.id not in feeding]
        if missing:
            raise CheckpointError(f"IR layer {layer_id} ({layer.name!r}): input port {missing[0]} is not connected")
        return [feeding[p.id] for p in layer.inputs]

    def consumers(self, layer_id: int, port: int | None = None) -> list[IREdge]:
        """Edges leaving ``layer_id`` (optionally only those leaving output ``port``)."""
        return [e for e in self._index()[1].get(layer_id, []) if port is None or e.from_port == port]

    def of_type(self, type_: str) -> list[IRLayer]:
        """All layers of one operation type, in id order."""
        return [layer for _, layer in sorted(self.layers.items()) if layer.type == type_]

    def topological_order(self) -> list[IRLayer]:
        """Layers sorted so that every layer comes after all its producers (ties broken by id).

        Raises:
            CheckpointError: if the graph has a cycle.
        """
        pending = {i: 0 for i in self.layers}
        children: dict[int, list[int]] = {i: [] for i in self.layers}
        for e in self.edges:
            pending[e.to_layer] += 1
            children[e.from_layer].append(e.to_layer)
        ready = sorted(i for i, n in pending.items() if n == 0)  # a sorted list is a valid heap
        order: list[IRLayer] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(self.layers[i])
            for child in children[i]:
                pending[child] -= 1
                if pending[child] == 0:
                    heapq.heappush(ready, child)
        if len(order) != len(self.layers):
            stuck = sorted(i for i, n in pending.items() if n > 0)[:5]
            raise CheckpointError(f"IR graph {self.name!r} has a cycle through layers {stuck}; not a valid IR model")
        return order

    def __iter__(self) -> Iterator[IRLayer]:
        return iter(self.topological_order())
