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
from latentkit.load.build import MAX_SIZE, as_bool, as_float, as_int, assign_tensors, build_on_meta
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
    num_layers = as_int(_attr(mapping, "num_layers", mapping.init_kwargs), "mapping.num_layers", lo=1, hi=64)
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
        lr_multiplier=as_float(_attr(first, "bias_gain", first.init_kwargs), "mapping.fc0.bias_gain", lo=0),
        activation=_text(_attr(first, "activation", first.init_kwargs), "mapping.fc0.activation"),
    )


def _block_config(block: ModuleRecord, name: str) -> BlockConfig:
    conv1 = block["conv1"]
    weight = _param(conv1, "weight", f"synthesis.{name}.conv1")
    kwargs = block.init_kwargs
    fused = block.attr("fused_modconv_default", None)
    if fused == "inference_only":
        fused = True  # stylegan3 repo: fused whenever not training
    elif fused is not None:
        fused = as_bool(fused, f"synthesis.{name}.fused_modconv_default")
    clamp = _attr(conv1, "conv_clamp", conv1.init_kwargs)
    return BlockConfig(
        resolution=as_int(_attr(block, "resolution", kwargs), f"synthesis.{name}.resolution", lo=4, hi=8192),
        in_channels=as_int(_attr(block, "in_channels", dict(enumerate(block.init_args))), f"synthesis.{name}.in_channels"),
        out_channels=int(weight.shape[0]),
        is_last=as_bool(_attr(block, "is_last", kwargs), f"synthesis.{name}.is_last"),
        architecture=_text(block.attr("architecture", kwargs.get("architecture", "skip")), f"synthesis.{name}.architecture"),
        use_fp16=as_bool(block.attr("use_fp16", kwargs.get("use_fp16", False)), f"synthesis.{name}.use_fp16"),
        conv_clamp=None if clamp is None else as_float(clamp, f"synthesis.{name}.conv1.conv_clamp", lo=0),
        kernel_size=int(weight.shape[-1]),
        use_noise=as_bool(conv1.attr("use_noise", True), f"synthesis.{name}.conv1.use_noise"),
        activation=_text(conv1.attr("activation", "lrelu"), f"synthesis.{name}.conv1.activation"),
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
                setattr(module, attr, _checked_layer_attr(value, f"{name}.{attr}"))


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
    stored = _attr(synthesis, "block_resolutions")
    if not isinstance(stored, (list, tuple)) or not 1 <= len(stored) <= 12:
        raise CheckpointError(f"G_ema.synthesis.block_resolutions must be a list of 1 to 12 resolutions, got {stored!r:.60}")
    resolutions = [as_int(r, "synthesis.block_resolutions", lo=4, hi=8192) for r in stored]
    blocks = [_block_config(synthesis[f"b{res}"], f"b{res}") for res in resolutions]
    sizes = {
        "z_dim": as_int(_attr(g_ema, "z_dim", top), "G_ema.z_dim"),
        "c_dim": as_int(_attr(g_ema, "c_dim", top), "G_ema.c_dim"),
        "w_dim": as_int(_attr(g_ema, "w_dim", top), "G_ema.w_dim", lo=1),
        "img_resolution": as_int(_attr(g_ema, "img_resolution", top), "G_ema.img_resolution", lo=4, hi=8192),
        "img_channels": as_int(_attr(g_ema, "img_channels", top), "G_ema.img_channels", lo=1, hi=16),
    }
    mapping = _mapping_config(g_ema)
    generator = build_on_meta(lambda: StyleGAN2Generator(**sizes, mapping=mapping, blocks=blocks), "G_ema")
    stored_num_ws = g_ema.attr("num_ws", None)
    if stored_num_ws is not None and as_int(stored_num_ws, "G_ema.num_ws") != generator.num_ws:
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
    assign_tensors(generator, stored, where="G_ema (StyleGAN2; 'mapping_net.' / 'synthesis_net.' are the "
                   "checkpoint's 'mapping.' / 'synthesis.')")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise CheckpointError(f"{what} must be a short string, got {type(value).__name__} {value!r:.40}")
    return value


def _checked_layer_attr(value: Any, what: str) -> Any:
    """Per-layer values copied onto modules: finite numbers, short strings, None, booleans, int pairs."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, what)
    if isinstance(value, (int, float)):
        return as_float(value, what) if isinstance(value, float) else as_int(value, what, lo=-MAX_SIZE)
    if isinstance(value, (list, tuple)) and len(value) <= 4:
        return type(value)(as_int(v, what, lo=-MAX_SIZE) for v in value)
    raise CheckpointError(f"{what} has an unsupported type {type(value).__name__}")
