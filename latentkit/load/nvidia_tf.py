"""NVIDIA's original TensorFlow StyleGAN2 pickles (StyleGAN2, StyleGAN2-ADA TF) -> a latentkit StyleGAN2.

The file is read as data by :mod:`latentkit.load.tf_pickle`. The conversion is the one NVIDIA documents
in stylegan2-ada-pytorch's ``legacy.py`` (facts of the format, re-implemented here):

* options come from the generator's ``static_kwargs`` with the TF defaults (``latent_size`` 512,
  ``dlatent_size`` 512, ``resolution`` 1024, ``mapping_layers`` 8, ``mapping_lrmul`` 0.01, ``architecture``
  ``'skip'``, ``resample_kernel`` ``[1, 3, 3, 1]``, ...); an unknown keyword is refused, as NVIDIA does;
  fp16 settings (``num_fp16_res``) only mark blocks, float32 is computed;
* channel counts are read off the variables' shapes;
* dense weights ``[in, out]`` are transposed; convolution weights ``[kh, kw, in, out]`` become
  ``[out, in, kh, kw]``, those of the up-sampling ``Conv0_up`` and the resnet ``Skip`` also flipped in space;
  the style biases (``mod_bias``) are stored minus one; noise inputs ``synthesis/noise{i}`` are
  ``[1, 1, res, res]``; ``ToRGB_lod{k}`` layers mean the ``'orig'`` architecture.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.errors import CheckpointError
from latentkit.load.tf_pickle import TFNetwork, read_tf_pickle
from latentkit.nets.ops import setup_filter
from latentkit.nets.stylegan2 import BlockConfig, MappingConfig, StyleGAN2Generator

__all__ = ["load_tf_pickle", "convert_tf_generator", "tf_generator_options", "TF_DEFAULTS"]

logger = logging.getLogger(__name__)

TF_DEFAULTS: dict[str, Any] = {
    "latent_size": 512,
    "label_size": 0,
    "dlatent_size": 512,
    "resolution": 1024,
    "num_channels": 3,
    "mapping_layers": 8,
    "label_fmaps": None,
    "mapping_fmaps": None,
    "mapping_nonlinearity": "lrelu",
    "mapping_lrmul": 0.01,
    "w_avg_beta": 0.995,
    "fmap_base": 16384,
    "fmap_max": 512,
    "num_fp16_res": 0,
    "conv_clamp": None,
    "architecture": "skip",
    "resample_kernel": [1, 3, 3, 1],
    "use_noise": True,
    "nonlinearity": "lrelu",
}
"""The TF generator keywords NVIDIA's conversion knows, with the defaults it assumes."""

_IGNORED = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure", "conditioning", "fused_modconv")


def tf_generator_options(net: TFNetwork) -> dict[str, Any]:
    """The generator's effective TF options: ``static_kwargs`` over :data:`TF_DEFAULTS` (None -> default).

    Raises:
        CheckpointError: a keyword the conversion does not know (named), or a version below 4.
    """
    if net.version < 4:
        raise CheckpointError(
            f"TensorFlow network {net.name!r} has pickle version {net.version}; versions below 4 (pre-StyleGAN2 "
            "TensorFlow code) cannot be converted"
        )
    unknown = sorted(set(net.static_kwargs) - set(TF_DEFAULTS) - set(_IGNORED))
    if unknown:
        raise CheckpointError(
            f"TensorFlow network {net.name!r} has static keyword {unknown[0]!r}, which NVIDIA's conversion does "
            f"not know (known: {sorted(TF_DEFAULTS)}); this is not a StyleGAN2 generator latentkit can convert"
        )
    options = dict(TF_DEFAULTS)
    for key, value in net.static_kwargs.items():
        if key in TF_DEFAULTS and value is not None:
            options[key] = value
    return options


class _Vars:
    """The generator's TF variables by full name, with errors that name what is missing or misshapen."""

    def __init__(self, variables: dict[str, np.ndarray], name: str) -> None:
        self.variables, self.name = variables, name

    def __contains__(self, key: str) -> bool:
        return key in self.variables

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.variables:
            raise CheckpointError(
                f"TensorFlow network {self.name!r} lacks the variable {key!r} needed by its configuration"
            )
        return self.variables[key]

    def shape(self, key: str, ndim: int) -> tuple[int, ...]:
        value = self[key]
        if value.ndim != ndim:
            raise CheckpointError(f"TensorFlow variable {key!r} has shape {list(value.shape)}, expected {ndim} dims")
        return tuple(int(n) for n in value.shape)


def _collect(net: TFNetwork, options: dict[str, Any]) -> tuple[_Vars, str]:
    variables = net.all_variables()
    architecture = str(options["architecture"])
    resolution = int(options["resolution"])
    for key, value in list(variables.items()):
        match = re.fullmatch(r"synthesis/ToRGB_lod(\d+)/(.*)", key)
        if match:
            res = resolution // (2 ** int(match.group(1)))
            variables[f"synthesis/{res}x{res}/ToRGB/{match.group(2)}"] = value
            architecture = "orig"
    return _Vars(variables, net.name), architecture


def _block_configs(tf: _Vars, options: dict[str, Any], architecture: str) -> list[BlockConfig]:
    resolution = int(options["resolution"])
    log2 = int(math.log2(resolution)) if resolution > 0 else 0
    if resolution < 4 or 2**log2 != resolution:
        raise CheckpointError(f"TensorFlow generator resolution must be a power of two >= 4, got {resolution}")
    kernel = np.asarray(options["resample_kernel"], dtype=np.float64)
    filter_shape = tuple(setup_filter(kernel.tolist()).shape)
    clamp = options["conv_clamp"]
    fp16_resolution = max(2 ** (log2 + 1 - int(options["num_fp16_res"])), 8)
    blocks, in_channels = [], 0
    for res in (2**i for i in range(2, log2 + 1)):
        conv = f"synthesis/{res}x{res}/" + ("Conv" if res == 4 else "Conv1")
        kh, kw, _, out_channels = tf.shape(conv + "/weight", 4)
        blocks.append(BlockConfig(
            resolution=res, in_channels=in_channels, out_channels=out_channels, is_last=res == resolution,
            architecture=architecture, use_fp16=res >= fp16_resolution,
            conv_clamp=None if clamp is None else float(clamp), kernel_size=kh,
            use_noise=bool(options["use_noise"]), activation=str(options["nonlinearity"]),
            resample_filter_shape=filter_shape,
        ))
        in_channels = out_channels
    return blocks


def _noise_index(res: str, conv: str) -> int:
    return 0 if res == "4" else int(math.log2(int(res))) * 2 - (5 if conv == "0" else 4)


def _conv(key: str, flip: bool = False) -> Callable[[_Vars], np.ndarray]:
    def value(tf: _Vars) -> np.ndarray:
        weight = tf[key]  # [kh, kw, in, out]
        if weight.ndim != 4:
            raise CheckpointError(f"TensorFlow variable {key!r} has shape {list(weight.shape)}, expected 4 dims")
        if flip:
            weight = weight[::-1, ::-1]
        return weight.transpose(3, 2, 0, 1)  # [out, in, kh, kw]
    return value


def _rules() -> list[tuple[str, Callable[..., Callable[[_Vars], np.ndarray]]]]:
    """latentkit state-dict key pattern -> (match groups -> function of the TF variables)."""
    def get(key: str, fn: Callable[[np.ndarray], np.ndarray] = lambda v: v) -> Callable[[_Vars], np.ndarray]:
        return lambda tf: fn(tf[key])

    def dense_t(v: np.ndarray) -> np.ndarray:
        if v.ndim != 2:
            raise CheckpointError(f"a TensorFlow dense weight has shape {list(v.shape)}, expected 2 dims")
        return v.T

    def layer(res: str, conv: str) -> str:
        if res == "4":
            return "synthesis/4x4/Conv"
        return f"synthesis/{res}x{res}/" + ("Conv0_up" if conv == "0" else "Conv1")

    def noise(res: str, conv: str) -> Callable[[_Vars], np.ndarray]:
        return get(f"synthesis/noise{_noise_index(res, conv)}", lambda v: v.reshape(v.shape[-2:]) if v.ndim == 4 else v)

    return [
        (r"w_avg", lambda: get("dlatent_avg")),
        (r"mapping_net\.embed\.weight", lambda: get("mapping/LabelEmbed/weight", dense_t)),
        (r"mapping_net\.embed\.bias", lambda: get("mapping/LabelEmbed/bias")),
        (r"mapping_net\.fc(\d+)\.weight", lambda i: get(f"mapping/Dense{i}/weight", dense_t)),
        (r"mapping_net\.fc(\d+)\.bias", lambda i: get(f"mapping/Dense{i}/bias")),
        (r"synthesis_net\.b4\.const", lambda: get("synthesis/4x4/Const/const", lambda v: v[0] if v.ndim == 4 else v)),
        (r"synthesis_net\.b(\d+)\.conv([01])\.weight", lambda r, c: _conv(layer(r, c) + "/weight", flip=c == "0" and r != "4")),
        (r"synthesis_net\.b(\d+)\.conv([01])\.bias", lambda r, c: get(layer(r, c) + "/bias")),
        (r"synthesis_net\.b(\d+)\.conv([01])\.noise_const", noise),
        (r"synthesis_net\.b(\d+)\.conv([01])\.noise_strength", lambda r, c: get(layer(r, c) + "/noise_strength")),
        (r"synthesis_net\.b(\d+)\.conv([01])\.affine\.weight", lambda r, c: get(layer(r, c) + "/mod_weight", dense_t)),
        (r"synthesis_net\.b(\d+)\.conv([01])\.affine\.bias", lambda r, c: get(layer(r, c) + "/mod_bias", lambda v: v + 1)),
        (r"synthesis_net\.b(\d+)\.torgb\.weight", lambda r: _conv(f"synthesis/{r}x{r}/ToRGB/weight")),
        (r"synthesis_net\.b(\d+)\.torgb\.bias", lambda r: get(f"synthesis/{r}x{r}/ToRGB/bias")),
        (r"synthesis_net\.b(\d+)\.torgb\.affine\.weight", lambda r: get(f"synthesis/{r}x{r}/ToRGB/mod_weight", dense_t)),
        (r"synthesis_net\.b(\d+)\.torgb\.affine\.bias", lambda r: get(f"synthesis/{r}x{r}/ToRGB/mod_bias", lambda v: v + 1)),
        (r"synthesis_net\.b(\d+)\.skip\.weight", lambda r: _conv(f"synthesis/{r}x{r}/Skip/weight", flip=True)),
    ]


def _tensor_for(key: str, tf: _Vars, filt: torch.Tensor) -> torch.Tensor:
    if key.endswith("resample_filter"):
        return filt
    for pattern, make in _rules():
        match = re.fullmatch(pattern, key)
        if match:
            value = np.array(make(*match.groups())(tf), dtype=np.float32, order="C")  # 0-d stays 0-d
            return torch.from_numpy(value)
    raise CheckpointError(f"no TensorFlow variable maps onto the StyleGAN2 tensor {key!r}")  # pragma: no cover


def convert_tf_generator(net: TFNetwork) -> StyleGAN2Generator:
    """Rebuild a TensorFlow StyleGAN2 generator (``Gs``) as a latentkit generator, with all its weights.

    Args:
        net: the generator read by :func:`latentkit.load.tf_pickle.read_tf_pickle`.

    Returns:
        The generator in eval mode, float32, on the CPU, gradients off.

    Raises:
        CheckpointError: an unknown keyword or version, a missing variable, or a variable of the wrong
            shape (each named).
    """
    options = tf_generator_options(net)
    tf, architecture = _collect(net, options)
    mapping = MappingConfig(
        num_layers=int(options["mapping_layers"]),
        layer_features=None if options["mapping_fmaps"] is None else int(options["mapping_fmaps"]),
        embed_features=None if options["label_fmaps"] is None else int(options["label_fmaps"]),
        lr_multiplier=float(options["mapping_lrmul"]),
        activation=str(options["mapping_nonlinearity"]),
    )
    try:
        generator = StyleGAN2Generator(
            z_dim=int(options["latent_size"]), c_dim=int(options["label_size"]), w_dim=int(options["dlatent_size"]),
            img_resolution=int(options["resolution"]), img_channels=int(options["num_channels"]),
            mapping=mapping, blocks=_block_configs(tf, options, architecture),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"TensorFlow network {net.name!r}: cannot build its StyleGAN2 ({err})") from err
    filt = setup_filter(np.asarray(options["resample_kernel"], dtype=np.float64).tolist())
    ours = generator.state_dict()
    state = {}
    for key, tensor in ours.items():
        value = _tensor_for(key, tf, filt)
        if tuple(value.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"TensorFlow generator {net.name!r}: the variable for {key} has shape {list(value.shape)} after "
                f"conversion, expected {list(tensor.shape)}"
            )
        state[key] = value
    generator.load_state_dict(state, strict=True)
    logger.debug("converted TensorFlow StyleGAN2 %dx%d (%s), %d ws", generator.img_resolution,
                 generator.img_resolution, architecture, generator.num_ws)
    return generator.eval().requires_grad_(False)


def load_tf_pickle(path: str | os.PathLike) -> StyleGAN2Generator:
    """Load ``Gs`` of a TensorFlow StyleGAN2 / StyleGAN2-ADA pickle without executing anything from it.

    Args:
        path: e.g. ``stylegan2-ffhq-config-f.pkl``.

    Returns:
        A :class:`~latentkit.nets.stylegan2.StyleGAN2Generator` on the CPU in float32.

    Raises:
        CheckpointError: a refused or malformed file (see :func:`~latentkit.load.tf_pickle.loads_tf_pickle`)
            or one that does not convert (see :func:`convert_tf_generator`).
    """
    net = read_tf_pickle(Path(path))
    return convert_tf_generator(net)
