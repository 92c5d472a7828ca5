"""Any G(z) with latentkit: wrap a small DCGAN and use the Z-space tools on it.

The DCGAN is defined here and its weights are RANDOM (seeded): it is not a pretrained model and its
images are noise-like patterns. Replace ``DCGAN()`` by your own trained module (anything that maps
``z [N, z_dim]`` to images ``[N, C, R, R]``) and pass its output range.

What it shows, all through the Python API (the ``latentkit`` commands take a checkpoint file, and a
wrapped module is not one):

1. ``latentkit.wrap``: the module as a Generator (``num_ws = 0``: no W space);
2. a slerp interpolation in Z, written as a grid;
3. PPL in Z (with a RANDOM LPIPS backbone unless ``--lpips auto`` finds real weights: labelled so);
4. a Fréchet distance on 16x16 pixel features between two seed ranges (offline; ``features='inception'``
   gives FID when torch-fidelity's weights are available);
5. projection in Z of one of its own renders (``latentkit.projection.zspace.project_z``, MSE loss).

Run it::

    python examples/wrap_dcgan.py --outdir /tmp/wrap_dcgan
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import latentkit
from latentkit.io import save_grid
from latentkit.latent.interpolate import render_interpolation
from latentkit.metrics.ppl import perceptual_path_length
from latentkit.metrics.quality import evaluate
from latentkit.projection.lpips import lpips_vgg
from latentkit.projection.settings import ProjectionSettings
from latentkit.projection.zspace import project_z

Z_DIM, RESOLUTION = 64, 64


class DCGAN(torch.nn.Module):
    """A DCGAN-style generator (Radford et al. 2016 layout, narrow, no batch norm):
    z [N, 64] -> [N, 3, 64, 64] in [-1, 1] (tanh).

    RANDOM weights: a seeded He-style initialisation, never trained.
    """

    def __init__(self, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        chans = [Z_DIM, width * 8, width * 4, width * 2, width, 3]
        layers: list[torch.nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            stride, padding = (1, 0) if i == 0 else (2, 1)
            layers.append(torch.nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False))
            layers.append(torch.nn.Tanh() if c_out == 3 else torch.nn.LeakyReLU(0.2))
        self.net = torch.nn.Sequential(*layers)
        rng = torch.Generator().manual_seed(seed)  # the example's own stream, not the global RNG
        with torch.no_grad():
            for i, conv in enumerate(m for m in self.net if isinstance(m, torch.nn.ConvTranspose2d)):
                fan_in = conv.in_channels * (1 if i == 0 else 4)  # taps reaching one output pixel
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=rng) * (2.0 / fan_in) ** 0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outdir", type=Path, default=Path("out-wrap-dcgan"))
    parser.add_argument("--steps", type=int, default=100, help="projection steps")
    parser.add_argument("--lpips", default="random", help="LPIPS weights for PPL: 'random' (offline) or 'auto'")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)

    G = latentkit.wrap(DCGAN().eval(), z_dim=Z_DIM, img_resolution=RESOLUTION, output_range=(-1, 1))
    print(f"wrapped {G.info()['module']}: z_dim={G.z_dim}, {G.img_resolution}px, num_ws={G.num_ws} (random weights)")

    a = latentkit.z_from_seed(1, Z_DIM)
    b = latentkit.z_from_seed(2, Z_DIM)
    frames = render_interpolation(G, a, b, 8, space="z")  # [8, 1, 3, 64, 64]
    save_grid(args.outdir / "interpolation_z.png", frames[:, 0])

    ppl = perceptual_path_length(G, num_samples=32, space="z", crop=False, perceptual=lpips_vgg(args.lpips),
                                 progress=False)
    print(f"PPL in Z: {ppl.ppl:.2f} (LPIPS weights: {ppl.lpips_weights})")

    quality = evaluate(G, G, metrics=("fid",), features="pixels", num_samples=64, seed=0, progress=False)
    print(f"Fréchet distance on pixels, G vs itself (same seeds): {quality.metrics['fd_pixels']:.4f}")

    target = G(latentkit.z_from_seed(7, Z_DIM))
    settings = ProjectionSettings(num_steps=args.steps, perceptual=None, mse_weight=1.0)
    result = project_z(G, target, settings=settings, progress=True)
    save_grid(args.outdir / "projection_z.png", torch.cat([result.targets, result.images.cpu()]))
    summary = {"ppl_z": ppl.ppl, "lpips": ppl.lpips_weights, "fd_pixels_self": quality.metrics["fd_pixels"],
               "projection_mse_first_last": [float(result.loss_terms["mse"][0, 0]),
                                             float(result.loss_terms["mse"][0, -1])]}
    (args.outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
