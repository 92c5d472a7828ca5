"""StyleGAN2's mapping network and its equalised-learning-rate layer (NVIDIA's ``MappingNetwork`` and
``FullyConnectedLayer``), shared by StyleGAN2, StyleGAN3 and StyleGAN-XL.

z (and the label embedding of conditional nets) is RMS-normalised, then ``num_layers`` fully connected
lrelu layers with learning-rate multiplier 0.01 map it to w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from latentkit.nets.generator import float_dtype
from latentkit.nets.ops import bias_act, normalize_2nd_moment

__all__ = ["FullyConnectedLayer", "MappingConfig", "MappingLayers", "MappingNetwork", "init_generator"]


def init_generator(generator: torch.Generator | None) -> torch.Generator:
    """The generator for initial weights: the caller's, else a fresh one seeded 0 (the global RNG is never
    touched, so building or loading a network does not change the user's random stream)."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


@dataclass(frozen=True)
class MappingConfig:
    """Mapping network options (NVIDIA's ``mapping_kwargs``).

    Attributes:
        num_layers: number of fully connected layers.
        layer_features: width of the hidden layers (None: ``w_dim``).
        embed_features: width of the label embedding (None: ``w_dim``; unused when ``c_dim == 0``).
        lr_multiplier: learning-rate multiplier of the fully connected layers.
        activation: activation of the fully connected layers.
    """

    num_layers: int = 8
    layer_features: int | None = None
    embed_features: int | None = None
    lr_multiplier: float = 0.01
    activation: str = "lrelu"


class FullyConnectedLayer(torch.nn.Module):
    """Equalised-learning-rate linear layer: ``act(x @ (weight * weight_gain).T + bias * bias_gain)``.

    ``weight_gain = lr_multiplier / sqrt(in_features)``, ``bias_gain = lr_multiplier``.
    """

    def __init__(
        self, in_features: int, out_features: int, *, activation: str = "linear", lr_multiplier: float = 1.0,
        bias: bool = True, bias_init: float = 0.0, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features, generator=init_generator(generator))
                                         / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = float(lr_multiplier)

    def _effective(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype)
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        return w, b

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_features] -> [N, out_features]`` before the activation."""
        w, b = self._effective(x)
        return bias_act(x.matmul(w.t()), b)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}, lr_multiplier={self.bias_gain:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_features] -> [N, out_features]``."""
        w, b = self._effective(x)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingLayers(torch.nn.Module):
    """Base of the mapping networks: an input stage (:meth:`inputs`) followed by ``fc0 ... fc{num_layers-1}``."""

    num_layers: int

    def inputs(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The input of ``fc0``, ``[N, in_features]``."""
        raise NotImplementedError

    def _run(self, z: torch.Tensor, c: torch.Tensor, preact: bool) -> torch.Tensor:
        x = self.inputs(z, c)
        for idx in range(self.num_layers):
            layer = getattr(self, f"fc{idx}")
            x = layer.preactivation(x) if preact and idx == self.num_layers - 1 else layer(x)
        return x

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``z [N, z_dim]``, ``c [N, c_dim]`` -> ``w [N, w_dim]`` (no broadcast, no truncation)."""
        return self._run(z, c, preact=False)

    def last_preactivation(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Input of the last activation ``[N, w_dim]``: ``w = sqrt(2) * leaky_relu(pre, 0.2)``."""
        return self._run(z, c, preact=True)


class MappingNetwork(MappingLayers):
    """z (and labels c) -> w ``[N, w_dim]``, without broadcasting or truncation."""

    def __init__(
        self, *, z_dim: int, c_dim: int, w_dim: int, config: MappingConfig, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        generator = init_generator(generator)
        self.z_dim, self.c_dim, self.w_dim, self.num_layers = z_dim, c_dim, w_dim, config.num_layers
        embed = (config.embed_features or w_dim) if c_dim > 0 else 0
        hidden = config.layer_features or w_dim
        features = [z_dim + embed] + [hidden] * (config.num_layers - 1) + [w_dim]
        self.embed = FullyConnectedLayer(c_dim, embed, generator=generator) if c_dim > 0 else None
        for idx in range(config.num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=config.activation,
                                        lr_multiplier=config.lr_multiplier, generator=generator)
            self.add_module(f"fc{idx}", layer)

    def inputs(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """RMS-normalised z, concatenated with the RMS-normalised label embedding when conditional."""
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(float_dtype(self))))
        if self.embed is not None:
            parts.append(normalize_2nd_moment(self.embed(c.to(float_dtype(self)))))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
