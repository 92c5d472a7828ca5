"""Build a :class:`~latentkit.nets.stylegan2.StyleGAN2Generator` from a ``G_ema`` record.

Works for both NVIDIA implementations of StyleGAN2: stylegan2-ada-pytorch (``training/networks.py``,
synthesis options nested in ``synthesis_kwargs``) and the stylegan3 repo (``networks_stylegan2.py``,
options flat, other defaults). Neither layout's constructor defaults are guessed: every option is read
where the original stored its effective value, on the sub-module that uses it (``conv_clamp`` and
``use_noise`` of each ``SynthesisLayer``, ``use_fp16`` / ``architecture`` / ``is_last`` of each
``SynthesisBlock``, the gains of every ``FullyConnectedLayer``), and channel counts come from tensor
shapes. Every tensor is then loaded strictly, FIR filters included.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from latentkit.errors import CheckpointError
from latentkit.nets.stylegan2 import BlockConfig, MappingConfig, StyleGAN2Generator

if TYPE_CHECKING:
    from latentkit.load.safe_pickle import ModuleRecord

__all__ = ["build_stylegan2", "translate_key"]

logger = logging.getLogger(__name__)

# Effective per-layer values copied from the record onto our modules, by module type.
_LAYER_ATTRS = {
    "FullyConnectedLayer": ("activation", "weight_gain", "bias_gain"),
    "SynthesisLayer": ("up", "padding", "activation", "act_gain", "conv_clamp", "use_noise"),
    "ToRGBLayer": ("conv_clamp", "weight_gain"),
    "SkipConv": ("weight_gain",),
}


def translate_key(key: str) -> str:
    """Checkpoint state-dict key -> latentkit key (``mapping.`` -> ``mapping_net.``, ``mapping.w_avg`` ->
    ``w_avg``, ``synthesis.`` -> ``synthesis_net.``)."""
    if key == "mapping.w_avg":
        return "w_avg"
    for old, new in (("mapping.", "mapping_net."), ("synthesis.", "synthesis_net.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _attr(record: ModuleRecord, name: str, *fallbacks: dict[str, Any]) -> Any:
    """An attribute of ``record``, else the first of ``fallbacks`` (kwargs dicts) that has it."""
    value = record.attr(name, _ABSENT)
    if value is not _ABSENT:
        return value
    for kwargs in fallbacks:
        if name in kwargs:
            return kwargs[name]
    raise CheckpointError(
        f"G_ema record {record.class_name!r} has no attribute or constructor argument {name!r}; "
        "this is not a StyleGAN2 network pickle from stylegan2-ada-pytorch or the stylegan3 repo"
    )


_ABSENT = object()


def _param(record: ModuleRecord, name: str, path: str) -> torch.Tensor:
    tensors = {**record.parameters, **record.buffers}
    if name not in tensors:
        raise CheckpointError(f"G_ema is missing the tensor {path}.{name} needed to size the network")
    return tensors[name]


def _mapping_config(g_ema: ModuleRecord) -> MappingConfig:
    mapping = g_ema["mapping"]
    num_layers = int(_attr(mapping, "num_layers", mapping.init_kwargs))
    fcs = [mapping[f"fc{i}"] for i in range(num_layers)]
    first = fcs[0]
    layer_features = int(_param(first, "weight", "mapping.fc0").shape[0]) if num_layers > 1 else None
    embed_features = None
    if "embed" in mapping.children:
        embed_features = int(_param(mapping["embed"], "weight", "mapping.embed").shape[0])
    return MappingConfig(
        num_layers=num_layers,
        layer_features=layer_features,
        embed_features=embed_features,
        lr_multiplier=float(_attr(first, "bias_gain", first.init_kwargs)),
        activation=str(_attr(first, "activation", first.init_kwargs)),
    )


def _block_config(block: ModuleRecord, name: str) -> BlockConfig:
    conv1 = block["conv1"]
    weight = _param(conv1, "weight", f"synthesis.{name}.conv1")
    kwargs = block.init_kwargs
    fused = block.attr("fused_modconv_default", None)
    if fused == "inference_only":
        fused = True  # stylegan3 repo: fused whenever not training
    elif fused is not None:
        fused = bool(fused)
    clamp = _attr(conv1, "conv_clamp", conv1.init_kwargs)
    return BlockConfig(
        resolution=int(_attr(block, "resolution", kwargs)),
        in_channels=int(_attr(block, "in_channels", dict(enumerate(block.init_args)))),
        out_channels=int(weight.shape[0]),
        is_last=bool(_attr(block, "is_last", kwargs)),
        architecture=str(block.attr("architecture", kwargs.get("architecture", "skip"))),
        use_fp16=bool(block.attr("use_fp16", kwargs.get("use_fp16", False))),
        conv_clamp=None if clamp is None else float(clamp),
        kernel_size=int(weight.shape[-1]),
        use_noise=bool(conv1.attr("use_noise", True)),
        activation=str(conv1.attr("activation", "lrelu")),
        resample_filter_shape=tuple(_param(block, "resample_filter", f"synthesis.{name}").shape),
        fused_modconv=fused,
    )


def _copy_layer_attrs(generator: StyleGAN2Generator, g_ema: ModuleRecord) -> None:
    """Put the record's effective per-layer values (gains, clamps, padding) on our modules."""
    for name, module in generator.named_modules():
        attrs = _LAYER_ATTRS.get(type(module).__name__)
        if not attrs or not name:
            continue
        head, _, rest = name.partition(".")
        record = g_ema[{"mapping_net": "mapping", "synthesis_net": "synthesis"}.get(head, head) + "." + rest]
        for attr in attrs:
            value = record.attr(attr, _ABSENT)
            if value is not _ABSENT:
                setattr(module, attr, value)


def build_stylegan2(g_ema: ModuleRecord) -> StyleGAN2Generator:
    """Rebuild NVIDIA's StyleGAN2 ``G_ema`` as a latentkit generator and load all of its tensors.

    Args:
        g_ema: the ``G_ema`` record of a stylegan2-ada-pytorch or stylegan3-repo StyleGAN2 pickle, as read
            by :func:`latentkit.load.safe_pickle.read_network_pickle`.

    Returns:
        The generator in eval mode, float32, on the CPU, gradients off.

    Raises:
        CheckpointError: if the record lacks a sub-network or attribute, has a tensor the network does not
            have or lacks one it needs (named), or a tensor of the wrong shape.
    """
    top = g_ema.init_kwargs
    synthesis = g_ema["synthesis"]
    resolutions = [int(r) for r in _attr(synthesis, "block_resolutions")]
    blocks = [_block_config(synthesis[f"b{res}"], f"b{res}") for res in resolutions]
    generator = StyleGAN2Generator(
        z_dim=int(_attr(g_ema, "z_dim", top)),
        c_dim=int(_attr(g_ema, "c_dim", top)),
        w_dim=int(_attr(g_ema, "w_dim", top)),
        img_resolution=int(_attr(g_ema, "img_resolution", top)),
        img_channels=int(_attr(g_ema, "img_channels", top)),
        mapping=_mapping_config(g_ema),
        blocks=blocks,
    )
    stored_num_ws = g_ema.attr("num_ws", None)
    if stored_num_ws is not None and int(stored_num_ws) != generator.num_ws:
        raise CheckpointError(
            f"G_ema says num_ws={stored_num_ws} but its synthesis blocks {resolutions} give {generator.num_ws}"
        )
    _copy_layer_attrs(generator, g_ema)
    _load_tensors(generator, g_ema)
    logger.debug("built StyleGAN2 %dx%d, %d ws, blocks %s", generator.img_resolution,
                 generator.img_resolution, generator.num_ws, resolutions)
    return generator.eval().requires_grad_(False)


def _load_tensors(generator: torch.nn.Module, g_ema: ModuleRecord) -> None:
    stored = {translate_key(key): value for key, value in g_ema.state_dict().items()}
    ours = generator.state_dict()
    missing = [key for key in ours if key not in stored]
    unexpected = [key for key in stored if key not in ours]
    if missing or unexpected:
        raise CheckpointError(
            "G_ema tensors do not match the StyleGAN2 network built from its configuration: "
            f"missing {missing or 'none'}, unexpected {unexpected or 'none'} (latentkit names; "
            "'mapping_net.' / 'synthesis_net.' are the checkpoint's 'mapping.' / 'synthesis.')"
        )
    for key, value in stored.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise CheckpointError(
                f"G_ema tensor {key} has shape {list(value.shape)}, expected {list(ours[key].shape)}"
            )
    generator.load_state_dict({key: value.to(torch.float32) for key, value in stored.items()}, strict=True)
