"""The optimisation behind :func:`latentkit.projection.project.project`: its state and one step.

:class:`ProjectionState` holds N images' latents, noise
inputs, Adam state, per-image random streams and loss history. One :meth:`ProjectionState.step` is one
step of NVIDIA's projector (learning-rate and latent-noise schedules, LPIPS / MSE / noise-autocorrelation
/ prior terms, noise renormalisation); :meth:`~ProjectionState.save` and :meth:`~ProjectionState.restore`
checkpoint it bit for bit. The driving loop, targets and results live in :mod:`latentkit.projection.project`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from latentkit.errors import InputError
from latentkit.latent.prior_protocol import WhitenedPrior
from latentkit.nets.generator import Generator
from latentkit.nets.precision import autocast
from latentkit.projection.cpu_parallel import (available_memory, core_budget, core_groups, memory_workers, run_per_core,
                                               saved_bytes)
from latentkit.projection.steps import read_checkpoint, write_checkpoint
from latentkit.projection.settings import LOSS_TERMS, ProjectionSettings, learning_rate_at, noise_scale_at

if TYPE_CHECKING:
    from latentkit.latent.prior_protocol import LatentPrior
    from latentkit.projection.lpips import PerceptualLoss

__all__ = ["ProjectionState"]

_CHECKPOINT_VERSION = 1
log = logging.getLogger(__name__)

SIDE_BY_SIDE_FACTOR = 2.7
"""Peak memory a further image side by side adds, in units of the bytes autograd saves in its forward pass
(the backward's gradients and the worker's retained heap come on top). Measured on the default model
(MobileStyleGAN 1024 px, LPIPS at 256 px): 0.91 GB saved per image; a 4-image batch on 2 cores (two side by
side) peaked at 4.98 GB against 2.56 GB for one image, 2.42 GB more (``benchmarks/results/peak_rss_project.json``)."""


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


def _per_part(fn: Any, x: torch.Tensor, parts: list[slice]) -> list[torch.Tensor]:
    """``fn(x)`` (a list of feature maps ``[N, ...]``) computed part by part and joined: on the CPU each image
    alone, so an image's features never depend on the batch it is in (convolutions pick kernels by batch size)."""
    pieces = [fn(x[part]) for part in parts]
    return [torch.cat(level) for level in zip(*pieces)]


@torch.no_grad()
def _renormalise(buf: torch.Tensor) -> None:
    """In place, per image: zero mean and unit variance of a noise buffer ``[N, 1, H, W]``."""
    buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
    buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


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
        prior: a fitted :class:`~latentkit.latent.prior_protocol.LatentPrior` (a GaussianPrior, a
            :class:`~latentkit.latent.radius.StudentTRadius` around one, a PNPrior), or None.
        perceptual: the LPIPS network on the generator's device, or None.
        start_ws: ``[N, num_ws, w_dim]`` start latents (an encoder's prediction; ``space='w'`` starts from
            their mean over layers); None: the start ``settings.start`` names.

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
        prior: LatentPrior | None,
        perceptual: PerceptualLoss | None,
        start_ws: torch.Tensor | None = None,
    ) -> None:
        s = settings
        n = target.shape[0]
        device = G.w_avg.device
        self.G, self.target, self.settings, self.prior, self.net = G, target, s, prior, perceptual
        self.n, self.device = n, device
        self.target_feats = None
        if perceptual is not None:
            with torch.no_grad():
                self.target_feats = _per_part(perceptual.features, target, self._parts())

        w_avg, w_std = _w_stats(G, labels, s.w_avg_samples)  # [N, w_dim], [N]
        layers = 1 if s.space == "w" else G.num_ws
        start_w = w_avg
        if start_ws is None and (s.start == "prior_mean" or (s.start == "auto" and prior is not None)):
            if not isinstance(prior, WhitenedPrior):
                raise InputError("start='prior_mean' needs a fitted GaussianPrior (with from_coefficients) as prior=")
            with torch.no_grad():
                mode = prior.from_coefficients(torch.zeros(1, G.w_dim, device=device))  # [1, w_dim]
            start_w = mode.to(device, torch.float32).expand(n, -1)
        start_w = start_w.unsqueeze(1).repeat(1, layers, 1)  # [N, layers, w_dim]
        if start_ws is not None:
            given = start_ws.detach().to(device, torch.float32)
            start_w = given.mean(1, keepdim=True) if layers == 1 else given  # [N, layers, w_dim]
        self.in_prior = s.parametrization == "prior" or (s.parametrization == "auto" and prior is not None)
        self.whitened: WhitenedPrior | None = None
        if self.in_prior:
            if not isinstance(prior, WhitenedPrior):
                raise InputError("parametrization='prior' needs a fitted GaussianPrior as prior=")
            self.whitened = prior
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
        self._side_by_side: int | None = None  # images side by side the memory allows (0: no limit), set at the first step

    def to_w(self, x: torch.Tensor) -> torch.Tensor:
        """The optimised variable ``[N, layers, w_dim]`` as w (identity unless parametrised by the prior)."""
        return self.whitened.from_coefficients(x) if self.whitened is not None else x

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

        parts = self._parts()
        if self._side_by_side is None and (cores := core_groups(len(parts), core_budget())[0]) > 1:
            self._side_by_side = self._memory_limit(parts[0], cores)
        rows = run_per_core(forward_backward, parts, max_workers=self._side_by_side or None)  # CPU batches side by side
        self.optimizer.step()
        for buf in self.noises.values():
            _renormalise(buf)
        self.history.append(torch.cat(rows))
        return self.history[-1][:, 0].to(device)

    def _memory_limit(self, part: slice, cores: int) -> int:
        """How many of the ``cores`` side-by-side images fit in the memory available (:func:`memory_workers`),
        from one probe forward pass of image ``part`` (no backward, no random draw: the result is unchanged);
        0 where the available memory is unknown."""
        free = available_memory()
        if free is None:
            return 0
        saved = saved_bytes(lambda: self._losses(part, torch.zeros_like(self.w_opt[part].detach())))
        limit = memory_workers(int(SIDE_BY_SIDE_FACTOR * saved), free) or 0
        if limit < cores:
            log.info("projection: %d image(s) side by side instead of %d: each needs about %.1f GB and %.1f GB are "
                     "available", limit, cores, SIDE_BY_SIDE_FACTOR * saved / 1e9, free / 1e9)
        return limit

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
            if net is not None and feats is not None and self.target_feats is not None
            else zero,
            "mse": (images - self.target[part]).square().mean(dim=(1, 2, 3)) if s.mse_weight > 0 else zero,
            "noise": _noise_penalty(noises, n, self.device) if s.optimize_noise else zero,
            "prior": self._prior_term(prior, w_opt) if prior is not None else zero,
        }
        loss = (
            terms["perceptual"]
            + s.mse_weight * terms["mse"]
            + s.regularize_noise_weight * terms["noise"]
            + (s.prior_weight * terms["prior"] if prior is not None else zero)
        )  # [n]
        return loss, terms

    def _prior_term(self, prior: LatentPrior, w_opt: torch.Tensor) -> torch.Tensor:
        """``[n]``: the prior's penalty of the optimised variable ``[n, layers, w_dim]``, summed over layers.

        In w it is ``prior.penalty(w)``. In the whitened coefficients u the squared Mahalanobis distance
        is ``|u|^2`` exactly and the prior's ``radius_penalty`` maps it (the Student-t bends it, the
        Gaussian keeps it), so the two parametrizations optimise the same objective.
        """
        if self.whitened is not None:
            d2 = w_opt.square().sum(dim=2)  # [n, layers]
            return self.whitened.radius_penalty(d2).sum(dim=1)
        return prior.penalty(w_opt).sum(dim=1)

    def _precision(self):
        """Autocast context for the generator and LPIPS forward passes (``settings.precision``)."""
        return autocast(self.device, self.settings.precision)

    # Checkpoints: tensors and plain data only, read back with torch.load(weights_only=True).

    def save(self, path: Path, fingerprint: str, step: int, described: dict[str, Any] | None = None) -> None:
        """Write the state after ``step`` steps to ``path`` (atomically), with the run's description (plain
        data: :func:`run_fingerprint`'s), so a rerun with other settings can name the difference."""
        write_checkpoint(path, {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": fingerprint,
            "described": json.dumps(described or {}),
            "step": step,
            "w_opt": self.w_opt.detach().cpu(),
            "noises": {k: v.detach().cpu() for k, v in self.noises.items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": [g.get_state() for g in self.streams],
            "history": torch.stack(self.history) if self.history else torch.zeros(0),
        })

    def restore(self, path: Path, fingerprint: str, described: dict[str, Any] | None = None) -> int:
        """Load a checkpoint written by :meth:`save` and return the number of steps it had run.

        Raises:
            InputError: an unreadable file, not a projection checkpoint, or one of a different run.
        """
        state = read_checkpoint(path, version=_CHECKPOINT_VERSION, fingerprint=fingerprint, kind="projection",
                                described=described)
        _check_restored(state, self.w_opt, self.noises, path)
        _check_state_fields(state, self, path)
        with torch.no_grad():
            self.w_opt.copy_(state["w_opt"])
            for k, v in self.noises.items():
                v.copy_(state["noises"][k])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            for g, rng in zip(self.streams, state["rng"]):
                g.set_state(rng)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
            raise InputError(f"checkpoint {path}: its optimizer or random state does not fit this run ({str(err)[:120]}); "
                             "delete it to start afresh") from None
        self.history.extend(state["history"].unbind(0) if state["history"].numel() else [])
        return int(state["step"])


# --------------------------------------------------------------------------------------------------
# A projection checkpoint read back: every field checked (the file mechanics are projection/steps.py's).


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


def _check_state_fields(state: dict, run: ProjectionState, path: Path) -> None:
    """The rest of a checkpoint, field by field: the step within the run, a finite Adam state of the
    parameters' shapes, one random state per image and a finite loss history of one row per step."""
    def fail(what: str) -> InputError:
        return InputError(f"checkpoint {path}: {what}; delete it to start afresh")

    step = state["step"]
    if step > run.settings.num_steps:
        raise fail(f"step {step} is past the end of this run ({run.settings.num_steps} steps)")
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    optimizer = state.get("optimizer")
    inner = optimizer.get("state") if isinstance(optimizer, dict) else None
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    if not isinstance(inner, dict) or not isinstance(groups, list) or len(groups) != len(run.optimizer.param_groups):
        raise fail("the optimizer state is not an Adam state of this run")
    for index, entry in inner.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise fail(f"the optimizer state has an entry {index!r:.40} that is no parameter of this run")
        for name in ("exp_avg", "exp_avg_sq", "step"):
            value = entry.get(name)
            shape = torch.Size([]) if name == "step" else params[index].shape
            if not isinstance(value, torch.Tensor) or value.shape != shape or not value.is_floating_point() \
                    or not bool(torch.isfinite(value).all()) or (name != "exp_avg" and bool((value < 0).any())):
                raise fail(f"the optimizer's {name} of parameter {index} is missing, mis-shaped, negative or not finite")
    for group in groups:
        lr, betas = (group.get("lr"), group.get("betas")) if isinstance(group, dict) else (None, None)
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or not isinstance(betas, (tuple, list)):
            raise fail("the optimizer's parameter groups are damaged")
    rng = state.get("rng")
    size = run.streams[0].get_state().numel() if run.streams else 0
    if not isinstance(rng, list) or len(rng) != run.n or not all(
            isinstance(r, torch.Tensor) and r.dtype == torch.uint8 and r.shape == (size,) for r in rng):
        raise fail(f"rng must be {run.n} random states, one per image")
    history = state.get("history")
    shape = (step, run.n, 1 + len(LOSS_TERMS))
    if not isinstance(history, torch.Tensor) or not (history.shape == shape or (step == 0 and history.numel() == 0)) \
            or not bool(torch.isfinite(history).all()):
        raise fail(f"the loss history must be {list(shape)} finite numbers")
