"""``latentkit video`` and ``latentkit serve``: parse, call :mod:`latentkit.app`, print.

Defaults are repeated here as literals (so ``latentkit --help`` does not import torch) and checked against
the API in ``tests/app/test_video_cli.py``.
"""

from __future__ import annotations

import json

import click

from latentkit.cli._common import device_option, resolve_device, resolve_network, say

__all__ = ["serve", "video"]

_W_FRAMES = 120  # latentkit.app.videos.DEFAULT_W_FRAMES (gen_video.py --w-frames)
_FPS = 60.0  # latentkit.app.videos.DEFAULT_FPS
_FRAMES = 48  # frames per leg of a path / of an edit sweep


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
@click.option("--w-frames", type=click.IntRange(min=1), default=_W_FRAMES, show_default=True,
              help="Seed loop: frames between keyframes.")
@click.option("--kind", type=click.Choice(["cubic", "quadratic", "linear"]), default="cubic", show_default=True,
              help="Seed loop: interpolation of the keyframes.")
@click.option("--psi", type=float, default=1.0, show_default=True, help="Seed latents: truncation psi (1: none).")
@click.option("--shuffle-seed", type=click.IntRange(min=0), default=None, help="Seed loop: shuffle the keyframes.")
@click.option("--frames", type=click.IntRange(min=2), default=_FRAMES, show_default=True,
              help="Path: frames per pair of latents; edit: frames of the sweep.")
@click.option("--space", type=click.Choice(["w", "v"]), default="w", show_default=True,
              help="Path between latent files: lerp in w, or in the prior's Gaussianized v.")
@click.option("--loop", is_flag=True, help="Path: return to the first latent at the end.")
@click.option("--prior", "prior_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Prior for --component and --space v; default: the network's cached prior.")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Downscale frames so the longer side is at most this (default: the network's resolution).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=_FPS, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Video file: .mp4 (needs latentkit[video]) or .gif.")
@device_option
def video(network, seeds, latent_files, component, direction_path, index, amounts, layers, grid, num_keyframes,
          w_frames, kind, psi, shuffle_seed, frames, space, loop, prior_path, size, fps, out, device) -> None:
    """Write a video: a looping interpolation through seeds (NVIDIA's gen_video.py), a path between latent
    files, or an edit sweep of one latent; JSON on stdout."""
    from latentkit.app import videos
    from latentkit.cli.edit import load_prior
    from latentkit.latent.edit import parse_amounts
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

        direction = (prior_directions(load_prior(prior_path, G))[component] if component is not None
                     else Directions.load(direction_path)[index])
        base = videos.seed_latents(G, seed_list[:1]) if seed_list else videos.file_latents(G, latent_files)[:1]
        stream, total, what = (videos.edit_frames(G, base, direction, amounts=sweep, frames=frames, layers=layers),
                               frames, f"edit sweep of {direction.names[0]}")
    elif latent_files:
        ws = videos.file_latents(G, latent_files)
        prior = load_prior(prior_path, G) if space == "v" else None
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
