"""``G_ema`` records of StyleGAN3 and StyleGAN-XL pickles -> latentkit generators.

The configuration is read from the records' stored attributes (``layer_names``, each layer's
``in_size``/``out_size``, ``up_factor``, ``up_taps``, ``padding``, ``conv_clamp`` ...), which hold the
effective values whatever the constructor defaults of the code base that wrote the file were. Filters,
Fourier frequencies and phases, ``magnitude_ema`` and the input transform are loaded, never recomputed.
Tensors are loaded strictly: every key of the file must map to a tensor of the network and vice versa.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.errors import CheckpointError
from latentkit.load.build import as_bool, as_float, as_int, assign_tensors, build_on_meta
from latentkit.nets.stylegan3 import SynthesisInputSpec, SynthesisLayerSpec, StyleGAN3Generator
from latentkit.nets.stylegan_xl import StyleGANXLGenerator

if TYPE_CHECKING:
    from latentkit.load.safe_pickle import ModuleRecord
    from latentkit.nets.generator import Generator

__all__ = ["build_stylegan3", "build_stylegan_xl", "translate_key", "load_state_strict"]

logger = logging.getLogger(__name__)


def _pair(value: Any, what: str) -> tuple[int, int]:
    """``(width, height)`` from an int or a 2-element array/list (NVIDIA stores ``np.broadcast_to(size, [2])``)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.size in (1, 2) and value.ndim <= 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        value = [value]
    if len(value) not in (1, 2):
        raise CheckpointError(f"{what} must be one or two integer pixel sizes, got {value!r:.60}")
    pair = [as_int(v, what, lo=1, hi=8192) for v in value]
    return pair[0], pair[-1]


def _check_class(record: ModuleRecord, expected: str, where: str) -> None:
    if record.class_name != expected:
        raise CheckpointError(
            f"{where} is a {record.class_name!r}, expected {expected!r}; this file is not a "
            "StyleGAN3 / StyleGAN-XL network pickle"
        )


def _input_spec(record: ModuleRecord) -> SynthesisInputSpec:
    where = "input"
    _check_class(record, "SynthesisInput", "G_ema.synthesis.input")
    return SynthesisInputSpec(
        channels=as_int(record.attr("channels"), f"synthesis.{where}.channels"),
        size=_pair(record.attr("size"), "synthesis.input.size"),
        sampling_rate=as_float(record.attr("sampling_rate"), f"synthesis.{where}.sampling_rate", lo=0),
        bandwidth=as_float(record.attr("bandwidth"), f"synthesis.{where}.bandwidth", lo=0),
    )


def _layer_spec(name: str, record: ModuleRecord) -> SynthesisLayerSpec:
    _check_class(record, "SynthesisLayer", f"G_ema.synthesis.{name}")
    where = name
    stored = record.attr("padding")
    if not isinstance(stored, (list, tuple, np.ndarray)) or len(stored) != 4:
        raise CheckpointError(f"synthesis.{name}.padding must have 4 entries, got {stored!r:.60}")
    padding = [as_int(p, f"synthesis.{name}.padding", lo=-4096, hi=4096) for p in stored]
    if len(padding) != 4:
        raise CheckpointError(f"synthesis.{name}.padding must have 4 entries, got {padding}")
    clamp = record.attr("conv_clamp", None)
    return SynthesisLayerSpec(
        name=name,
        in_channels=as_int(record.attr("in_channels"), f"synthesis.{where}.in_channels"),
        out_channels=as_int(record.attr("out_channels"), f"synthesis.{where}.out_channels"),
        in_size=_pair(record.attr("in_size"), f"synthesis.{name}.in_size"),
        out_size=_pair(record.attr("out_size"), f"synthesis.{name}.out_size"),
        conv_kernel=as_int(record.attr("conv_kernel"), f"synthesis.{where}.conv_kernel"),
        up=as_int(record.attr("up_factor"), f"synthesis.{where}.up_factor"),
        down=as_int(record.attr("down_factor"), f"synthesis.{where}.down_factor"),
        up_taps=as_int(record.attr("up_taps"), f"synthesis.{where}.up_taps"),
        down_taps=as_int(record.attr("down_taps"), f"synthesis.{where}.down_taps"),
        down_radial=as_bool(record.attr("down_radial", False), f"synthesis.{where}.down_radial"),
        padding=(padding[0], padding[1], padding[2], padding[3]),
        is_torgb=as_bool(record.attr("is_torgb"), f"synthesis.{where}.is_torgb"),
        is_critically_sampled=as_bool(record.attr("is_critically_sampled", False), f"synthesis.{where}.is_critically_sampled"),
        conv_clamp=None if clamp is None else as_float(clamp, f"synthesis.{name}.conv_clamp", lo=0),
        use_fp16=as_bool(record.attr("use_fp16", False), f"synthesis.{where}.use_fp16"),
    )


def _synthesis_config(g_ema: ModuleRecord) -> dict[str, Any]:
    """Constructor arguments shared by both generators, read from the record tree."""
    synthesis = g_ema["synthesis"]
    names = synthesis.attr("layer_names")
    if not isinstance(names, (list, tuple)) or not 0 < len(names) <= 64 or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"G_ema.synthesis.layer_names must be a non-empty list, got {names!r}")
    extra = set(synthesis.children) - {"input", *names}
    if extra:
        raise CheckpointError(
            f"G_ema.synthesis has children {sorted(extra)} that are not in its layer_names; "
            "the file does not follow the StyleGAN3 layout"
        )
    return {
        "z_dim": as_int(g_ema.attr("z_dim"), "G_ema.z_dim"),
        "c_dim": as_int(g_ema.attr("c_dim"), "G_ema.c_dim"),
        "w_dim": as_int(g_ema.attr("w_dim"), "G_ema.w_dim"),
        "img_resolution": as_int(g_ema.attr("img_resolution"), "G_ema.img_resolution"),
        "img_channels": as_int(g_ema.attr("img_channels"), "G_ema.img_channels"),
        "input_spec": _input_spec(synthesis["input"]),
        "layer_specs": [_layer_spec(name, synthesis[name]) for name in names],
        "output_scale": as_float(synthesis.attr("output_scale", 1.0), "synthesis.output_scale"),
    }


def _mapping_config(mapping: ModuleRecord) -> dict[str, Any]:
    num_layers = as_int(mapping.attr("num_layers"), "mapping.num_layers", lo=1, hi=64)
    if "fc0" not in mapping.children:
        raise CheckpointError(f"G_ema.mapping has no fc0 layer (children: {sorted(mapping.children)})")
    return {"mapping_layers": num_layers, "mapping_lr_multiplier": as_float(mapping["fc0"].attr("bias_gain"), "mapping.fc0.bias_gain", lo=0)}


def translate_key(key: str) -> str:
    """NVIDIA ``G_ema.state_dict()`` key -> key of :class:`~latentkit.nets.stylegan3.FourierGenerator`.

    ``mapping.w_avg`` -> ``w_avg``; ``mapping.X`` -> ``mapping_net.X``; ``synthesis.input.X`` ->
    ``synthesis_net.input.X``; ``synthesis.L3_36_32.X`` -> ``synthesis_net.layers.L3_36_32.X``. Other keys
    are returned unchanged (and then reported as unexpected).
    """
    if key == "mapping.w_avg":
        return "w_avg"
    if key.startswith("mapping."):
        return "mapping_net." + key[len("mapping."):]
    if key.startswith("synthesis.input."):
        return "synthesis_net." + key[len("synthesis."):]
    if key.startswith("synthesis."):
        return "synthesis_net.layers." + key[len("synthesis."):]
    return key


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                      translate: Callable[[str], str], *, where: str = "G_ema") -> None:
    """Copy checkpoint tensors into ``module`` (float32, CPU), refusing any missing or unexpected key.

    Args:
        module: the freshly built network.
        state: checkpoint key -> tensor (e.g. ``ModuleRecord.state_dict()``).
        translate: checkpoint key -> module key.
        where: name used in error messages.

    Raises:
        CheckpointError: naming the first missing or unexpected key, or a tensor of the wrong shape.
    """
    targets = module.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        ours = translate(key)
        if ours not in targets:
            raise CheckpointError(
                f"{where}: unexpected tensor {key!r} {list(tensor.shape)}: the rebuilt {type(module).__name__} "
                "has no such parameter or buffer (unsupported variant of the architecture?)"
            )
        if tuple(tensor.shape) != tuple(targets[ours].shape):
            raise CheckpointError(
                f"{where}: tensor {key!r} has shape {list(tensor.shape)}, the rebuilt network expects "
                f"{list(targets[ours].shape)}; the file's stored configuration and its tensors disagree"
            )
        mapped[ours] = tensor.detach().to(device="cpu", dtype=torch.float32)
    missing = [key for key in targets if key not in mapped]
    if missing:
        raise CheckpointError(
            f"{where}: missing tensor for {missing[0]!r} ({len(missing)} missing in all); the file lacks "
            "weights the configuration needs"
        )
    assign_tensors(module, mapped, where=where)


def _finish(net: Generator, g_ema: ModuleRecord) -> Generator:
    stored = g_ema.attr("num_ws", net.num_ws)
    if as_int(stored, "G_ema.num_ws") != net.num_ws:
        raise CheckpointError(
            f"G_ema.num_ws is {stored} but its synthesis network has {net.num_ws - 1} layers "
            f"(num_ws = layers + 1 = {net.num_ws}); the file is inconsistent"
        )
    load_state_strict(net, g_ema.state_dict(), translate_key)
    return net.eval().requires_grad_(False)


def _is_xl_mapping(mapping: ModuleRecord) -> bool:
    """StyleGAN-XL mapping: a projected class embedding, or XL's plain ``torch.nn.Embedding`` table."""
    embed = mapping.children.get("embed")
    return "embed_proj" in mapping.children or (embed is not None and embed.class_name.endswith(".Embedding"))


def build_stylegan3(g_ema: ModuleRecord) -> Generator:
    """Rebuild a StyleGAN3 (config T or R) ``G_ema`` record as a :class:`StyleGAN3Generator`.

    Config R is recognised by its 1x1 convolutions or radial down filters (``conv_kernel == 1`` or any
    ``down_radial`` layer); everything else about the layers comes from their stored attributes. A
    StyleGAN-XL record (class embedding table in the mapping) is passed on to :func:`build_stylegan_xl`.

    Args:
        g_ema: the ``G_ema`` record of :func:`latentkit.load.safe_pickle.read_network_pickle`.

    Returns:
        The generator on the CPU in float32, eval mode, gradients off.

    Raises:
        CheckpointError: if the record is not a StyleGAN3 generator or its tensors do not match.
    """
    mapping = g_ema["mapping"]
    if _is_xl_mapping(mapping):
        # Unconditional StyleGAN-XL nets have no embed_proj but keep XL's embedding table.
        return build_stylegan_xl(g_ema)
    config = _synthesis_config(g_ema)
    config.update(_mapping_config(mapping))
    features = [spec for spec in config["layer_specs"] if not spec.is_torgb]
    radial = any(spec.down_radial for spec in features) or any(spec.conv_kernel == 1 for spec in features)
    architecture = "stylegan3-r" if radial else "stylegan3-t"
    net = build_on_meta(lambda: StyleGAN3Generator(**config, architecture=architecture), "G_ema")
    logger.debug("StyleGAN3 %s: %d layers, %dx%d", net.architecture, len(config["layer_specs"]),
                 net.img_resolution, net.img_resolution)
    return _finish(net, g_ema)


def build_stylegan_xl(g_ema: ModuleRecord) -> Generator:
    """Rebuild a StyleGAN-XL ``G_ema`` record (stem or super-resolution stage) as :class:`StyleGANXLGenerator`.

    Args:
        g_ema: the ``G_ema`` record (class ``Generator`` for a stem, ``SuperresGenerator`` for a stage).

    Returns:
        The generator on the CPU in float32, eval mode, gradients off.

    Raises:
        CheckpointError: if the record is not a StyleGAN-XL generator or its tensors do not match.
    """
    mapping = g_ema["mapping"]
    if not _is_xl_mapping(mapping):
        raise CheckpointError(
            "G_ema.mapping has no StyleGAN-XL class embedding ('embed' table / 'embed_proj'); "
            "this is not a StyleGAN-XL generator (use build_stylegan3)"
        )
    config = _synthesis_config(g_ema)
    config.update(_mapping_config(mapping))
    embedding = mapping["embed"].parameters.get("weight")
    if embedding is None or embedding.ndim != 2:
        raise CheckpointError("G_ema.mapping.embed has no 2-D 'weight' (the class embedding table)")
    head = g_ema.attr("head_layer_names", [])
    if not isinstance(head, (list, tuple)) or not all(isinstance(name, str) for name in head):
        raise CheckpointError(f"G_ema.head_layer_names must be a list of layer names, got {head!r:.60}")
    net = build_on_meta(lambda: StyleGANXLGenerator(
        **config, num_embeddings=int(embedding.shape[0]), embedding_dim=int(embedding.shape[1]),
        head_layer_names=tuple(head),
    ), "G_ema")
    logger.debug("StyleGAN-XL: %d layers (%d super-resolution head layers), %dx%d",
                 len(config["layer_specs"]), len(head), net.img_resolution, net.img_resolution)
    return _finish(net, g_ema)
