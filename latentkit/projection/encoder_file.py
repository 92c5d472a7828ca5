"""Encoder files: safetensors tensors plus JSON metadata in the header, read as strictly as a checkpoint.

The header's ``__metadata__`` holds one key, ``latentkit``, a JSON object: ``format``
(``'latentkit-encoder'``), ``format_version``, ``config`` (the :class:`EncoderConfig` as plain data),
``network`` (the generator's fingerprint: sha256, architecture, shapes), ``prior`` (the fingerprint of the
prior head stored with the weights) and ``training`` (what it was trained on, for the record). Reading
never unpickles: the header length is bounded, the JSON parsed, the architecture rebuilt from the config,
and every tensor checked against it (names, shapes, float32, finite) before it is loaded.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import InputError
from latentkit.nets.generator import Generator
from latentkit.projection.encoder import EncoderConfig, ResNetEncoder, network_fingerprint, prior_fingerprint

__all__ = ["ENCODER_FORMAT", "ENCODER_FORMAT_VERSION", "MAX_HEADER_BYTES", "load_encoder", "save_encoder"]

ENCODER_FORMAT = "latentkit-encoder"
ENCODER_FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
"""Largest safetensors header read (1 MiB; an encoder's header is a few KiB)."""


def save_encoder(path: str | os.PathLike, encoder: ResNetEncoder, *, network: dict[str, Any],
                 training: dict[str, Any] | None = None) -> Path:
    """Write ``encoder`` to ``path`` (atomically) as safetensors with the JSON header described above.

    Args:
        path: the file (``.safetensors``).
        encoder: the trained encoder.
        network: :func:`~latentkit.projection.encoder.network_fingerprint` of its generator.
        training: plain data about its training (samples, steps, losses), kept for the record.

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    from latentkit.io import atomic_path

    meta = {
        "format": ENCODER_FORMAT,
        "format_version": ENCODER_FORMAT_VERSION,
        "config": encoder.config.to_dict(),
        "slope": encoder.slope,
        "gain": encoder.gain,
        "network": network,
        "prior": prior_fingerprint(encoder.prior_mean, encoder.prior_colour),
        "training": training or {},
    }
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in encoder.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"latentkit": json.dumps(meta, sort_keys=True)})
    return path


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the safetensors header's tensor entries, the latentkit metadata) of an encoder file, bounded.

    Raises:
        InputError: a missing file, a header over :data:`MAX_HEADER_BYTES`, or one that is not a latentkit
            encoder of a format version this release reads.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"encoder file {path} does not exist; train one with 'latentkit train-encoder --out {path}'")
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise InputError(f"{path} is not a safetensors encoder file (shorter than its header)")
        (size,) = struct.unpack("<Q", raw)
        if size > MAX_HEADER_BYTES or size > path.stat().st_size - 8:
            raise InputError(f"{path} is not a latentkit encoder: its header claims {size} bytes "
                             f"(at most {MAX_HEADER_BYTES} read)")
        try:
            header = json.loads(fh.read(size))
            meta = json.loads(header.get("__metadata__", {}).get("latentkit", "null"))
        except (ValueError, AttributeError) as err:
            raise InputError(f"{path} is not a latentkit encoder: unreadable header ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != ENCODER_FORMAT:
        raise InputError(f"{path} is not a latentkit encoder file (no '{ENCODER_FORMAT}' metadata in its header)")
    if meta.get("format_version") != ENCODER_FORMAT_VERSION:
        raise InputError(f"{path} is an encoder of format version {meta.get('format_version')!r}; this release "
                         f"reads version {ENCODER_FORMAT_VERSION}: retrain it with 'latentkit train-encoder'")
    header.pop("__metadata__", None)
    return header, meta


def load_encoder(path: str | os.PathLike, G: Generator | None = None, *,
                 device: torch.device | str | None = None) -> ResNetEncoder:
    """Read an encoder file written by :func:`save_encoder` (no pickle; every tensor checked).

    Args:
        path: the ``.safetensors`` file.
        G: the generator it will be used with: the file must have been trained for it (same sha256, or,
            for a generator with no sha256, the same architecture and shapes). None skips that check.
        device: where to put it (default: ``G``'s device, else CPU).

    Returns:
        The :class:`~latentkit.projection.encoder.ResNetEncoder` in eval mode, gradients off.

    Raises:
        InputError: not an encoder file, another format version, a file for another network, or tensors
            whose names, shapes, dtypes or values do not fit its architecture.
    """
    from safetensors import safe_open

    header, meta = read_header(path)
    config = EncoderConfig.from_dict(meta.get("config"))
    slope, gain, network = meta.get("slope"), meta.get("gain"), meta.get("network")
    if not isinstance(slope, (int, float)) or not isinstance(gain, (int, float)) or not isinstance(network, dict):
        raise InputError(f"{path}: the encoder header lacks slope, gain or network")
    if G is not None:
        _check_network(path, network, network_fingerprint(G))
    w_dim = config.w_dim
    enc = ResNetEncoder(config, torch.zeros(w_dim), torch.zeros(w_dim, w_dim), float(slope), float(gain))
    expected = {k: v for k, v in enc.state_dict().items()}
    names = set(header)
    if names != set(expected):
        missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
        raise InputError(f"{path}: the tensors do not fit the encoder's architecture (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    for name, entry in header.items():
        shape = list(expected[name].shape)
        if not isinstance(entry, dict) or entry.get("dtype") != "F32" or entry.get("shape") != shape:
            raise InputError(f"{path}: tensor {name} is {entry.get('dtype')} {entry.get('shape')}, expected F32 {shape}")
    state = {}
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        for name in expected:
            t = fh.get_tensor(name)
            if not bool(torch.isfinite(t).all()):
                raise InputError(f"{path}: tensor {name} holds NaN or infinite values; the file is damaged")
            state[name] = t
    if meta.get("prior") != prior_fingerprint(state["prior_mean"], state["prior_colour"]):
        raise InputError(f"{path}: the stored prior does not match its fingerprint; the file is damaged")
    enc.load_state_dict(state, strict=True)
    target = device if device is not None else (G.w_avg.device if G is not None else "cpu")
    return enc.to(target).eval().requires_grad_(False)


def encoder_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The latentkit metadata of an encoder file (config, network, prior, training), without its tensors."""
    return read_header(path)[1]


def _check_network(path: str | os.PathLike, theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    if theirs.get("sha256") and ours.get("sha256"):
        same = theirs["sha256"] == ours["sha256"]
    else:
        same = all(theirs.get(k) == ours.get(k) for k in ours if k != "sha256")
    if not same:
        name = theirs.get("sha256", "")[:12] or theirs.get("architecture")
        raise InputError(
            f"encoder {path} was trained for another network ({name}, {theirs.get('architecture')}, "
            f"{theirs.get('img_resolution')} px) than this one ({(ours.get('sha256') or '')[:12] or ours.get('architecture')}, "
            f"{ours.get('architecture')}, {ours.get('img_resolution')} px): train one with 'latentkit train-encoder'")
