"""A safe reader of OpenVINO IR (version 10/11): the ``.xml`` graph and the ``.bin`` constants as plain data.

An IR model is two files. The XML lists layers (id, name, type, opset, attributes, input and output
ports with their dims) and edges ``(from_layer, from_port) -> (to_layer, to_port)``; every ``Const``
layer points at a byte range of the BIN file (``offset``, ``size``, ``element_type``, ``shape``).
This module reads both without OpenVINO and without executing anything: the XML is parsed with
:mod:`xml.etree.ElementTree` after refusing any DTD or entity declaration (which is how XML bombs and
external-entity tricks get in; OpenVINO never writes one), and constants are read with NumPy after
checking that each byte range lies inside the BIN file and matches its shape and element type.

Example:
    >>> graph = read_ir(xml_bytes, bin_bytes)  # doctest: +SKIP
    >>> [layer.type for layer in graph.topological_order()][:3]  # doctest: +SKIP
    ['Parameter', 'Const', 'Const']
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from latentkit.errors import CheckpointError
from latentkit.nets.ir.graph import IREdge, IRGraph, IRLayer, IRPort

__all__ = ["ELEMENT_TYPES", "read_ir", "read_ir_files"]

# OpenVINO element types that may hold constants, mapped to little-endian NumPy dtypes.
ELEMENT_TYPES: dict[str, np.dtype] = {
    "f64": np.dtype("<f8"),
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"),
    "i16": np.dtype("<i2"),
    "i8": np.dtype("i1"),
    "u64": np.dtype("<u8"),
    "u32": np.dtype("<u4"),
    "u16": np.dtype("<u2"),
    "u8": np.dtype("u1"),
    "boolean": np.dtype("?"),
}

_SUPPORTED_VERSIONS = ("10", "11")
_MAX_RANK = 8
_MAX_DIM = 1 << 24


def _parse_xml(xml: bytes, where: str) -> ET.Element:
    """Parse XML bytes after refusing DTDs and entity declarations."""
    try:
        text = xml.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{where}: not UTF-8 text ({err}); an OpenVINO IR .xml file was expected") from err
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise CheckpointError(
            f"{where}: the XML declares a DTD or entities, which OpenVINO IR files never contain; "
            "refusing to parse it (DTDs are how XML bombs and external-entity attacks work)"
        )
    parser = ET.XMLParser()
    expat = getattr(parser, "parser", None)
    if expat is not None:  # second line of defence where the expat object is reachable

        def refuse(*_args: object) -> None:
            raise CheckpointError(f"{where}: the XML declares a DTD or entities; refusing to parse it")

        expat.StartDoctypeDeclHandler = refuse
        expat.EntityDeclHandler = refuse
    try:
        parser.feed(text)
        return parser.close()
    except ET.ParseError as err:
        raise CheckpointError(f"{where}: malformed XML ({err}); an OpenVINO IR .xml file was expected") from err


def _ints(text: str | None, where: str) -> tuple[int, ...]:
    if text is None or not text.strip():
        return ()
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(","))
    except ValueError as err:
        raise CheckpointError(f"{where}: expected a comma-separated list of integers, got {text!r}") from err


def _port(elem: ET.Element, where: str) -> IRPort:
    try:
        dims = tuple(int((d.text or "").strip()) for d in elem.findall("dim"))
        pid = int(elem.attrib["id"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{where}: a port has a missing or non-integer id or dim ({err})") from err
    if len(dims) > _MAX_RANK or any(not -1 <= d <= _MAX_DIM for d in dims):
        raise CheckpointError(f"{where}: port {pid} has dims {list(dims)[:8]}, outside [-1, {_MAX_DIM}] or rank > {_MAX_RANK}")
    names = tuple(n for n in elem.attrib.get("names", "").split(",") if n)
    return IRPort(id=pid, dims=dims, precision=elem.attrib.get("precision", ""), names=names)


def _constant(attrs: dict[str, str], blob: bytes, where: str) -> np.ndarray:
    """Read one Const layer's value from the BIN bytes, checking the byte range and the size."""
    etype = attrs.get("element_type", "")
    dtype = ELEMENT_TYPES.get(etype)
    if dtype is None:
        raise CheckpointError(
            f"{where}: unsupported constant element_type {etype!r}; supported: {sorted(ELEMENT_TYPES)}"
        )
    shape = _ints(attrs.get("shape"), where)
    try:
        offset, size = int(attrs["offset"]), int(attrs["size"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{where}: Const layer needs integer 'offset' and 'size' attributes ({err})") from err
    if len(shape) > _MAX_RANK or any(not 0 <= s <= _MAX_DIM for s in shape):
        raise CheckpointError(f"{where}: Const shape {list(shape)[:8]} has a dimension outside [0, {_MAX_DIM}] or rank "
                              f"> {_MAX_RANK}")
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise CheckpointError(
            f"{where}: Const size is {size} bytes but shape {list(shape)} of {etype} needs {expected} bytes"
        )
    if offset < 0 or offset + size > len(blob):
        raise CheckpointError(
            f"{where}: Const bytes [{offset}, {offset + size}) lie outside the .bin file of {len(blob)} bytes; "
            "the .bin file is truncated or belongs to another .xml"
        )
    # A view of the BIN bytes, never a copy: constants may overlap (OpenVINO shares identical ones).
    try:
        return np.frombuffer(blob, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    except ValueError as err:
        raise CheckpointError(f"{where}: Const of shape {list(shape)[:8]} cannot be read ({err})") from None


def read_ir(xml: bytes, weights: bytes, *, name: str = "model.xml") -> IRGraph:
    """Parse an OpenVINO IR model from the bytes of its ``.xml`` and ``.bin`` files.

    Args:
        xml: content of the ``.xml`` file.
        weights: content of the ``.bin`` file.
        name: a label for error messages (usually the file name).

    Returns:
        The graph, with every ``Const`` layer's ``value`` filled in (read-only NumPy views of ``weights``,
        little-endian as the BIN stores them).

    Raises:
        CheckpointError: if the XML is malformed, declares a DTD or entities, is not an IR ``<net>`` of
            version 10 or 11, has duplicate layer ids, edges to unknown layers or ports, or a constant whose
            byte range or size does not fit the BIN file.
    """
    root = _parse_xml(xml, name)
    if root.tag != "net":
        raise CheckpointError(f"{name}: root element is <{root.tag}>, expected <net> (an OpenVINO IR .xml file)")
    version = root.attrib.get("version", "")
    if version not in _SUPPORTED_VERSIONS:
        raise CheckpointError(
            f"{name}: IR version {version!r} is not supported (expected one of {list(_SUPPORTED_VERSIONS)}); "
            "re-export the model with a recent OpenVINO model converter"
        )
    layers: dict[int, IRLayer] = {}
    blob = weights if isinstance(weights, bytes) else bytes(weights)
    ranges: set[tuple[str, str]] = set()
    materialised = 0
    for elem in root.iterfind("layers/layer"):
        try:
            lid = int(elem.attrib["id"])
            ltype = elem.attrib["type"]
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{name}: a <layer> has a missing or non-integer id or type ({err})") from err
        where = f"{name}: layer {lid} ({elem.attrib.get('name', '')!r}, {ltype})"
        if lid in layers:
            raise CheckpointError(f"{name}: duplicate layer id {lid}")
        data = elem.find("data")
        attrs = dict(data.attrib) if data is not None else {}
        layer = IRLayer(
            id=lid,
            name=elem.attrib.get("name", ""),
            type=ltype,
            version=elem.attrib.get("version", ""),
            attrs=attrs,
            inputs=tuple(_port(p, where) for p in elem.iterfind("input/port")),
            outputs=tuple(_port(p, where) for p in elem.iterfind("output/port")),
        )
        if ltype == "Const":
            value = _constant(attrs, blob, where)
            key = (attrs["offset"], attrs["size"])
            if key not in ranges:
                ranges.add(key)
                materialised += value.size * 8  # the program holds floats as float32, integers as int64
                if materialised > 2 * len(blob) + (16 << 20):
                    raise CheckpointError(
                        f"{where}: the Const layers claim more than twice the .bin file's {len(blob):,} bytes "
                        "(overlapping byte ranges); the model is corrupt or hostile"
                    )
            value.flags.writeable = False
            layer.value = value
        layers[lid] = layer
    edges: list[IREdge] = []
    ports = {lid: ({p.id for p in layer.outputs}, {p.id for p in layer.inputs}) for lid, layer in layers.items()}
    for elem in root.iterfind("edges/edge"):
        try:
            edge = IREdge(*(int(elem.attrib[k]) for k in ("from-layer", "from-port", "to-layer", "to-port")))
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{name}: an <edge> has a missing or non-integer attribute ({err})") from err
        src, dst = layers.get(edge.from_layer), layers.get(edge.to_layer)
        if src is None or dst is None:
            raise CheckpointError(f"{name}: edge {edge} refers to a layer that does not exist")
        if edge.from_port not in ports[src.id][0] or edge.to_port not in ports[dst.id][1]:
            raise CheckpointError(f"{name}: edge {edge} refers to a port that does not exist")
        edges.append(edge)
    fed = {(e.to_layer, e.to_port) for e in edges}
    for layer in layers.values():
        for port in layer.inputs:
            if (layer.id, port.id) not in fed:
                raise CheckpointError(
                    f"{name}: input port {port.id} of layer {layer.id} ({layer.name!r}) is not connected"
                )
    return IRGraph(name=root.attrib.get("name", ""), version=version, layers=layers, edges=edges)


def read_ir_files(xml_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> IRGraph:
    """Read an IR model from disk; ``bin_path`` defaults to the ``.xml`` path with suffix ``.bin``.

    Raises:
        CheckpointError: as :func:`read_ir`, or if a file is missing.
    """
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin") if bin_path is None else Path(bin_path)
    for path in (xml_path, bin_path):
        if not path.is_file():
            raise CheckpointError(
                f"OpenVINO IR file not found: {path} (an IR model is a .xml and a .bin file side by side)"
            )
    return read_ir(xml_path.read_bytes(), bin_path.read_bytes(), name=str(xml_path))
