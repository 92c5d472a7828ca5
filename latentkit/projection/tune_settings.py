"""Every option of pivotal tuning, in one frozen dataclass that the API and the CLI share.

Like :mod:`latentkit.projection.settings` this module imports no torch, so ``latentkit project --help`` and
``latentkit tune --help`` read their defaults here without loading the networks.

The defaults restate PTI's (Roich et al. 2022, github.com/danielroich/PTI, ``configs/hyperparameters.py``):
``max_pti_steps = 350``, ``pti_learning_rate = 3e-4`` (Adam with PyTorch's default betas, on every weight of
the generator), ``pt_lpips_lambda = 1`` and ``pt_l2_lambda = 1`` (LPIPS plus the mean squared pixel error
to the target), and its locality regulariser (``criteria/localitly_regulizer.py``):
``latent_ball_num_of_samples = 1``, ``regulizer_alpha = 30``, ``locality_regularization_interval = 1``,
``regulizer_l2_lambda = 0.1``, ``regulizer_lpips_lambda = 0.1``, samples mapped with ``truncation_psi=0.5``.
PTI's pivot comes from ``first_inv_steps = 450`` steps in W (``first_inv_type = 'w'``, ``first_inv_lr =
5e-3``); latentkit's pivot is whatever projection the caller made (W+ under the prior by default).

Where latentkit differs, by choice:

* PTI ships with ``use_locality_regularization = False``; here it is on (``locality_samples = 1``), since
  the deltas are meant to be used for edits at other latents.
* PTI's ``lpips_type = 'alex'``; latentkit has one LPIPS, VGG16 (:mod:`latentkit.projection.lpips`).
  PTI stops an image once its AlexNet LPIPS is <= 0.06 (``LPIPS_value_threshold``); VGG LPIPS values are on
  another scale, so every image here runs ``num_steps``.
* Each weight's update is measured in units of that weight's RMS (``delta = rms(W) * D``, Adam on ``D``):
  PTI's 3e-4 is a relative step for NVIDIA's equalised-learning-rate weights (stored with unit variance),
  and the scaling keeps it relative for networks whose stored weights have other scales (MobileStyleGAN's
  folded OpenVINO constants, TF-converted nets).
* The update may be low-rank (``delta_rank``): ``D = A @ B`` per weight reshaped to 2-D (LoRA, Hu et al.
  2021), so a delta is a few per cent of the generator. Low-rank factors learn slowly at PTI's 3e-4 (``A``
  starts at zero and ``B`` barely turns), so a low-rank run defaults to 3e-3, ten times PTI's rate
  (``learning_rate=None``). Measured on the default model (face.png, a 100-step W+ pivot, 150 tuning steps;
  ``benchmarks/results/bench_tune.json``): LPIPS 0.252 -> 0.139 at rank 4 and 3e-4, 0.058 at rank 4 and
  3e-3, 0.047 at rank 4 and 1e-2 (but random latents then move nearly as much as the pivot), 0.082 with
  full weights at PTI's 3e-4; the rank-4 delta is 1.7 % of the generator's bytes, the full one 72 %.
  The faster rate also moves the generator more at random latents (LPIPS 0.14 between the original and the
  tuned generator at 16 random latents, against 0.08 for PTI's full run), so low-rank runs weigh the
  locality term 3x PTI's (0.3 and 0.3, ``locality_*_weight=None``): LPIPS 0.067 at the photo, 0.095 at
  random latents, a point on the trade-off between PTI's full run (0.082, 0.080) and full weights at
  3e-3 (0.038, 0.157), at 1/42 of the bytes. Full-weight runs keep PTI's constants throughout.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from latentkit.errors import InputError

__all__ = ["DEFAULT_DELTA_RANK", "DEFAULT_TUNE_STEPS", "FULL_LEARNING_RATE", "FULL_LOCALITY_WEIGHT", "LOW_RANK_LEARNING_RATE",
           "LOW_RANK_LOCALITY_WEIGHT", "TuneSettings"]

DEFAULT_TUNE_STEPS = 350
"""PTI's ``max_pti_steps``."""
DEFAULT_DELTA_RANK = 4
"""Rank of each weight's update (0: full weights); chosen by reconstruction per megabyte (benchmarks/bench_tune.py)."""
FULL_LEARNING_RATE = 3e-4
"""Adam's rate for full-weight updates (PTI ``pti_learning_rate``)."""
LOW_RANK_LEARNING_RATE = 3e-3
"""Adam's rate for low-rank runs: ten times PTI's (measured: see the module's docstring)."""
FULL_LOCALITY_WEIGHT = 0.1
"""Weight of each locality term (pixel MSE and LPIPS) for full-weight runs (PTI ``regulizer_l2_lambda``,
``regulizer_lpips_lambda``)."""
LOW_RANK_LOCALITY_WEIGHT = 0.3
"""Weight of each locality term for low-rank runs: 3x PTI's, to hold the faster rate's updates local."""


@dataclass(frozen=True)
class TuneSettings:
    """Everything that determines a pivotal tuning run.

    Attributes:
        num_steps: Adam steps on the generator's weights (PTI ``max_pti_steps``: 350).
        learning_rate: Adam learning rate, on the RMS-scaled update; None (the default): PTI's 3e-4 for full
            weights (``delta_rank=0``), :data:`LOW_RANK_LEARNING_RATE` (3e-3) for low-rank ones. See :attr:`lr`.
        betas: Adam betas (PTI: PyTorch's defaults, (0.9, 0.999)).
        lpips_weight: weight of LPIPS VGG16 to the target (PTI ``pt_lpips_lambda``: 1).
        l2_weight: weight of the mean squared pixel error in [-1, 1] (PTI ``pt_l2_lambda``: 1).
        delta_rank: rank ``r`` of each weight's update ``A @ B`` (the weight reshaped to ``[out, rest]``);
            0 tunes full weights (PTI). Weights where ``r * (out + rest) >= out * rest`` (biases, small
            matrices) get a full update either way.
        max_delta_fraction: the rank is halved (down to 1) while a delta would be larger than this fraction
            of the generator's float32 parameter bytes (0.05; only narrow networks hit it, e.g. the test nets).
        lora_scale: scale of the initial random factor ``B`` (``A`` starts at zero, so the first image equals
            the pivot's): ``B ~ N(0, lora_scale**2 / r)``, so one Adam step moves ``A @ B`` about as much as
            one step of a full update.
        locality_samples: latents per locality term (PTI ``latent_ball_num_of_samples``: 1; 0 disables it).
        locality_alpha: distance from the pivot, in W, of the regularised latents: the pivot moved by
            ``alpha`` toward each random sample (PTI ``regulizer_alpha``: 30).
        locality_interval: steps between locality terms (PTI ``locality_regularization_interval``: 1).
        locality_l2_weight: weight of the pixel MSE between original and tuned generator there; None (the
            default): PTI's 0.1 for full weights, :data:`LOW_RANK_LOCALITY_WEIGHT` (0.3) for low-rank ones.
        locality_lpips_weight: weight of their LPIPS (PTI ``regulizer_lpips_lambda``); None: by the kind of update too.
        locality_truncation: truncation psi of the random samples (PTI: 0.5).
        perceptual_weights: VGG16 weights source (see :func:`latentkit.projection.lpips.lpips_vgg`).
        max_perceptual_resolution: images are area-downscaled to at most this size for LPIPS (256).
        seed: seed of each image's stream of locality samples.
    """

    num_steps: int = DEFAULT_TUNE_STEPS
    learning_rate: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    lpips_weight: float = 1.0
    l2_weight: float = 1.0
    delta_rank: int = DEFAULT_DELTA_RANK
    max_delta_fraction: float = 0.05
    lora_scale: float = 1.0
    locality_samples: int = 1
    locality_alpha: float = 30.0
    locality_interval: int = 1
    locality_l2_weight: float | None = None
    locality_lpips_weight: float | None = None
    locality_truncation: float = 0.5
    perceptual_weights: str = "auto"
    max_perceptual_resolution: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_steps", "delta_rank", "locality_samples", "locality_interval", "max_perceptual_resolution",
                     "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be an integer >= 0, got {value!r}")
        if self.num_steps < 1 or self.locality_interval < 1:
            raise InputError(f"num_steps and locality_interval must be >= 1, got {self.num_steps}, {self.locality_interval}")
        if self.learning_rate is not None and (isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float))
                                               or not math.isfinite(self.learning_rate) or self.learning_rate <= 0):
            raise InputError(f"learning_rate must be a finite number > 0 (or None: by rank), got {self.learning_rate!r}")
        numbers = ("lpips_weight", "l2_weight", "lora_scale", "max_delta_fraction", "locality_alpha",
                   "locality_l2_weight", "locality_lpips_weight", "locality_truncation")
        for name in numbers:
            value = getattr(self, name)
            if value is None and name.startswith("locality_") and name.endswith("_weight"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lpips_weight == 0 and self.l2_weight == 0:
            raise InputError("lpips_weight and l2_weight are both 0: nothing would fit the target")
        if len(tuple(self.betas)) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise InputError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @property
    def lr(self) -> float:
        """The learning rate used: ``learning_rate``, or by the kind of update when it is None."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return FULL_LEARNING_RATE if self.delta_rank == 0 else LOW_RANK_LEARNING_RATE

    @property
    def locality_weights(self) -> tuple[float, float]:
        """``(pixel MSE, LPIPS)`` weights of the locality term used: the fields, or by the kind of update."""
        by_kind = FULL_LOCALITY_WEIGHT if self.delta_rank == 0 else LOW_RANK_LOCALITY_WEIGHT
        l2, lp = self.locality_l2_weight, self.locality_lpips_weight
        return (by_kind if l2 is None else float(l2), by_kind if lp is None else float(lp))

    @property
    def uses_lpips(self) -> bool:
        """Whether any term needs the LPIPS network."""
        return self.lpips_weight > 0 or (self.locality_samples > 0 and self.locality_weights[1] > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out
