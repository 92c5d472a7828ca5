"""rosinality/stylegan2-pytorch checkpoints (``.pt`` / ``.pth``) -> :class:`RosinalityGenerator`.

Files come from ``train.py`` (``g``, ``d``, ``g_ema``, optimizer states, ``args``, ``ada_aug_p``) or from
``convert_weight.py`` (``g_ema``, ``latent_avg``), in PyTorch's zip format or the legacy (pre-1.6) one.
They are read with ``torch.load(weights_only=True)``, whose allow-list is widened only by
``argparse.Namespace`` (train.py's ``args``); any other global makes torch refuse the file and we raise
:class:`~latentkit.errors.CheckpointError` naming it. Nothing in the file is executed.

Nothing in a checkpoint states the architecture, so it is read off the ``g_ema`` keys and shapes:
``style_dim`` from ``style.1.weight``, ``n_mlp`` from the number of ``style.N.weight`` entries, the
resolution from the number of ``to_rgbs`` (``log2(size) - 2``), channels from the convolution weights.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import CheckpointError
from latentkit.load.build import as_int, assign_tensors, build_on_meta
from latentkit.load.torch_file_guard import check_tensor_budget, check_torch_file
from latentkit.nets.rosinality import W_AVG_SAMPLES, W_AVG_SEED, RosinalityGenerator

__all__ = ["load_rosinality", "rosinality_config"]

logger = logging.getLogger(__name__)

_GLOBAL_RE = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")
_SAFE_GLOBALS = [argparse.Namespace]
_STATE_HINT = (
    "save the generator as rosinality's code does: torch.save({'g_ema': g_ema.state_dict(), "
    "'latent_avg': latent_avg}, path)"
)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed; every failure -> CheckpointError."""
    check_torch_file(path)
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL_RE.search(str(err))
        if found:
            raise CheckpointError(
                f"{path}: refused to unpickle the global '{found.group(1)}': a rosinality checkpoint holds "
                f"only tensors, dicts and argparse.Namespace, so this file was not loaded (nothing in it was "
                f"executed). If it is a genuine generator with extra objects, {_STATE_HINT}"
            ) from err
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: torch.load(weights_only=True) refused or could not parse the file ({reason}); "
            f"nothing in it was executed. Expected a torch.save checkpoint of rosinality/stylegan2-pytorch"
        ) from err
    except Exception as err:  # noqa: BLE001 - any parse failure of an untrusted file is a CheckpointError
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable torch.save checkpoint (truncated or corrupted?): {type(err).__name__}: "
            f"{reason}. Download or copy the file again"
        ) from err


def _pick_generator(ckpt: Any, path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The ``g_ema`` state dict and the stored ``latent_avg`` (None if absent)."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"{path}: expected a dict with 'g_ema' (rosinality checkpoint), got a {type(ckpt).__name__}"
        )
    latent_avg = ckpt.get("latent_avg")
    if "g_ema" in ckpt:
        state = ckpt["g_ema"]
    elif "style.1.weight" in ckpt and "input.input" in ckpt:
        logger.info("%s: no 'g_ema' key; the file is a bare generator state dict", path)
        state = ckpt
    else:
        keys = ", ".join(repr(k) for k in ckpt) or "none"
        raise CheckpointError(
            f"{path} has no generator 'g_ema' (keys found: {keys}); pass a checkpoint written by rosinality's "
            f"train.py or convert_weight.py, or {_STATE_HINT}"
        )
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'g_ema' must be a state dict, got a {type(state).__name__}")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    others = sorted(str(k) for k in state if k not in tensors and k != "latent_avg")
    if others:
        raise CheckpointError(f"{path}: 'g_ema' entries {others[:5]} are not tensors; expected a state dict")
    tensors.pop("latent_avg", None)
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(f"{path}: 'latent_avg' must be a tensor, got a {type(latent_avg).__name__}")
    return tensors, latent_avg


def _indices(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted(int(m.group(1)) for k in state if (m := rx.fullmatch(k)))


def _require(state: Mapping[str, torch.Tensor], key: str, ndim: int, path: Path) -> torch.Tensor:
    tensor = state.get(key)
    if tensor is None:
        raise CheckpointError(
            f"{path}: 'g_ema' has no '{key}'; not a rosinality StyleGAN2 generator (arch='stylegan2'; "
            f"swagan checkpoints are not supported)"
        )
    if tensor.ndim != ndim:
        raise CheckpointError(f"{path}: 'g_ema.{key}' must be {ndim}-D, got shape {list(tensor.shape)}")
    return tensor


def rosinality_config(state: Mapping[str, torch.Tensor], path: str | os.PathLike = "<state dict>") -> dict[str, Any]:
    """Constructor arguments of :class:`RosinalityGenerator` derived from a ``g_ema`` state dict.

    Args:
        state: rosinality ``Generator.state_dict()`` (keys such as ``style.1.weight``, ``convs.0.conv.weight``).
        path: file name used in error messages.

    Returns:
        ``{'size', 'style_dim', 'n_mlp', 'channels', 'kernel_size', 'blur_taps', 'img_channels'}``.

    Raises:
        CheckpointError: if a key the architecture needs is missing or inconsistent.
    """
    path = Path(path)
    mlp = _indices(state, r"style\.(\d+)\.weight")
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(
            f"{path}: 'g_ema' mapping layers must be style.1 ... style.N, found indices {mlp or 'none'}"
        )
    style_dim = _require(state, "style.1.weight", 2, path).shape[0]
    blocks = _indices(state, r"to_rgbs\.(\d+)\.conv\.weight")
    if blocks != list(range(len(blocks))):
        raise CheckpointError(f"{path}: 'g_ema' ToRGB layers must be to_rgbs.0 ... to_rgbs.K, found {blocks}")
    size = 2 ** (len(blocks) + 2)
    const = _require(state, "input.input", 4, path)
    conv1 = _require(state, "conv1.conv.weight", 5, path)
    channels = {4: const.shape[1]}
    for b in range(len(blocks)):
        channels[2 ** (b + 3)] = _require(state, f"convs.{2 * b}.conv.weight", 5, path).shape[1]
    blur_taps = _require(state, "convs.0.conv.blur.kernel", 2, path).shape[0] if blocks else 4
    num_noise = len(_indices(state, r"noises\.noise_(\d+)"))
    if num_noise != 2 * len(blocks) + 1:
        raise CheckpointError(
            f"{path}: a {size}x{size} generator has {2 * len(blocks) + 1} noise buffers noises.noise_i, "
            f"'g_ema' has {num_noise}"
        )
    if len(blocks) > 11 or len(mlp) > 64:
        raise CheckpointError(f"{path}: {len(blocks)} ToRGB layers / {len(mlp)} mapping layers is beyond any StyleGAN2")
    return {
        "size": size,
        "style_dim": as_int(style_dim, f"{path}: style_dim", lo=1),
        "n_mlp": len(mlp),
        "channels": {res: as_int(ch, f"{path}: channels at {res}x{res}", lo=1) for res, ch in channels.items()},
        "kernel_size": as_int(conv1.shape[-1], f"{path}: kernel_size", lo=1, hi=15),
        "blur_taps": as_int(blur_taps, f"{path}: blur taps", lo=1, hi=15),
        "img_channels": as_int(_require(state, "to_rgb1.conv.weight", 5, path).shape[1], f"{path}: img_channels", lo=1, hi=16),
    }


def _load_strict(net: RosinalityGenerator, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Copy every tensor of ``state`` into ``net``; keys and shapes must match exactly (``w_avg`` aside)."""
    expected = {k: v for k, v in net.state_dict().items() if k != "w_avg"}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: 'g_ema' does not match a rosinality StyleGAN2 generator: missing keys {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}"
        )
    wrong = [f"{k}: file {list(state[k].shape)}, expected {list(v.shape)}" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{path}: 'g_ema' tensor shapes are inconsistent: {'; '.join(wrong[:5])}")
    assign_tensors(net, {**{k: state[k] for k in expected}, "w_avg": torch.zeros(net.w_avg.shape)}, where=str(path))


def load_rosinality(path: str | os.PathLike) -> RosinalityGenerator:
    """Load the ``g_ema`` generator of a rosinality/stylegan2-pytorch checkpoint, executing nothing from it.

    ``w_avg`` is the stored ``latent_avg`` when the file has one (``convert_weight.py`` files); otherwise
    (``train.py`` files) it is estimated as the mean of :data:`~latentkit.nets.rosinality.W_AVG_SAMPLES`
    mapped z drawn with seed :data:`~latentkit.nets.rosinality.W_AVG_SEED`, and a warning says so.
    ``generator.w_avg_source`` records which.

    Args:
        path: a ``.pt`` / ``.pth`` file (zip or legacy torch.save format).

    Returns:
        A :class:`~latentkit.nets.rosinality.RosinalityGenerator` on the CPU, float32, eval mode, gradients off.

    Raises:
        CheckpointError: the file is missing, truncated, not a torch checkpoint, references a global outside
            the allow-list (the message names it), has no ``g_ema``, or its tensors do not fit the architecture.

    Example:
        >>> G = load_rosinality("stylegan2-ffhq-config-f.pt")  # doctest: +SKIP
        >>> G.num_ws, G.w_dim  # (18, 512)
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"rosinality checkpoint not found: {path} (no such file); check the path")
    ckpt = _torch_load(path)
    state, latent_avg = _pick_generator(ckpt, path)
    config = rosinality_config(state, path)
    logger.debug("%s: rosinality generator %s", path, config)
    check_tensor_budget(state.values(), path=path)
    net = build_on_meta(lambda: RosinalityGenerator(**config), str(path))
    _load_strict(net, state, path)
    if latent_avg is not None:
        if latent_avg.numel() != net.style_dim:
            raise CheckpointError(
                f"{path}: 'latent_avg' must have {net.style_dim} values ([style_dim] or [1, style_dim]), "
                f"got shape {list(latent_avg.shape)}"
            )
        with torch.no_grad():
            net.w_avg.copy_(latent_avg.reshape(-1).to(torch.float32))
        net.w_avg_source = "latent_avg stored in the checkpoint"
    else:
        net.estimate_w_avg(W_AVG_SAMPLES, seed=W_AVG_SEED)
        warnings.warn(
            f"{path} stores no 'latent_avg': w_avg (the truncation centre) was estimated as the mean of "
            f"{W_AVG_SAMPLES} mapped z (seed {W_AVG_SEED}); rosinality's generate.py uses its own random "
            f"mean_latent(4096), so truncated images differ slightly from its output. Set G.w_avg to "
            f"override it",
            UserWarning,
            stacklevel=2,
        )
    net.source = os.fspath(path)
    return net.eval().requires_grad_(False)
