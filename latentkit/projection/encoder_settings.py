"""The options of encoder training, in one frozen dataclass that the API and the CLI share.

This module imports no torch, so the command line reads its defaults here without loading the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from latentkit.errors import InputError

__all__ = ["EncoderTrainSettings"]


@dataclass(frozen=True)
class EncoderTrainSettings:
    """Options of :func:`train_encoder` (the CLI builds the same object).

    Attributes:
        samples: training samples rendered by the generator (cached on disk).
        val_samples: held-out samples for the validation curve (their own seeds).
        steps: optimisation steps.
        batch_size: samples per step.
        learning_rate: Adam's learning rate (cosine decay to 5 % of it over ``steps``).
        input_resolution: the encoder's input side (None: ``min(64, img_resolution)``).
        mixing: probability that a sample crosses two w's over at a random layer (W+ targets).
        latent_loss: ``'u'``: mean squared error of the whitened coefficients, every principal direction
            weighed alike; ``'v'``: squared distance in the Gaussianized space v, each direction weighed by its
            variance (the near-null directions, which barely change the image, then count little; the
            default). Both are normalised so that predicting the prior's mode scores 1. On the default model
            (4096 samples, 3000 steps) the u loss never went below the mode (1.02 -> 1.21 on held-out samples)
            and the v loss did (best 0.80): benchmarks/results/encoder_msg_training_curve.json.
        image_weight: weight of LPIPS between the rendering of the prediction and the sample (0: latent
            loss only; > 0 costs a generator forward and backward pass per step).
        perceptual_weights: LPIPS VGG16 weights for the image loss (see ``lpips_vgg``).
        checkpoint_every: steps between checkpoints (and rewrites of the encoder file).
        seed: seed of the samples, the initial weights and the batches.
    """

    samples: int = 10_000
    val_samples: int = 64
    steps: int = 20_000
    batch_size: int = 32
    learning_rate: float = 1e-3
    input_resolution: int | None = None
    mixing: float = 0.5
    latent_loss: str = "v"
    image_weight: float = 0.0
    perceptual_weights: str = "auto"
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "val_samples", "steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("learning_rate", "mixing", "image_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"{name} must be a number >= 0, got {value!r}")
        if self.latent_loss not in ("u", "v"):
            raise InputError(f"latent_loss must be 'u' or 'v', got {self.latent_loss!r}")
        if self.mixing > 1:
            raise InputError(f"mixing is a probability in [0, 1], got {self.mixing}")
