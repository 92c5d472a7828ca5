"""Images from seeds, exactly as NVIDIA's ``gen_images.py`` makes them, with optional latent guidance.

Each seed is drawn with :func:`~latentkit.latent.sampling.z_from_seed` and rendered alone (batch of one), so
the same seeds give the same images as NVIDIA's script on the same network. Conditional networks take a
one-hot label per class; :func:`~latentkit.latent.guide.guide` replaces the mapping when a guidance scale is
given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from latentkit.errors import InputError
from latentkit.nets.generator import NOISE_MODES, Generator
from latentkit.nets.precision import autocast
from latentkit.latent.sampling import one_hot, z_from_seed

__all__ = ["generate_images", "GeneratedImage", "image_name", "projection_noise", "render_latents"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratedImage:
    """One rendered sample.

    Attributes:
        seed: the seed of ``z``.
        class_idx: its class (None for unconditional networks).
        image: ``[1, C, H, W]`` float32 on the CPU, values around [-1, 1].
        ws: its W+ latents ``[1, num_ws, w_dim]`` on the CPU.
        mapping_calls: mapping-network evaluations spent on it (> 1 with guidance).
    """

    seed: int
    class_idx: int | None
    image: torch.Tensor
    ws: torch.Tensor
    mapping_calls: int


def image_name(seed: int, class_idx: int | None = None, *, many_classes: bool = False) -> str:
    """``seed0003.png`` as ``gen_images.py`` names files; ``seed0003-class0207.png`` when several
    classes are rendered for one seed."""
    if many_classes and class_idx is not None:
        return f"seed{seed:04d}-class{class_idx:04d}.png"
    return f"seed{seed:04d}.png"


@torch.no_grad()
def generate_images(
    G: Generator,
    seeds: Sequence[int],
    *,
    classes: Sequence[int] | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    guidance: float | None = None,
    num_classes_sample: int | None = None,
    progress: bool = True,
    precision: str = "fp32",
) -> Iterator[GeneratedImage]:
    """Render one image per (class, seed), class by class, as NVIDIA's ``gen_images.py`` does.

    Args:
        G: the generator.
        seeds: seeds of ``z`` (``np.random.RandomState(seed).randn(1, z_dim)``).
        classes: class indices for a conditional network (required there, refused otherwise).
        truncation_psi: truncation towards ``w_avg`` (1: none).
        noise_mode: ``'const'``, ``'random'`` or ``'none'``.
        guidance: latent guidance scale ``s`` (conditional networks only; None or 1: unguided).
        num_classes_sample: with guidance, average the marginal over this many random classes (drawn
            from each image's own seed, so every image is reproducible on its own).
        progress: tqdm bar on stderr.
        precision: ``'fp32'``, or opt-in ``'bf16'`` / ``'fp16'`` (CUDA) autocast of the synthesis network
            (:func:`latentkit.nets.precision.autocast`); images are returned as float32.

    Yields:
        :class:`GeneratedImage` per sample, ``image`` ``[1, C, H, W]``.

    Raises:
        InputError: a conditional network without classes, classes or guidance for an unconditional
            one, an unknown noise mode, or no seeds.
    """
    from tqdm.auto import tqdm

    if not seeds:
        raise InputError("no seeds given: pass e.g. --seeds 0-7")
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    if G.c_dim == 0:
        if classes:
            raise InputError("this generator is unconditional (c_dim=0): do not pass a class")
        if guidance is not None:
            raise InputError("guidance needs a class-conditional generator; this one is unconditional")
        plan: list[int | None] = [None]
    else:
        if not classes:
            raise InputError(
                f"this generator is class-conditional (c_dim={G.c_dim}): pass a class in [0, {G.c_dim - 1}] "
                f"(--class K)"
            )
        plan = list(classes)
        one_hot(plan, G.c_dim)  # validates the range
    device = G.w_avg.device
    reduced = autocast(device, precision)  # validates precision before any work
    total = len(plan) * len(seeds)
    with tqdm(total=total, desc="generate", unit="img", disable=not progress, leave=False) as bar:
        for class_idx in plan:
            for seed in seeds:
                z = z_from_seed(seed, G.z_dim, device=device)
                c = None if class_idx is None else one_hot([class_idx], G.c_dim, device=device)
                calls = 1
                if guidance is None:
                    ws = G.mapping(z, c, truncation_psi=truncation_psi)
                else:
                    from latentkit.latent.guide import guided_latents

                    result = guided_latents(G, z, c, scale=guidance, truncation_psi=truncation_psi,
                                            num_classes_sample=num_classes_sample, seed=seed)
                    ws, calls = result.ws, result.mapping_calls_per_sample
                with reduced:
                    image = G.synthesis(ws, noise_mode=noise_mode)
                bar.update(1)
                yield GeneratedImage(int(seed), class_idx, image.float().cpu(), ws.cpu(), calls)


def projection_noise(w_file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The noise inputs saved beside a projection's latents (``projected_noise.npz`` in the same folder),
    name -> ``[1, 1, H, W]`` float32; empty when there is no such file."""
    import numpy as np

    path = Path(w_file).parent / "projected_noise.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: torch.from_numpy(np.array(data[k], dtype=np.float32)) for k in data.files}


def render_latents(G: Generator, path: str | os.PathLike, *, noise_mode: str = "const") -> torch.Tensor:
    """Render the W+ latents of a file (NVIDIA's ``projected_w.npz``, key ``w``) as ``[N, C, H, W]`` in [-1, 1].

    For a single latent with ``projected_noise.npz`` beside it (latentkit's projections) that noise is used,
    so the render reproduces the projection's ``proj.png``; otherwise ``noise_mode`` decides.

    Raises:
        InputError: an unreadable file. ShapeError: latents that do not fit ``G``.
    """
    from latentkit.io import load_latents

    ws = load_latents(path)
    ws = ws.expand(-1, G.num_ws, -1) if ws.shape[1] == 1 else ws
    G.check_ws(ws)
    noise = projection_noise(path) if ws.shape[0] == 1 else {}
    if noise and set(noise) != set(G.const_noise()):
        logger.warning("%s: the noise file beside it does not fit this network; ignored", path)
        noise = {}
    device = G.w_avg.device
    with torch.no_grad():
        if noise:
            images = G.synthesis(ws.to(device), noise_mode="const", noise={k: v.to(device) for k, v in noise.items()})
        else:
            images = G.synthesis(ws.to(device), noise_mode=noise_mode)
    return images.clamp(-1, 1)
