"""MobileStyleGAN (architecture ``'mobilestylegan'``) run from its OpenVINO IR graphs in PyTorch.

MobileStyleGAN (Belousov 2021) is a 1024x1024 FFHQ generator distilled from StyleGAN2: the mapping
network is the teacher's (8 fully connected layers, ``w = sqrt(2) * leaky_relu(., 0.2)``), the synthesis
network uses depthwise-separable modulated convolutions and predicts Haar wavelet coefficients that an
inverse wavelet transform turns into pixels. The only public copy that installs offline is the IR inside
the ``random-face`` wheel, where OpenVINO's model optimizer has already folded the demodulation into the
convolution weights and each constant noise map times its strength into one constant.

This module therefore does not re-implement the architecture from scratch: it runs the two IR graphs with
:class:`~latentkit.nets.ir.program.IRProgram`, which executes them operation by operation with PyTorch
functions matching OpenVINO's definitions; that reproduces OpenVINO's arithmetic and stays
differentiable. Batches work because the exported graphs compute every batch-dependent shape with
``ShapeOf`` at run time. This class only finds, in the synthesis graph, the affine layers (for W+) and
the stored noise constants, and reads the mapping's last activation.

W+: the synthesis IR feeds its single input ``style [1, 512]`` to one affine layer (``MatMul``) per
modulated layer. :class:`MobileStyleGAN` gives each of those layers its own row of
``ws [N, num_ws, w_dim]`` (ordered from the 4x4 input to the last to-image layer), so ``num_ws = 23``
and a W+ with equal rows renders exactly the single-w image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.errors import CheckpointError
from latentkit.nets.generator import Generator, MappingActivation
from latentkit.nets.ir.program import IRProgram

if TYPE_CHECKING:
    from latentkit.nets.ir.graph import IRGraph

__all__ = ["MobileStyleGAN"]


def _distance_to_output(graph: IRGraph) -> dict[int, int]:
    """Longest path (in layers) from every layer to the graph's output: larger means earlier in the net."""
    dist: dict[int, int] = {}
    for layer in reversed(graph.topological_order()):
        children = [e.to_layer for e in graph.consumers(layer.id)]
        dist[layer.id] = 1 + max((dist[c] for c in children), default=-1)
    return dist


def _mapping_activation(graph: IRGraph) -> MappingActivation:
    """Read ``w = gain * leaky_relu(x, slope)`` off the last layers of the mapping IR."""
    where = f"mapping IR {graph.name!r}"
    (last,) = graph.of_type("Result")
    node = graph.layers[graph.producers(last.id)[0][0]]
    gain = 1.0
    if node.type == "Multiply":
        kinds = [graph.layers[src] for src, _ in graph.producers(node.id)]
        consts = [k for k in kinds if k.type == "Const" and k.value is not None and k.value.size == 1]
        others = [k for k in kinds if k.type != "Const"]
        if len(consts) != 1 or len(others) != 1:
            raise CheckpointError(f"{where}: the output is a Multiply that is not 'activation * constant gain'")
        gain, node = float(consts[0].value.reshape(())), others[0]
    if node.type != "PReLU":
        raise CheckpointError(
            f"{where}: the output is not gain * leaky_relu(x) (found {node.type}); the Gaussian prior needs "
            "to invert the mapping's last activation"
        )
    slope_layer = graph.layers[graph.producers(node.id)[1][0]]
    if slope_layer.type != "Const" or slope_layer.value is None or slope_layer.value.size != 1:
        raise CheckpointError(f"{where}: the last PReLU has no single constant slope")
    return MappingActivation(slope=float(slope_layer.value.reshape(())), gain=gain)


class MobileStyleGAN(Generator):
    """MobileStyleGAN from its mapping and synthesis IR graphs.

    Args:
        mapping: IR of the mapping network, input z ``[1, z_dim]``, output w ``[1, w_dim]``.
        synthesis: IR of the synthesis network, input w ``[1, w_dim]``, output image ``[1, 3, H, W]``.
        provenance: facts about the weights for :meth:`info` (dataset, license, package).

    Attributes:
        ws_layers: for each row of ``ws``, the modulated layer it feeds (e.g. ``'layers.0.up'``), in the
            order the synthesis network runs them.
        noise_strength: for each stored noise input, the std of the IR's folded ``noise * strength``
            constant; ``noise_mode='random'`` and explicit ``noise`` are scaled by it.

    Raises:
        CheckpointError: if a graph is not shaped like MobileStyleGAN's (see :class:`IRProgram`).
    """

    architecture = "mobilestylegan"

    def __init__(self, mapping: IRGraph, synthesis: IRGraph, *, provenance: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.mapping_net = IRProgram(mapping)
        self.synthesis_net = IRProgram(synthesis)
        self.provenance = dict(provenance or {})
        self.mapping_activation = _mapping_activation(mapping)
        self.z_dim = int(self.mapping_net.input_layer.outputs[0].dims[-1])
        self.c_dim = 0
        self.w_dim = int(self.synthesis_net.input_layer.outputs[0].dims[-1])
        mapped = int(self.mapping_net.output_layer.inputs[0].dims[-1])
        if mapped != self.w_dim:
            raise CheckpointError(f"mapping IR outputs w_dim={mapped} but synthesis IR expects {self.w_dim}")
        out_dims = self.synthesis_net.output_layer.inputs[0].dims
        if len(out_dims) != 4 or out_dims[2] != out_dims[3]:
            raise CheckpointError(f"synthesis IR output must be a square image [1, C, H, H], got {list(out_dims)}")
        self.img_channels, self.img_resolution = int(out_dims[1]), int(out_dims[3])

        # W+: every consumer of the synthesis input must be an affine layer (MatMul with constant weight)
        # or a ShapeOf (which only reads the batch size).
        dist = _distance_to_output(synthesis)
        source = self.synthesis_net.input_layer.id
        affines, names = [], []
        for edge in synthesis.consumers(source):
            layer = synthesis.layers[edge.to_layer]
            if layer.type == "ShapeOf":
                continue
            weight = synthesis.layers[synthesis.producers(layer.id)[1][0]] if layer.type == "MatMul" else None
            if weight is None or weight.type != "Const" or edge.to_port != layer.inputs[0].id:
                raise CheckpointError(
                    f"synthesis IR feeds its input to layer {layer.id} ({layer.type}); only affine MatMul "
                    "layers (and ShapeOf) may read w, otherwise W+ cannot be exposed"
                )
            affines.append(layer.id)
        if not affines:
            raise CheckpointError("synthesis IR has no affine (MatMul) layer reading w")
        affines.sort(key=lambda lid: (-dist[lid], lid))
        for k, lid in enumerate(affines):
            weight_name = synthesis.layers[synthesis.producers(lid)[1][0]].name
            name = weight_name.removesuffix(".modulation.weight").removeprefix("m.")
            names.append(name if name != weight_name else f"affine{k}")
        self._affines = affines
        self.ws_layers = tuple(names)
        self.num_ws = len(affines)

        # Stored noise: constants [1, 1, H, W] (H * W > 1) added to a feature map.
        noise = []
        for layer in synthesis.of_type("Add"):
            for k, (src, _) in enumerate(synthesis.producers(layer.id)):
                const = synthesis.layers[src]
                shape = () if const.value is None else const.value.shape
                if const.type == "Const" and len(shape) == 4 and shape[:2] == (1, 1) and shape[2] * shape[3] > 1:
                    noise.append((layer.id, k, const))
        noise.sort(key=lambda item: (-dist[item[0]], item[0]))
        self._noise_sites = [(lid, k) for lid, k, _ in noise]
        self._noise_consts = [const.id for _, _, const in noise]
        self.noise_strength = [float(np.asarray(c.value, dtype=np.float64).std()) or 1.0 for _, _, c in noise]
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.w_avg_source = "not set: call estimate_w_avg()"

    # ----------------------------------------------------------------------------------------------
    # Mapping.

    def map_latent(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Run the mapping IR: z ``[N, z_dim]`` -> w ``[N, w_dim]`` (``c`` is ``[N, 0]``, unused)."""
        return self.mapping_net(z)

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int = 65536, *, seed: int = 0, batch_size: int = 4096) -> torch.Tensor:
        """Set ``w_avg`` to the mean of ``map_latent(z)`` over ``num_samples`` standard normal z.

        z is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (the same estimate on every
        device) and the mean is accumulated in float64.

        Returns:
            The new ``w_avg`` ``[w_dim]``.

        Raises:
            InputError: if ``num_samples < 1``.
        """
        self.w_avg.copy_(self.mean_mapped_w(num_samples, seed=seed, batch_size=batch_size).to(self.w_avg.dtype))
        self.w_avg_source = f"estimated: mean of {num_samples} mapped z (seed {seed}); the IR stores none"
        return self.w_avg

    # ----------------------------------------------------------------------------------------------
    # Synthesis.

    def const_noise(self) -> dict[str, torch.Tensor]:
        """The stored noise at unit scale, ``'noise0' ... 'noise{L-1}'`` -> ``[1, 1, r, r]`` (r = 4, 8, 8, ...).

        The IR keeps ``noise * strength`` folded into one constant; this returns it divided by
        :attr:`noise_strength`, so passing these back as ``noise`` reproduces ``noise_mode='const'``.
        """
        return {
            f"noise{i}": self.synthesis_net.constant(lid) / strength
            for i, (lid, strength) in enumerate(zip(self._noise_consts, self.noise_strength, strict=True))
        }

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        noise: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render images from W+ latents.

        Args:
            ws: ``[N, num_ws, w_dim]``; row ``k`` feeds modulated layer ``ws_layers[k]``.
            noise_mode: ``'const'`` (the noise baked into the IR), ``'random'`` (fresh Gaussian noise at
                the stored strength) or ``'none'``.
            noise: optional unit-scale noise per layer, keys of :meth:`const_noise`, each ``[N, 1, r, r]``
                or ``[1, 1, r, r]``; layers not in the dict follow ``noise_mode``.

        Returns:
            Images ``[N, 3, 1024, 1024]`` (RGB), values around [-1, 1].

        Raises:
            ShapeError: if ``ws`` or a noise tensor has the wrong shape.
            InputError: for an unknown ``noise_mode`` or noise key.
        """
        n = self.check_ws(ws)
        self.check_noise_mode(noise_mode)
        param = self.w_avg
        ws = ws.to(device=param.device, dtype=param.dtype)
        replace = {(lid, 0): ws[:, k] for k, lid in enumerate(self._affines)}  # [N, w_dim] each
        given = self.check_noise(noise, n)
        sites = zip(self._noise_sites, self._noise_consts, self.noise_strength, strict=True)
        for i, (site, lid, strength) in enumerate(sites):
            key, shape = f"noise{i}", tuple(self.synthesis_net.constant(lid).shape)
            if key in given:
                replace[site] = given[key].to(device=param.device, dtype=param.dtype) * strength
            elif noise_mode == "random":
                replace[site] = torch.randn((n, 1) + shape[2:], device=param.device, dtype=param.dtype) * strength
            elif noise_mode == "none":
                replace[site] = torch.zeros((), device=param.device)
        return self.synthesis_net(ws[:, 0], replace)

    def info(self) -> dict[str, Any]:
        """Base summary plus what the model is, where it comes from and how W+ and noise map onto it."""
        act = self.mapping_activation
        summary = super().info()
        summary.update(
            model="MobileStyleGAN (Belousov 2021), distilled from StyleGAN2 config-f",
            distilled=True,
            mapping_last_activation=(
                f"w = {act.gain:.7g} * leaky_relu(x, {act.slope:.7g}) (IR: PReLU then Multiply; the teacher's "
                "StyleGAN2 mapping network)"
            ),
            ws_layers=list(self.ws_layers),
            noise=f"{len(self._noise_consts)} constant noise inputs folded into the IR with their strengths",
            w_avg_source=self.w_avg_source,
        )
        summary.update(self.provenance)
        return summary
