"""``latentkit info`` and ``latentkit generate``: thin wrappers over the loaders and generate_images."""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentkit.cli._common import FiniteFloat, check_outdir, device_option, network_options, pick_network, resolve_device, say
from latentkit.cli.tune import apply_delta, delta_option

__all__ = ["info", "generate", "MAX_GRID"]

MAX_GRID = 64
"""``grid.png`` shows at most this many images (the first ones)."""

DEFAULT_OUTDIR = "out"


def _classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from latentkit.latent.sampling import parse_seeds

    return parse_seeds(text)  # same syntax: '3', '1,5,9', '0-9'


@click.command()
@network_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--list", "list_models", is_flag=True, help="List the registry's pretrained models instead.")
def info(source: str | None, network: str | None, as_json: bool, list_models: bool) -> None:
    """Describe a generator: architecture, dims, resolution, parameter count, conditional or not.

    SOURCE (or --network) is a checkpoint file (.pkl, .pt) or a registry name (see --list); without one,
    the default network.
    """
    from latentkit import hub

    if list_models:
        rows = []
        for name in hub.list_models():
            entry = hub.model_info(name)
            rows.append({"name": name, "architecture": entry.architecture, "resolution": entry.resolution,
                         "num_classes": entry.num_classes, "cached": hub.is_cached(name), "url": entry.url,
                         "license": entry.license})
        if as_json:
            click.echo(json.dumps(rows, indent=1))
            return
        for row in rows:
            classes = f"{row['num_classes']} classes" if row["num_classes"] else "unconditional"
            mark = "cached" if row["cached"] else ""
            click.echo(f"{row['name']:<28} {row['architecture']:<15} {row['resolution']:>5}px  {classes:<14} {mark}")
        return
    from latentkit.load import load_generator

    source = pick_network(source, network)

    summary = load_generator(source).info()
    if source in hub.REGISTRY:
        entry = hub.model_info(source)
        summary.update(dataset=entry.dataset, url=entry.url, license=entry.license)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    for key, value in summary.items():
        if key == "mapping_activation":
            value = f"leaky_relu(slope={value['slope']:g}) * {value['gain']:.6g}"
        elif key == "num_parameters":
            value = f"{value:,}"
        click.echo(f"{key}: {value}")


@click.command()
@network_options
@click.option("--seeds", default="0-7", show_default=True, help="Seeds, e.g. '0-7' or '1,5,9'.")
@click.option("--class", "classes", default=None, help="Class(es) of a conditional network: '3', '1,5' or '0-9'.")
@click.option("--trunc", "truncation_psi", type=FiniteFloat(), default=1.0, show_default=True, help="Truncation psi.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--guidance", type=FiniteFloat(), default=None,
              help="Latent guidance scale s for conditional networks (1: unguided; > 1: stronger class).")
@click.option("--num-classes-sample", type=int, default=None,
              help="With --guidance: average the marginal over this many random classes instead of all.")
@click.option("--outdir", type=click.Path(file_okay=False), default=None, help=f"Output folder [default: ./{DEFAULT_OUTDIR}].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Opt-in reduced precision: bf16 (CPUs with AVX512-BF16/AMX, CUDA) or fp16 (CUDA).")
@click.option("--projected-w", "projected_w", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Render the latents of this file (NVIDIA's projected_w.npz, key 'w') instead of seeds: "
              "projNN.png; the projection's noise is read from projected_noise.npz beside it when present.")
@delta_option
@device_option
def generate(source: str | None, network: str | None, seeds: str, classes: str | None, truncation_psi: float,
             noise_mode: str, guidance: float | None, num_classes_sample: int | None, outdir: str | None,
             precision: str, projected_w: str | None, delta_path: str | None, device: str) -> None:
    """Render images from seeds as NVIDIA's gen_images.py does: seedNNNN.png and grid.png.

    SOURCE (or --network) is a checkpoint file or a registry name (default: NVIDIA's StyleGAN2 FFHQ if
    cached, else the MobileStyleGAN FFHQ model). With --projected-w, render a latent file instead; with
    --delta, the generator tuned by latentkit tune.
    """
    from latentkit.generate import generate_images, image_name
    from latentkit.io import save_grid, save_image
    from latentkit.load import load_generator
    from latentkit.latent.sampling import parse_seeds

    seed_list = parse_seeds(seeds)
    class_list = _classes(classes)
    source = pick_network(source, network)
    if outdir is None:
        outdir = DEFAULT_OUTDIR
        say(f"no --outdir given: writing to ./{outdir}")
    check_outdir(outdir)
    G = apply_delta(load_generator(source, device=resolve_device(device)), delta_path)
    if projected_w is not None:
        _render_latent_file(G, projected_w, Path(outdir), noise_mode)
        return
    many = class_list is not None and len(class_list) > 1
    folder = Path(outdir)
    grid, calls = [], 1
    for item in generate_images(G, seed_list, classes=class_list, truncation_psi=truncation_psi,
                                noise_mode=noise_mode, guidance=guidance, num_classes_sample=num_classes_sample,
                                precision=precision):
        path = save_image(folder / image_name(item.seed, item.class_idx, many_classes=many), item.image)
        click.echo(str(path))
        calls = item.mapping_calls
        if len(grid) < MAX_GRID:
            grid.append(item.image)
    import torch

    cols = len(seed_list) if many and len(seed_list) <= 16 else None
    click.echo(str(save_grid(folder / "grid.png", torch.cat(grid), cols=cols)))
    if guidance is not None:
        say(f"latent guidance s={guidance:g}: {calls} mapping calls per image")


def _render_latent_file(G, path: str, folder: Path, noise_mode: str) -> None:
    """``generate --projected-w``: one projNN.png per latent of the file (and grid.png)."""
    import torch

    from latentkit.generate import render_latents
    from latentkit.io import save_grid, save_image

    images = render_latents(G, path, noise_mode=noise_mode)
    for k, image in enumerate(images.split(1)):
        click.echo(str(save_image(folder / f"proj{k:02d}.png", image)))
    click.echo(str(save_grid(folder / "grid.png", torch.cat(list(images[:MAX_GRID].split(1))))))
