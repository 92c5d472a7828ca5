"""Every option of a projection, in one frozen dataclass that the API and the CLI share.

This module imports no torch, so the command line reads its defaults here without loading the networks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from latentkit.errors import InputError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_OUTDIR",
    "DEFAULT_PRIOR_WEIGHT",
    "MAX_NUM_STEPS",
    "NVIDIA_INITIAL_NOISE_FACTOR",
    "DEFAULT_STOP_WINDOW",
    "LOSS_TERMS",
    "ProjectionSettings",
    "ENCODER_START_LEARNING_RATE",
    "converged",
    "from_encoder_start",
    "learning_rate_at",
    "noise_scale_at",
]

DEFAULT_PRIOR_WEIGHT = 1e-5
"""Weight of the summed squared Mahalanobis distances (chosen by the experiment in benchmarks/)."""
DEFAULT_CHECKPOINT_EVERY = 50
"""Steps between checkpoints of a run given a checkpoint file (API and CLI alike)."""
DEFAULT_BATCH_SIZE = 4
"""Images optimised together by :func:`latentkit.projection.batch.project_files` (results do not depend on it)."""
MAX_NUM_STEPS = 1_000_000
"""Most optimisation steps a projection accepts (NVIDIA's projector runs 1000; more is a typo, not a plan)."""
DEFAULT_OUTDIR = "out/project"
DEFAULT_STOP_WINDOW = 50
"""Steps per window of the stopping rule (``ProjectionSettings.stop_tol``)."""
"""Where ``latentkit project`` writes when no ``--outdir`` is given."""

_SPACES = ("w", "w+")
LOSS_TERMS = ("perceptual", "mse", "noise", "prior")  # ProjectionResult.loss_terms keys, in order


@dataclass(frozen=True)
class ProjectionSettings:
    """Everything that determines a projection.

    Shared by :func:`~latentkit.projection.project.project` and ``latentkit project``.

    Attributes:
        space: ``'w+'`` (one w per layer) or ``'w'`` (one w broadcast to all layers).
        num_steps: optimisation steps.
        learning_rate: peak Adam learning rate (NVIDIA: 0.1).
        betas: Adam betas (NVIDIA: (0.9, 0.999)).
        lr_rampup_length: fraction of the run with a linear learning-rate ramp-up (0.05).
        lr_rampdown_length: fraction of the run with a cosine ramp-down to zero (0.25).
        initial_noise_factor: latent noise scale at step 0, in units of the samples' w standard deviation
            (0, no latent noise, the default; NVIDIA's projector: :data:`NVIDIA_INITIAL_NOISE_FACTOR`, 0.05).
            Off by default because it was measured to slow every method down on the default model: without
            it, 100 steps of the defaults reach LPIPS 0.233 / 0.062 / 0.077 on a photo and two generated
            faces, against 0.252 / 0.090 / 0.133 with it (benchmarks/bench_time_to_quality.py).
        noise_ramp_length: fraction of the run after which no latent noise is added (0.75).
        w_avg_samples: mapped samples for the starting point and the w standard deviation (10 000, drawn
            with ``np.random.RandomState(123)`` as NVIDIA does).
        start: ``'w_avg'`` (NVIDIA: the samples' mean w), ``'prior_mean'`` (the prior's mode mapped to W,
            Mahalanobis 0; the mean of w sits far outside the prior's typical set, e.g. a squared distance
            of ~1e4-3e5 per vector on the nets tried), ``'encoder'`` (an image encoder's prediction for each
            target: ``project(..., encoder=...)``, see :mod:`latentkit.projection.encoder`) or ``'auto'``
            (the encoder's prediction when one is given, else ``'prior_mean'`` when a prior is given).
        parametrization: ``'auto'`` (``'prior'`` when a prior is given, else ``'w'``), ``'w'`` (Adam on w,
            NVIDIA) or ``'prior'`` (Adam on the prior's whitened PCA
            coefficients u, ``w = prior.from_coefficients(u)``; the prior term is then ``|u|^2`` (the
            Student-t radius prior's ``radius_penalty(|u|^2)``, the same value as in w) and the
            latent noise has the same relative scale: ``initial_noise_factor * sqrt(w_dim)`` per coordinate's
            unit). ``'prior'`` is well conditioned where the prior has tiny eigenvalues, which make
            Adam's per-coordinate steps in w blow the Mahalanobis distance up (MobileStyleGAN FFHQ, smallest
            eigenvalue 3e-8: 5e5 per vector after 2 steps in w, 0.45 after 8 steps in u).
        regularize_noise_weight: weight of the noise autocorrelation penalty (1e5).
        optimize_noise: optimise the noise inputs (else keep the stored ones).
        prior_weight: weight of ``sum_l prior.penalty(w_l)`` (a GaussianPrior's squared Mahalanobis
            distance; used only when a prior is given).
        perceptual: ``'vgg'`` (LPIPS VGG16 v0.1) or None for no perceptual term.
        perceptual_weights: VGG16 weights source (see :func:`latentkit.projection.lpips.lpips_vgg`).
        max_perceptual_resolution: images are area-downscaled to at most this size for LPIPS (256).
        mse_weight: weight of the pixel mean squared error (images in [-1, 1]).
        seed: seed of each image's latent-noise stream (every image gets its own stream from this seed).
        precision: ``'fp32'``, or opt-in ``'bf16'`` / ``'fp16'`` (CUDA only) autocast of the generator and
            LPIPS forward passes (see :mod:`latentkit.nets.precision`; its cost in benchmarks/bench_speed.py).
        stop_tol: stop before ``num_steps`` once every image's mean total loss over the last ``stop_window``
            steps improved by less than this fraction on the ``stop_window`` steps before (0: off, the
            default; the run stops early only when asked, see benchmarks/bench_time_to_quality.py).
        stop_window: steps per window of the stopping rule.
    """

    space: str = "w+"
    num_steps: int = 1000
    learning_rate: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    lr_rampup_length: float = 0.05
    lr_rampdown_length: float = 0.25
    initial_noise_factor: float = 0.0
    noise_ramp_length: float = 0.75
    w_avg_samples: int = 10_000
    start: str = "auto"
    parametrization: str = "auto"
    regularize_noise_weight: float = 1e5
    optimize_noise: bool = True
    prior_weight: float = DEFAULT_PRIOR_WEIGHT
    perceptual: str | None = "vgg"
    perceptual_weights: str = "auto"
    max_perceptual_resolution: int = 256
    mse_weight: float = 0.0
    seed: int = 0
    precision: str = "fp32"
    stop_tol: float = 0.0
    stop_window: int = DEFAULT_STOP_WINDOW

    def __post_init__(self) -> None:
        for name in ("num_steps", "w_avg_samples", "seed", "max_perceptual_resolution", "stop_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be an integer, got {value!r}")
        if self.space not in _SPACES:
            raise InputError(f"space must be one of {_SPACES}, got {self.space!r}")
        if not 1 <= int(self.num_steps) <= MAX_NUM_STEPS:
            raise InputError(f"num_steps must be in [1, {MAX_NUM_STEPS}] (NVIDIA's projector: 1000), got {self.num_steps}")
        if self.start not in ("auto", "w_avg", "prior_mean", "encoder"):
            raise InputError(f"start must be 'auto', 'w_avg', 'prior_mean' or 'encoder', got {self.start!r}")
        if self.stop_window < 1:
            raise InputError(f"stop_window must be >= 1, got {self.stop_window}")
        if self.parametrization not in ("auto", "w", "prior"):
            raise InputError(f"parametrization must be 'auto', 'w' or 'prior', got {self.parametrization!r}")
        if self.perceptual not in ("vgg", None):
            raise InputError(f"perceptual must be 'vgg' or None, got {self.perceptual!r}")
        if self.perceptual is None and self.mse_weight <= 0:
            raise InputError("perceptual=None needs mse_weight > 0 (otherwise nothing is fitted to the target)")
        numbers = ("learning_rate", "prior_weight", "mse_weight", "regularize_noise_weight", "initial_noise_factor",
                   "lr_rampup_length", "lr_rampdown_length", "noise_ramp_length", "stop_tol")
        for name in numbers:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.seed < 2**64:
            raise InputError(f"seed must be in [0, 2**64), got {self.seed}")
        if len(tuple(self.betas)) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise InputError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.w_avg_samples < 2:
            raise InputError(f"w_avg_samples must be >= 2, got {self.w_avg_samples}")
        if self.precision not in ("fp32", "bf16", "fp16"):  # latentkit.nets.precision.PRECISIONS (no torch here)
            raise InputError(f"precision must be one of ('fp32', 'bf16', 'fp16'), got {self.precision!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (the stopping rule's only when it is on, so the fingerprints of
        runs without it stay as they were)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        if not self.stop_tol:
            del out["stop_tol"], out["stop_window"]
        return out


def learning_rate_at(s: ProjectionSettings, step: int) -> float:
    """NVIDIA's projector schedule at ``step``: a linear ramp-up over the first ``lr_rampup_length`` of the
    run and a cosine ramp-down over the last ``lr_rampdown_length``, peaking at ``learning_rate``."""
    t = step / s.num_steps
    ramp = min(1.0, (1.0 - t) / s.lr_rampdown_length) if s.lr_rampdown_length > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * (min(1.0, t / s.lr_rampup_length) if s.lr_rampup_length > 0 else 1.0)
    return float(s.learning_rate * ramp)


NVIDIA_INITIAL_NOISE_FACTOR = 0.05
"""NVIDIA's projector's latent noise at step 0 (``initial_noise_factor``), decaying to 0 at 75 % of the run;
latentkit's default is no latent noise (see ``ProjectionSettings.initial_noise_factor``)."""

ENCODER_START_LEARNING_RATE = 0.03
"""Peak learning rate for a start from an encoder's prediction (NVIDIA's 0.1 and latent noise undo much of
a good start: on a fresh tiny net, 20 steps from the encoder reached a lower LPIPS at 0.03 without noise
than at 0.1 with it, and than 100 steps from the default start; tests/projection/test_encoder.py)."""


def from_encoder_start(s: ProjectionSettings) -> ProjectionSettings:
    """``s`` with ``start='encoder'`` and the gentler schedule that suits a good start: peak learning rate
    :data:`ENCODER_START_LEARNING_RATE` (what ``latentkit project --init encoder`` runs; the latent noise stays
    as ``s`` has it, none by default)."""
    return dataclasses.replace(s, start="encoder", learning_rate=ENCODER_START_LEARNING_RATE)


def converged(s: ProjectionSettings, losses: list[list[float]], steps_done: int | None = None) -> bool:
    """The stopping rule: True when ``s.stop_tol > 0``, at least ``2 * s.stop_window`` steps were run and,
    for every image, the mean total loss of the last window improved on the window before by less than
    ``stop_tol`` of it. ``losses``: per step, the N images' total losses (the last ones at least).

    With ``steps_done`` (the steps run so far), both windows must also lie after the latent-noise ramp
    (``noise_ramp_length * num_steps``, when ``initial_noise_factor > 0``): while noise is added the loss
    plateaus by design, and on the real model a rule that looked there stopped at step 223 of 300 with
    LPIPS 0.048 where the run went on to 0.030 (benchmarks/results/time_to_quality.json).
    """
    w = s.stop_window
    if s.stop_tol <= 0 or len(losses) < 2 * w:
        return False
    if steps_done is not None and s.initial_noise_factor > 0 and steps_done - 2 * w < math.ceil(s.noise_ramp_length * s.num_steps):
        return False
    for k in range(len(losses[-1])):
        prev = sum(row[k] for row in losses[-2 * w : -w]) / w
        cur = sum(row[k] for row in losses[-w:]) / w
        if prev - cur >= s.stop_tol * abs(prev):
            return False
    return True


def noise_scale_at(s: ProjectionSettings, step: int) -> float:
    """Scale of the latent noise at ``step`` (in units of the w standard deviation): quadratic decay from
    ``initial_noise_factor`` to zero at ``noise_ramp_length`` of the run."""
    if s.noise_ramp_length <= 0:
        return 0.0
    return s.initial_noise_factor * max(0.0, 1.0 - (step / s.num_steps) / s.noise_ramp_length) ** 2
