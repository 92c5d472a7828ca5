"""The optimisation behind :func:`latentkit.projection.project.project`: its state and one step.

:class:`ProjectionState` holds N images' latents, noise
inputs, Adam state, per-image random streams and loss history. One :meth:`ProjectionState.step` is one
step of NVIDIA's projector (learning-rate and latent-noise schedules, LPIPS / MSE / noise-autocorrelation
/ prior terms, noise renormalisation); :meth:`~ProjectionState.save` and :meth:`~ProjectionState.restore`
checkpoint it bit for bit. The driving loop, targets and results live in :mod:`latentkit.projection.project`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from latentkit.errors import InputError, LatentkitError
from latentkit.latent.radius import radius_key
from latentkit.nets.generator import Generator
from latentkit.nets.precision import autocast
from latentkit.projection.cpu_parallel import run_per_core
from latentkit.projection.settings import LOSS_TERMS, ProjectionSettings, learning_rate_at, noise_scale_at

if TYPE_CHECKING:
    from latentkit.projection.lpips import PerceptualLoss

__all__ = ["ProjectionInterrupted", "ProjectionState", "fingerprint", "read_checkpoint", "run_steps", "write_checkpoint"]

_CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Pieces of the optimisation.


def _w_stats(G: Generator, c: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: mean w ``[N, w_dim]`` and the scalar std ``[N]`` of ``n_samples`` mapped samples of
    its class (NVIDIA: ``RandomState(123)``; std = sqrt(sum of squared deviations / n))."""
    device = G.w_avg.device
    z = torch.from_numpy(np.random.RandomState(123).randn(n_samples, G.z_dim)).to(device, torch.float32)
    keys = [tuple(row.tolist()) for row in c.cpu()]
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    means, stds = [], []
    for key, row in zip(keys, c):
        if key not in cache:
            with torch.no_grad():
                w = torch.cat([G.map_latent(chunk, row.expand(len(chunk), -1)) for chunk in z.split(2500)])
            mean = w.to(torch.float64).mean(0)
            std = ((w.to(torch.float64) - mean).square().sum() / n_samples).sqrt()
            cache[key] = (mean.to(torch.float32), std.to(torch.float32))
        means.append(cache[key][0])
        stds.append(cache[key][1])
    return torch.stack(means), torch.stack(stds)


def _noise_penalty(noises: dict[str, torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
    """Per image: squared autocorrelation at one-pixel shifts over a pyramid down to 8x8, ``[N]``."""
    total = torch.zeros(n, device=device)
    for buf in noises.values():
        x = buf  # [N, 1, H, W]
        while True:
            total = total + (x * x.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (x * x.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, kernel_size=2)
    return total


@torch.no_grad()
def _renormalise(buf: torch.Tensor) -> None:
    """In place, per image: zero mean and unit variance of a noise buffer ``[N, 1, H, W]``."""
    buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
    buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def fingerprint(
    G: Generator,
    targets: torch.Tensor,
    c: torch.Tensor,
    settings: ProjectionSettings,
    prior: Any,
    perceptual_weights: str | None,
) -> str:
    """sha256 of everything that identifies a run; a checkpoint resumes only a run with the same one."""
    digest = hashlib.sha256()
    digest.update(targets.numpy().tobytes())
    digest.update(c.cpu().numpy().tobytes())
    meta = {
        "settings": settings.to_dict(),
        "generator": G.sha256 or str(G.source),
        "arch": G.architecture,
        "prior": None if prior is None else type(prior).__name__,
        "perceptual": perceptual_weights,
    }
    radius = radius_key(prior)  # the Student-t's nu; absent for a Gaussian prior, whose fingerprints stay as they were
    if radius is not None:
        meta["radius"] = radius
    digest.update(json.dumps(meta, sort_keys=True).encode())
    mean = getattr(prior, "mean_", None)  # a different prior file must not resume this run
    if isinstance(mean, torch.Tensor):
        digest.update(mean.detach().to("cpu", torch.float64).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# The optimisation state.


class ProjectionState:
    """Latents, noise inputs and Adam state of N images projected together, each with its own losses.

    Building it draws the start point (the samples' mean w or the prior's mode, per ``settings.start``),
    takes the generator's stored noise buffers (renormalised per image) and seeds one latent-noise
    stream per image.

    Args:
        G: the generator (its parameters stay untouched).
        target: ``[N, C, H, W]`` in [-1, 1], on the generator's device.
        labels: ``[N, c_dim]`` class labels (``c_dim`` may be 0).
        settings: the :class:`ProjectionSettings`.
        prior: a fitted GaussianPrior, a :class:`~latentkit.latent.radius.StudentTRadius` around one, or None.
        perceptual: the LPIPS network on the generator's device, or None.

    Attributes:
        w_opt: ``[N, layers, w_dim]`` the optimised variable (w, or the prior's coefficients u);
            ``layers`` is 1 for ``space='w'``, else ``num_ws``.
        noises: name -> ``[N, 1, H, W]`` noise inputs.
        history: per step, ``[N, 5]``: total loss and the :data:`LOSS_TERMS` (CPU).

    Raises:
        InputError: ``start`` or ``parametrization`` ``'prior'``/``'prior_mean'`` without a fitted prior.
    """

    def __init__(
        self,
        G: Generator,
        target: torch.Tensor,
        labels: torch.Tensor,
        settings: ProjectionSettings,
        *,
        prior: Any,
        perceptual: PerceptualLoss | None,
    ) -> None:
        s = settings
        n = target.shape[0]
        device = G.w_avg.device
        self.G, self.target, self.settings, self.prior, self.net = G, target, s, prior, perceptual
        self.n, self.device = n, device
        self.target_feats = None
        if perceptual is not None:
            with torch.no_grad():
                self.target_feats = perceptual.features(target)

        w_avg, w_std = _w_stats(G, labels, s.w_avg_samples)  # [N, w_dim], [N]
        layers = 1 if s.space == "w" else G.num_ws
        start_w = w_avg
        if s.start == "prior_mean" or (s.start == "auto" and prior is not None):
            if prior is None or not callable(getattr(prior, "from_coefficients", None)):
                raise InputError("start='prior_mean' needs a fitted GaussianPrior (with from_coefficients) as prior=")
            with torch.no_grad():
                mode = prior.from_coefficients(torch.zeros(1, G.w_dim, device=device))  # [1, w_dim]
            start_w = mode.to(device, torch.float32).expand(n, -1)
        start_w = start_w.unsqueeze(1).repeat(1, layers, 1)  # [N, layers, w_dim]
        self.in_prior = s.parametrization == "prior" or (s.parametrization == "auto" and prior is not None)
        if self.in_prior:
            if prior is None or not callable(getattr(prior, "coefficients", None)):
                raise InputError("parametrization='prior' needs a fitted GaussianPrior as prior=")
            with torch.no_grad():
                start_w = prior.coefficients(start_w).to(torch.float32)  # u, [N, layers, w_dim]
            w_std = torch.full_like(w_std, math.sqrt(G.w_dim))  # RMS norm of u, as w_std is of w
        self.w_std = w_std
        self.w_opt = start_w.detach().clone().requires_grad_(True)  # w, or u with parametrization='prior'

        stored = {k: v.to(device, torch.float32) for k, v in G.const_noise().items()}
        self.noises = {k: v.expand(n, -1, -1, -1).clone() for k, v in stored.items()}
        if s.optimize_noise:  # the same renormalisation as after every step, so step 0 is not an outlier for Adam
            for buf in self.noises.values():
                _renormalise(buf.requires_grad_(True))
        params = [self.w_opt] + (list(self.noises.values()) if s.optimize_noise else [])
        self.optimizer = torch.optim.Adam(params, lr=s.learning_rate, betas=s.betas)
        self.streams = [torch.Generator().manual_seed(int(s.seed)) for _ in range(n)]
        self.history: list[torch.Tensor] = []  # per step: [N, 5] (total + terms)

    def to_w(self, x: torch.Tensor) -> torch.Tensor:
        """The optimised variable ``[N, layers, w_dim]`` as w (identity unless parametrised by the prior)."""
        return self.prior.from_coefficients(x) if self.in_prior else x

    def latents(self) -> torch.Tensor:
        """Current latents without latent noise, ``[N, layers, w_dim]`` (detached)."""
        with torch.no_grad():
            return self.to_w(self.w_opt.detach())

    def step(self, step: int) -> torch.Tensor:
        """Run optimisation step ``step`` (0-based) and append its losses to :attr:`history`.

        Returns:
            ``[N]`` total loss of each image at this step (detached).
        """
        s, n, device = self.settings, self.n, self.device
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(s, step)
        scale = (self.w_std * noise_scale_at(s, step)).view(n, 1, 1)
        w_noise = torch.stack([torch.randn(self.w_opt.shape[1:], generator=g) for g in self.streams]).to(device)
        self.optimizer.zero_grad(set_to_none=True)

        def forward_backward(part: slice) -> torch.Tensor:
            loss, terms = self._losses(part, w_noise[part] * scale[part])
            loss.sum().backward()  # a sum keeps each image's gradient its own
            return torch.stack([loss.detach()] + [terms[k].detach() for k in LOSS_TERMS], dim=1).cpu()

        rows = run_per_core(forward_backward, self._parts())  # one part (inline) except for CPU batches
        self.optimizer.step()
        for buf in self.noises.values():
            _renormalise(buf)
        self.history.append(torch.cat(rows))
        return self.history[-1][:, 0].to(device)

    def _parts(self) -> list[slice]:
        """How the N images are split for the forward and backward passes.

        On the CPU each image runs alone: batched convolutions and LPIPS are slower per image there than
        one image at a time (one sample keeps every feature map in cache-friendly sizes), and images run
        side by side on groups of cores (:func:`~latentkit.projection.cpu_parallel.run_per_core`), which
        beats spreading one image over all cores. Each image's result is bit-identical to projecting it
        alone with the same threads per image, and equal up to float round-off otherwise (one image alone
        gets all cores). Other devices run the whole batch.
        """
        n = self.n
        return [slice(i, i + 1) for i in range(n)] if self.device.type == "cpu" else [slice(0, n)]

    def _losses(self, part: slice, w_noise: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss ``[n]`` and its terms for images ``part`` (n of them), latent noise ``w_noise`` added."""
        G, s, prior, net = self.G, self.settings, self.prior, self.net
        w_opt = self.w_opt[part]
        n = w_opt.shape[0]
        ws = self.to_w(w_opt + w_noise).expand(-1, G.num_ws, -1)  # [n, num_ws, w_dim]
        noises = {k: v[part] for k, v in self.noises.items()}
        with self._precision():
            images = G.synthesis(ws, noise_mode="const", noise=noises or None)
            feats = net.features(images) if net is not None else None
        images = images.float()
        zero = torch.zeros(n, device=self.device)
        terms = {
            "perceptual": net.distance_from_features([f.float() for f in feats], [f[part] for f in self.target_feats])
            if net is not None
            else zero,
            "mse": (images - self.target[part]).square().mean(dim=(1, 2, 3)) if s.mse_weight > 0 else zero,
            "noise": _noise_penalty(noises, n, self.device) if s.optimize_noise else zero,
            "prior": self._prior_term(w_opt) if prior is not None else zero,
        }
        loss = (
            terms["perceptual"]
            + s.mse_weight * terms["mse"]
            + s.regularize_noise_weight * terms["noise"]
            + (s.prior_weight * terms["prior"] if prior is not None else zero)
        )  # [n]
        return loss, terms

    def _prior_term(self, w_opt: torch.Tensor) -> torch.Tensor:
        """``[n]``: the prior's penalty of the optimised variable ``[n, layers, w_dim]``, summed over layers.

        In w it is ``prior.mahalanobis(w)``. In the whitened coefficients u the squared Mahalanobis distance
        is ``|u|^2`` exactly; a prior with a ``radius_penalty`` (the Student-t) maps it through that, so the
        two parametrizations optimise the same objective (the Gaussian's penalty is ``|u|^2`` itself).
        """
        if not self.in_prior:
            return self.prior.mahalanobis(w_opt).sum(dim=1)
        d2 = w_opt.square().sum(dim=2)  # [n, layers]
        penalty = getattr(self.prior, "radius_penalty", None)
        return (penalty(d2) if callable(penalty) else d2).sum(dim=1)

    def _precision(self):
        """Autocast context for the generator and LPIPS forward passes (``settings.precision``)."""
        return autocast(self.device, self.settings.precision)

    # Checkpoints: tensors and plain data only, read back with torch.load(weights_only=True).

    def save(self, path: Path, fingerprint: str, step: int) -> None:
        """Write the state after ``step`` steps to ``path`` (atomically)."""
        write_checkpoint(path, {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": fingerprint,
            "step": step,
            "w_opt": self.w_opt.detach().cpu(),
            "noises": {k: v.detach().cpu() for k, v in self.noises.items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": [g.get_state() for g in self.streams],
            "history": torch.stack(self.history) if self.history else torch.zeros(0),
        })

    def restore(self, path: Path, fingerprint: str) -> int:
        """Load a checkpoint written by :meth:`save` and return the number of steps it had run.

        Raises:
            InputError: an unreadable file, not a projection checkpoint, or one of a different run.
        """
        state = read_checkpoint(path, version=_CHECKPOINT_VERSION, fingerprint=fingerprint, kind="projection")
        _check_restored(state, self.w_opt, self.noises, path)
        with torch.no_grad():
            self.w_opt.copy_(state["w_opt"])
            for k, v in self.noises.items():
                v.copy_(state["noises"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, rng in zip(self.streams, state["rng"]):
            g.set_state(rng)
        self.history.extend(state["history"].unbind(0) if state["history"].numel() else [])
        return int(state["step"])


# --------------------------------------------------------------------------------------------------
# Checkpoints and the step loop, shared by projection and pivotal tuning: tensors and plain data only,
# read back with torch.load(weights_only=True).


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` a checkpoint dict (tensors and plain data) to ``path`` atomically."""
    from latentkit.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, *, version: int, fingerprint: str, kind: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`write_checkpoint`; it must have ``version`` and ``fingerprint``.

    Raises:
        InputError: an unreadable file, not a ``kind`` checkpoint of this version, or one of another run.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise InputError(f"cannot read checkpoint {path}: {err}; delete it to start afresh") from err
    if not isinstance(state, dict) or state.get("version") != version:
        raise InputError(f"{path} is not a latentkit {kind} checkpoint (version {version}); delete it")
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint {path} belongs to another run (different targets, settings or generator): delete it "
            "or use another output folder"
        )
    return state


class ProjectionInterrupted(LatentkitError, KeyboardInterrupt):
    """A run stopped by Ctrl-C: ``step`` of ``num_steps`` were done, saved in ``checkpoint`` if given."""

    def __init__(self, step: int, num_steps: int, checkpoint: Path | None) -> None:
        self.step, self.num_steps, self.checkpoint = step, num_steps, checkpoint
        saved = f"; the state is saved in {checkpoint}: run the same again to resume" if checkpoint else ""
        super().__init__(f"interrupted at step {step} of {num_steps}{saved}")


class SteppedState(Protocol):
    """An optimisation driven by :func:`run_steps` (:class:`ProjectionState`, the tuning state)."""

    def step(self, step: int) -> torch.Tensor: ...

    def save(self, path: Path, fingerprint: str, step: int) -> None: ...


def run_steps(
    state: SteppedState,
    *,
    start: int,
    num_steps: int,
    checkpoint: Path | None,
    run_id: str,
    checkpoint_every: int,
    progress: bool,
    desc: str,
    after_step: Callable[[int], None] | None = None,
) -> None:
    """Run steps ``start .. num_steps - 1`` with a tqdm bar, checkpoints every ``checkpoint_every`` steps and
    at the end, and a checkpoint on Ctrl-C (then :class:`ProjectionInterrupted`)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=not progress, leave=False)
    done = start
    try:
        for step in range(start, num_steps):
            loss = state.step(step)
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.mean()):.4f}")
            if after_step is not None:
                after_step(step)
            if checkpoint is not None and (done % checkpoint_every == 0 or done == num_steps):
                state.save(checkpoint, run_id, done)
    except KeyboardInterrupt:
        if checkpoint is not None and done > start:
            state.save(checkpoint, run_id, done)
        raise ProjectionInterrupted(done, num_steps, checkpoint) from None
    finally:
        bar.close()


def _check_restored(state: dict, w_opt: torch.Tensor, noises: dict[str, torch.Tensor], path: Path) -> None:
    """A checkpoint with the right fingerprint must still hold finite tensors of the right shapes."""
    tensors = {"w_opt": (state.get("w_opt"), w_opt)}
    stored_noises = state.get("noises")
    if not isinstance(stored_noises, dict) or set(stored_noises) != set(noises):
        raise InputError(f"checkpoint {path} has other noise buffers than this run; delete it to start afresh")
    tensors.update({f"noise {k}": (stored_noises[k], v) for k, v in noises.items()})
    for name, (stored, ours) in tensors.items():
        if not isinstance(stored, torch.Tensor) or stored.shape != ours.shape or not bool(torch.isfinite(stored).all()):
            raise InputError(f"checkpoint {path}: {name} is missing, mis-shaped or not finite; delete it to start afresh")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"checkpoint {path}: step {step!r:.20} is not a count of steps; delete it to start afresh")
