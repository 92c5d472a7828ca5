"""StyleGAN-XL generator, "StyleGAN-XL: Scaling StyleGAN to Large Diverse Datasets".

StyleGAN-XL (``training/networks_stylegan3_resetting.py`` of autonomousvision/stylegan-xl) keeps the
StyleGAN3 synthesis network and changes the mapping network:

* the class enters through a fixed ImageNet class embedding (``embed``: 1000 x 320, the classifier
  embedding of tf_efficientnet_lite0 shipped with the XL code): the row ``argmax(c)`` is looked up,
  projected to ``z_dim`` by ``embed_proj`` (lrelu, gain sqrt(2)), RMS-normalised and concatenated to the
  RMS-normalised z, so the first mapping layer has ``2 * z_dim`` inputs. Only the argmax of ``c`` matters:
  soft labels are not interpolated;
* conditional nets keep one ``w_avg`` per class (``[c_dim, w_dim]``); truncation pulls each sample towards
  the average of its own class (:meth:`~latentkit.nets.generator.Generator.class_average`);
* z is small (64 in the released ImageNet models, versus 512 in StyleGAN2/3).

Super-resolution stages: XL grows progressively. A stage (``SuperresGenerator`` in the XL code) takes the
previous stem, drops its critically sampled layers and appends ``head_layers`` new layers (plus ToRGB) at
``up_factor`` times the resolution; the pickled network then simply has a longer ``layer_names`` list and a
larger ``num_ws``. Every layer is described by its own stored geometry, so stems and all stages load the
same way; :attr:`StyleGANXLGenerator.head_layer_names` lists the layers added by the last stage (empty for
a stem).
"""

from __future__ import annotations

import torch

from latentkit.errors import InputError
from latentkit.nets.stylegan3 import (
    FourierGenerator,
    SynthesisInputSpec,
    SynthesisLayerSpec,
)
from latentkit.nets.generator import float_dtype
from latentkit.nets.ops import normalize_2nd_moment
from latentkit.nets.stylegan2 import FullyConnectedLayer, MappingLayers

__all__ = ["XLMappingNetwork", "StyleGANXLGenerator"]


class XLMappingNetwork(MappingLayers):
    """z and class -> w for StyleGAN-XL. Child names match the checkpoint (``embed``, ``embed_proj``, ``fc*``).

    Args:
        z_dim, c_dim, w_dim: dimensions; ``c_dim`` may be smaller than ``num_embeddings`` (class k uses
            embedding row k).
        num_layers: fully connected mapping layers.
        num_embeddings, embedding_dim: shape of the class embedding table (1000 x 320 in XL).
        lr_multiplier: learning-rate multiplier of the ``fc`` layers (0.01).
    """

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, num_layers: int, num_embeddings: int = 1000,
                 embedding_dim: int = 320, lr_multiplier: float = 0.01) -> None:
        super().__init__()
        if c_dim > num_embeddings:
            raise InputError(f"c_dim={c_dim} exceeds the {num_embeddings} rows of the class embedding")
        self.z_dim, self.c_dim, self.w_dim, self.num_layers = z_dim, c_dim, w_dim, num_layers
        # The XL code always loads the embedding table, also for unconditional nets (where it is unused).
        self.embed = torch.nn.Embedding(num_embeddings, embedding_dim)
        self.embed_proj = FullyConnectedLayer(embedding_dim, z_dim, activation="lrelu") if c_dim > 0 else None
        features = [z_dim * (2 if c_dim > 0 else 1)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            self.add_module(f"fc{idx}", layer)

    def class_embedding(self, c: torch.Tensor) -> torch.Tensor:
        """Normalised projected embedding of ``argmax(c)``: ``[N, c_dim] -> [N, z_dim]``."""
        return normalize_2nd_moment(self.embed_proj(self.embed(c.argmax(dim=1))))

    def inputs(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """RMS-normalised z, concatenated with :meth:`class_embedding` when conditional."""
        x = normalize_2nd_moment(z.to(float_dtype(self)))
        if self.embed_proj is not None:
            x = torch.cat([x, self.class_embedding(c)], dim=1)
        return x


class StyleGANXLGenerator(FourierGenerator):
    """StyleGAN-XL generator (stem or super-resolution stage); architecture ``'stylegan-xl'``.

    Args:
        z_dim, c_dim, w_dim, img_resolution, img_channels: as in the XL code.
        mapping_layers: fully connected mapping layers.
        input_spec: geometry of the Fourier input.
        layer_specs: synthesis layers in order (stem layers, then super-resolution heads), ending with ToRGB.
        output_scale: image multiplier (0.25).
        num_embeddings, embedding_dim: class embedding table shape (1000 x 320).
        mapping_lr_multiplier: learning-rate multiplier of the mapping layers (0.01).
        head_layer_names: names of the layers added by the last super-resolution stage (empty for a stem).

    Weights are placeholders after construction; load them (``latentkit.load_generator``).
    """

    architecture = "stylegan-xl"

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_layers: int, input_spec: SynthesisInputSpec, layer_specs: list[SynthesisLayerSpec],
                 output_scale: float = 0.25, num_embeddings: int = 1000, embedding_dim: int = 320,
                 mapping_lr_multiplier: float = 0.01, head_layer_names: tuple[str, ...] = ()) -> None:
        super().__init__()
        unknown = set(head_layer_names) - {spec.name for spec in layer_specs}
        if unknown:
            raise InputError(f"head_layer_names {sorted(unknown)} are not among the synthesis layers")
        self.mapping_net = XLMappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_layers=mapping_layers,
                                            num_embeddings=num_embeddings, embedding_dim=embedding_dim,
                                            lr_multiplier=mapping_lr_multiplier)
        self.head_layer_names = tuple(head_layer_names)
        self._setup(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                    img_channels=img_channels, input_spec=input_spec, layer_specs=layer_specs,
                    output_scale=output_scale, w_avg_shape=(c_dim, w_dim) if c_dim > 0 else (w_dim,))

    def info(self) -> dict:
        out = super().info()
        out["class_embedding"] = list(self.mapping_net.embed.weight.shape)
        out["per_class_w_avg"] = self.w_avg.ndim == 2
        out["superres_head_layers"] = list(self.head_layer_names)
        return out
