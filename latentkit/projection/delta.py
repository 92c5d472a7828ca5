"""Generator deltas: the weight updates of pivotal tuning, as a file that is small and safe to load.

A :class:`GeneratorDelta` maps parameter names of a generator to updates: a full tensor of the parameter's
shape, or two low-rank factors ``A [out, r]`` and ``B [r, rest]`` whose product, reshaped, is the update
of a weight whose first dimension is ``out`` (convolutions ``[out, in, k, k]`` are taken as ``[out, in*k*k]``,
LoRA-style). :meth:`GeneratorDelta.apply` returns a tuned copy of the generator (the original stays as it
was); :func:`synthesis_with` renders with updated weights without copying (what tuning differentiates).

Files are safetensors (no pickle: loading runs no code) with JSON metadata in the safetensors header:
``format``, ``format_version``, the network's fingerprint (sha256 of its parameter names, shapes and values),
its architecture and checkpoint sha256, the rank and the parameter names. :meth:`GeneratorDelta.load` is as
strict as a checkpoint loader: it bounds the header and file sizes, refuses pickles and truncated files,
checks every name, shape, dtype and byte range against the network, and every value for finiteness.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from latentkit.errors import CheckpointError, InputError
from latentkit.nets.generator import Generator

__all__ = ["DELTA_FORMAT", "DELTA_FORMAT_VERSION", "MAX_HEADER_BYTES", "GeneratorDelta", "network_fingerprint",
           "synthesis_with", "tunable_parameters"]

DELTA_FORMAT = "latentkit-generator-delta"
DELTA_FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 22
"""Largest safetensors header :meth:`GeneratorDelta.load` parses (4 MiB: a delta of thousands of weights
needs tens of kB)."""
_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
_SUFFIX_A, _SUFFIX_B = ".lora_a", ".lora_b"


def network_fingerprint(G: Generator) -> str:
    """sha256 of every parameter's name, shape and float32 values: a delta fits only the network it was tuned on."""
    digest = hashlib.sha256()
    for name, p in sorted(G.named_parameters(remove_duplicate=False), key=lambda item: item[0]):
        digest.update(f"{name}:{tuple(p.shape)};".encode())
        digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def as_matrix_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """``(out, rest)``: how a weight of ``shape`` is seen as a matrix for a low-rank update: its first
    dimension after leading ones (OpenVINO constants carry them, e.g. ``[1, 512, 4, 4]``) by the rest."""
    dims = [int(d) for d in shape]
    while len(dims) > 2 and dims[0] == 1:
        dims.pop(0)
    return dims[0], int(math.prod(dims[1:]))


def low_rank_pays(shape: torch.Size | tuple[int, ...], rank: int) -> bool:
    """Whether factors of ``rank`` are smaller than a full update of a parameter of ``shape``."""
    if rank <= 0 or len(shape) < 2:
        return False
    out, rest = as_matrix_shape(shape)
    return rank * (out + rest) < out * rest


class _Synthesis(torch.nn.Module):
    """``G.synthesis`` as a module's forward, so :func:`torch.func.functional_call` can swap G's weights."""

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.G = G

    def forward(self, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None, noise_mode: str) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode=noise_mode, noise=noise)


def synthesis_with(
    G: Generator,
    weights: dict[str, torch.Tensor],
    ws: torch.Tensor,
    *,
    noise: dict[str, torch.Tensor] | None = None,
    noise_mode: str = "const",
) -> torch.Tensor:
    """``G.synthesis(ws)`` with the parameters named in ``weights`` replaced (G itself is not modified).

    Args:
        G: the generator.
        weights: parameter name -> tensor of that parameter's shape (may require grad).
        ws: ``[N, num_ws, w_dim]``.
        noise: per-image noise inputs, name -> ``[N, 1, H, W]`` (see :meth:`Generator.synthesis`).
        noise_mode: ``'const'``, ``'random'`` or ``'none'``.

    Returns:
        ``[N, C, H, W]`` images.
    """
    from torch.func import functional_call

    wrapper = _Synthesis(G)
    return functional_call(wrapper, {f"G.{k}": v for k, v in weights.items()}, (ws, noise or None, noise_mode),
                           strict=False)


def tunable_parameters(G: Generator, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Names of the floating-point parameters the synthesis network uses (those that get a gradient).

    Found by one forward and backward pass with every parameter swapped for a copy that requires grad,
    so it holds for every architecture (mapping weights, and constants folded away by fused ops, get none).

    Args:
        G: the generator.
        ws: ``[1, num_ws, w_dim]`` a latent to probe with.
        noise: the noise inputs used when tuning (the stored ones if None); the stored noise is never tunable.
    """
    probe = {name: p.detach().clone().requires_grad_(True)
             for name, p in G.named_parameters(remove_duplicate=False) if p.is_floating_point()}
    if not noise:  # the stored noise as an input: noise maps are not tuned (PTI tunes parameters, not noise
        noise = {k: v.detach() for k, v in G.const_noise().items()}  # buffers; MobileStyleGAN folds noise in)
    with torch.enable_grad():
        img = synthesis_with(G, probe, ws[:1].detach(), noise={k: v[:1] for k, v in noise.items()} or None)
        img.float().square().mean().backward()
    return [name for name, t in probe.items() if t.grad is not None]


@dataclass
class GeneratorDelta:
    """Updates to a generator's weights (one image's pivotal tuning).

    Attributes:
        updates: parameter name -> full update (the parameter's shape) or low-rank factors
            ``(A [out, r], B [r, rest])`` with ``update = (A @ B).reshape(parameter shape)``.
        rank: the rank ``r`` of the low-rank factors (0: every update is full).
        network: :func:`network_fingerprint` of the generator it belongs to.
        architecture: that generator's architecture name (for messages).
        generator_sha256: that generator's checkpoint sha256 ('' if unknown).
        metadata: extra string metadata stored in the file (e.g. the tuning settings as JSON).
    """

    updates: dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
    rank: int
    network: str
    architecture: str = ""
    generator_sha256: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def update(self, name: str, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """The update of parameter ``name`` as a tensor of ``shape``."""
        value = self.updates[name]
        if isinstance(value, tuple):
            a, b = value
            return (a @ b).reshape(shape)
        return value.reshape(shape)

    def weights(self, G: Generator) -> dict[str, torch.Tensor]:
        """``{name: parameter + update}`` for every updated parameter of ``G`` (for :func:`synthesis_with`)."""
        params = dict(G.named_parameters(remove_duplicate=False))
        return {name: params[name] + self.update(name, params[name].shape).to(params[name]) for name in self.updates}

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors (the file adds a header of a few kB)."""
        tensors = [t for v in self.updates.values() for t in (v if isinstance(v, tuple) else (v,))]
        return sum(t.numel() * t.element_size() for t in tensors)

    def apply(self, G: Generator) -> Generator:
        """A tuned copy of ``G`` (``G`` is left untouched).

        Raises:
            CheckpointError: the delta was made for another network.
        """
        self._check_network(G, "this delta")
        tuned = copy.deepcopy(G)
        params = dict(tuned.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            for name in self.updates:
                p = params[name]
                p.data = p.data + self.update(name, p.shape).to(p)  # out of place: tied copies stay apart
        tuned.source = f"{G.source} + delta {self.network[:12]}"
        return tuned

    def _check_network(self, G: Generator, where: str) -> None:
        ours = network_fingerprint(G)
        if ours != self.network:
            raise CheckpointError(
                f"{where} was made for another network (architecture {self.architecture or '?'}, fingerprint "
                f"{self.network[:12]}); this network is {G.architecture} with fingerprint {ours[:12]}: use the "
                "network the delta was tuned on"
            )

    # ----------------------------------------------------------------------------------------------
    # Files.

    def save(self, path: str | os.PathLike) -> Path:
        """Write the delta as safetensors with JSON metadata in its header (atomically); returns the path."""
        from safetensors.torch import save_file

        from latentkit.io import atomic_path

        tensors: dict[str, torch.Tensor] = {}
        for name, value in self.updates.items():
            if isinstance(value, tuple):
                tensors[name + _SUFFIX_A] = value[0].detach().to("cpu", torch.float32).contiguous()
                tensors[name + _SUFFIX_B] = value[1].detach().to("cpu", torch.float32).contiguous()
            else:
                tensors[name] = value.detach().to("cpu", torch.float32).contiguous()
        meta = dict(self.metadata)
        meta.update(format=DELTA_FORMAT, format_version=str(DELTA_FORMAT_VERSION), network=self.network,
                    architecture=self.architecture, generator_sha256=self.generator_sha256, rank=str(self.rank),
                    parameters=json.dumps(list(self.updates)))
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, G: Generator) -> GeneratorDelta:
        """Read a delta written by :meth:`save` and check it, strictly, against ``G``.

        Raises:
            CheckpointError: not a delta file (a pickle, another format), truncated, a header over
                :data:`MAX_HEADER_BYTES`, made for another network, names, shapes, dtypes or byte ranges
                that do not match ``G``, or non-finite values.
            InputError: the file does not exist.
        """
        from safetensors.torch import load as load_bytes

        path = Path(path)
        if not path.is_file():
            raise InputError(f"delta file {path} does not exist; pass the tuned.safetensors that tuning wrote")
        data = path.read_bytes() if path.stat().st_size <= _size_limit(G) else None
        if data is None:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes is larger than any delta of this network "
                                  f"({_size_limit(G)} bytes at most); not a generator delta")
        header = _read_header(path, data)
        meta = header.pop("__metadata__")
        network = meta.get("network", "")
        delta = cls(updates={}, rank=_int(meta.get("rank"), path, "rank"), network=network,
                    architecture=meta.get("architecture", ""), generator_sha256=meta.get("generator_sha256", ""),
                    metadata={k: v for k, v in meta.items() if k not in _RESERVED})
        delta._check_network(G, f"delta {path}")
        names = _parameter_names(meta, path)
        _check_entries(header, names, G, delta.rank, path)
        try:
            tensors = load_bytes(data)
        except Exception as err:  # noqa: BLE001 - safetensors' own errors, reported as one line
            raise CheckpointError(f"{path}: unreadable safetensors data ({str(err).splitlines()[0][:200]})") from err
        for name in names:
            keys = [name + _SUFFIX_A, name + _SUFFIX_B] if name + _SUFFIX_A in header else [name]
            parts = [tensors[k].to(torch.float32) for k in keys]
            if not all(bool(torch.isfinite(t).all()) for t in parts):
                raise CheckpointError(f"{path}: the update of {name} holds NaN or infinite values; the delta is corrupt")
            delta.updates[name] = (parts[0], parts[1]) if len(parts) == 2 else parts[0]
        return delta


_RESERVED = {"format", "format_version", "network", "architecture", "generator_sha256", "rank", "parameters"}


def _size_limit(G: Generator) -> int:
    """No delta of ``G`` is larger than a full update of all its parameters (in float32) plus the header."""
    return 8 + MAX_HEADER_BYTES + 4 * sum(p.numel() for p in G.parameters())


def _int(text: str | None, path: Path, what: str) -> int:
    try:
        value = int(text or "")
    except ValueError:
        raise CheckpointError(f"{path}: metadata {what}={text!r:.40} is not an integer; not a latentkit delta") from None
    if value < 0:
        raise CheckpointError(f"{path}: metadata {what}={value} is negative; not a latentkit delta")
    return value


def _read_header(path: Path, data: bytes) -> dict:
    """The safetensors header of ``data`` as a dict, after checking its size, format and version."""
    if data[:1] == b"\x80" or data[:2] == b"PK":
        raise CheckpointError(f"{path} is a pickle / torch.save file, not a safetensors delta; deltas are never "
                              "unpickled (write them with GeneratorDelta.save or latentkit tune)")
    if len(data) < 8:
        raise CheckpointError(f"{path} is truncated ({len(data)} bytes): not a safetensors delta")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: safetensors header of {size} bytes exceeds the {MAX_HEADER_BYTES}-byte limit; "
                              "not a latentkit delta")
    if 8 + size > len(data):
        raise CheckpointError(f"{path} is truncated: its header needs {size} bytes, the file has {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: the safetensors header is not JSON; not a latentkit delta") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != DELTA_FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a latentkit generator delta (no format "
                              f"{DELTA_FORMAT!r} in its metadata)")
    if meta.get("format_version") != str(DELTA_FORMAT_VERSION):
        raise CheckpointError(f"{path}: delta format version {meta.get('format_version')!r:.20}; this latentkit "
                              f"reads version {DELTA_FORMAT_VERSION}")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path}: entry {key!r:.80} has no valid byte range; not a latentkit delta")
        end = max(end, offsets[1])
    if 8 + size + end != len(data):
        what = "truncated" if 8 + size + end > len(data) else "followed by unexpected bytes"
        raise CheckpointError(f"{path} is {what}: its tensors need {end} bytes after the header, the file has "
                              f"{len(data) - 8 - size}")
    return header


def _parameter_names(meta: dict, path: Path) -> list[str]:
    try:
        names = json.loads(meta.get("parameters", ""))
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise CheckpointError(f"{path}: metadata 'parameters' is not a list of distinct names; not a latentkit delta")
    return names


def _check_entries(header: dict, names: list[str], G: Generator, rank: int, path: Path) -> None:
    """Every stored tensor belongs to a named parameter of ``G`` with the expected shape, dtype and byte size."""
    params = dict(G.named_parameters(remove_duplicate=False))
    expected: dict[str, tuple[int, ...]] = {}
    for name in names:
        if name not in params:
            raise CheckpointError(f"{path}: parameter {name!r:.120} is not in this {G.architecture} network; the delta "
                                  "belongs to another architecture")
        shape = tuple(params[name].shape)
        if name + _SUFFIX_A in header:
            out, rest = as_matrix_shape(shape)
            if not low_rank_pays(shape, rank):
                raise CheckpointError(f"{path}: {name} has rank-{rank} factors where a full update is smaller")
            expected[name + _SUFFIX_A], expected[name + _SUFFIX_B] = (out, rank), (rank, rest)
        else:
            expected[name] = shape
    stored = set(header)
    if stored != set(expected):
        extra = sorted(stored - set(expected))[:3]
        missing = sorted(set(expected) - stored)[:3]
        raise CheckpointError(f"{path}: its tensors do not match its parameter list (unexpected {extra}, missing "
                              f"{missing}); the file is corrupt")
    for key, shape in expected.items():
        entry = header[key]
        dtype = _DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise CheckpointError(f"{path}: {key} has dtype {entry.get('dtype')!r:.20}; deltas hold F32, F16 or BF16")
        if tuple(entry.get("shape", ())) != shape:
            raise CheckpointError(f"{path}: {key} has shape {entry.get('shape')!s:.60}, this network needs {list(shape)}")
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(shape) * dtype[1] or begin < 0:
            raise CheckpointError(f"{path}: {key} spans {end - begin} bytes, its shape needs {math.prod(shape) * dtype[1]}")
