"""Test helper: write a latentkit StyleGAN2 as NVIDIA's TensorFlow network pickle.

A stub class pickled as ``dnnlib.tflib.network.Network`` whose ``__getstate__`` gives the state dict of
NVIDIA's TF ``Network`` (version, name, static_kwargs, components, build_module_src, build_func_name,
variables as ``(name, numpy array)`` pairs). The weights are laid out as TF variables: the inverse of the
documented conversion (dense weights transposed, conv weights ``[kh, kw, in, out]``, up-sampling and skip
convs flipped, style biases minus one, noise ``[1, 1, res, res]``).
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from typing import Any

import numpy as np

from latentkit.nets.stylegan2 import StyleGAN2Generator


class Network:
    """Stand-in for ``dnnlib.tflib.network.Network`` (pickled under that name)."""

    def __init__(self, name: str, static_kwargs: dict, variables: list, components: dict | None = None,
                 build_module_src: str = "", extra_state: dict | None = None) -> None:
        self.state = {
            "version": 4,
            "name": name,
            "static_kwargs": dict(static_kwargs),
            "components": dict(components or {}),
            "build_module_src": build_module_src,
            "build_func_name": f"training.networks_stylegan2.{name}",
            "variables": list(variables),
            **(extra_state or {}),
        }

    def __getstate__(self) -> dict:
        return self.state

    def __setstate__(self, state: dict) -> None:  # pragma: no cover - never unpickled with this class
        self.state = state


Network.__module__ = "dnnlib.tflib.network"


@contextlib.contextmanager
def _fake_modules():
    names = ["dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"]
    saved = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules["dnnlib.tflib.network"].Network = Network
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def dumps(obj: Any, protocol: int = 3) -> bytes:
    """Pickle ``obj`` (Networks, tuples of them) the way NVIDIA's TF code did (protocol 3 by default)."""
    with _fake_modules():
        return pickle.dumps(obj, protocol=protocol)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _conv(t, flip: bool = False) -> np.ndarray:
    w = _np(t).transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
    return np.ascontiguousarray(w[::-1, ::-1] if flip else w)


def tf_variables(G: StyleGAN2Generator) -> tuple[list, list, list]:
    """(top, mapping, synthesis) variable lists of ``G`` in TF layout."""
    mapping = []
    m = G.mapping_net
    if m.embed is not None:
        mapping += [("LabelEmbed/weight", _np(m.embed.weight).T.copy()), ("LabelEmbed/bias", _np(m.embed.bias))]
    for i in range(m.num_layers):
        fc = getattr(m, f"fc{i}")
        mapping += [(f"Dense{i}/weight", _np(fc.weight).T.copy()), (f"Dense{i}/bias", _np(fc.bias))]
    synthesis = []
    noise = {}
    for block in G.synthesis_net.blocks():
        r = block.resolution
        scope = f"{r}x{r}"

        def layer(name, mod, flip=False):
            out = [(f"{name}/weight", _conv(mod.weight, flip)), (f"{name}/mod_weight", _np(mod.affine.weight).T.copy()),
                   (f"{name}/mod_bias", _np(mod.affine.bias) - 1)]
            if getattr(mod, "use_noise", False):
                out.append((f"{name}/noise_strength", _np(mod.noise_strength)))
            if hasattr(mod, "bias") and mod.bias is not None:
                out.append((f"{name}/bias", _np(mod.bias)))
            return out

        if block.in_channels == 0:
            synthesis.append((f"{scope}/Const/const", _np(block.const)[None]))
            synthesis += layer(f"{scope}/Conv", block.conv1)
            if block.conv1.use_noise:
                noise[0] = _np(block.conv1.noise_const)[None, None]
        else:
            synthesis += layer(f"{scope}/Conv0_up", block.conv0, flip=True)
            synthesis += layer(f"{scope}/Conv1", block.conv1)
            if hasattr(block, "skip"):
                synthesis.append((f"{scope}/Skip/weight", _conv(block.skip.weight, flip=True)))
            k = int(math.log2(r)) * 2
            if block.conv0.use_noise:
                noise[k - 5] = _np(block.conv0.noise_const)[None, None]
                noise[k - 4] = _np(block.conv1.noise_const)[None, None]
        if block.has_torgb:
            synthesis += layer(f"{scope}/ToRGB", block.torgb)
    synthesis = [(f"noise{i}", noise[i]) for i in sorted(noise)] + synthesis
    return [("dlatent_avg", _np(G.w_avg))], mapping, synthesis


def static_kwargs(G: StyleGAN2Generator, *, num_fp16_res: int = 0, resample_kernel=(1, 3, 3, 1)) -> dict:
    """The TF keywords that describe ``G`` (the options legacy.py reads)."""
    blocks = G.synthesis_net.blocks()
    cfg = blocks[0].config
    kwargs = {
        "latent_size": G.z_dim, "label_size": G.c_dim, "dlatent_size": G.w_dim, "resolution": G.img_resolution,
        "num_channels": G.img_channels, "mapping_layers": G.mapping_net.num_layers,
        "mapping_lrmul": G.mapping_config.lr_multiplier, "fmap_base": blocks[0].config.out_channels * 2,
        "fmap_max": max(b.config.out_channels for b in blocks), "architecture": cfg.architecture,
        "conv_clamp": cfg.conv_clamp, "num_fp16_res": num_fp16_res, "resample_kernel": list(resample_kernel),
        "truncation_psi": 0.5,  # TF Gs networks carry this; the conversion ignores it
    }
    if G.mapping_config.layer_features is not None:
        kwargs["mapping_fmaps"] = G.mapping_config.layer_features
    if G.c_dim and G.mapping_net.embed is not None:
        kwargs["label_fmaps"] = G.mapping_net.embed.out_features
    return kwargs


def tf_snapshot(G: StyleGAN2Generator, *, kwargs: dict | None = None, synthesis_src: str = "",
                extra_synthesis_vars: list | None = None) -> tuple:
    """``(G, D, Gs)`` as NVIDIA's TF training loop pickled it (D is an empty stub here)."""
    kwargs = static_kwargs(G) if kwargs is None else kwargs
    top, mapping, synthesis = tf_variables(G)
    synthesis = synthesis + list(extra_synthesis_vars or [])

    def generator(name: str) -> Network:
        comps = {
            "mapping": Network("G_mapping", kwargs, mapping),
            "synthesis": Network("G_synthesis", kwargs, synthesis, build_module_src=synthesis_src),
        }
        return Network(name, kwargs, top, comps, build_module_src=synthesis_src)

    D = Network("D", {"resolution": G.img_resolution}, [])
    return generator("G"), D, generator("Gs")
