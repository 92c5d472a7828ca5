"""Pivotal tuning (PTI, Roich et al. 2022): fine-tune the generator's weights around a projected latent.

A projection (the pivot ``ws``) reaches the target only as closely as the generator's range allows;
tuning the synthesis weights for a few hundred steps closes most of the remaining gap while a locality
term keeps the generator unchanged away from the pivot, so edits of the pivot still work. The defaults,
PTI's published constants and where latentkit departs from them are documented in
:mod:`latentkit.projection.tune_settings`.

Each image gets its own delta (:class:`~latentkit.projection.delta.GeneratorDelta`), low-rank by default.
N images run together with one Adam over all their updates (Adam is elementwise, so each image's run is
the one it would have alone); each image's forward and backward pass uses its own weights through
:func:`~latentkit.projection.delta.synthesis_with`, so ``G`` is never modified. The state can be
checkpointed and resumed like a projection's (:func:`~latentkit.projection.state.run_steps`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import InputError
from latentkit.nets.generator import Generator
from latentkit.projection.delta import (
    GeneratorDelta,
    as_matrix_shape,
    low_rank_pays,
    network_fingerprint,
    synthesis_with,
    tunable_parameters,
)
from latentkit.projection.lpips import PerceptualLoss
from latentkit.projection.settings import DEFAULT_CHECKPOINT_EVERY
from latentkit.projection.steps import read_checkpoint, run_steps, write_checkpoint
from latentkit.projection.tune_settings import TuneSettings

__all__ = ["TUNE_TERMS", "TuneResult", "TuneSettings", "TuneState", "tune"]

logger = logging.getLogger(__name__)

TUNE_TERMS = ("lpips", "l2", "locality")  # TuneResult.loss_terms keys, in order
_CHECKPOINT_VERSION = 1


@dataclass
class TuneResult:
    """What :func:`tune` made.

    Attributes:
        deltas: one :class:`GeneratorDelta` per image.
        images: ``[N, C, H, W]`` each image's tuned generator at its pivot (raw output, not clamped).
        pivot_images: ``[N, C, H, W]`` the original generator at the pivots.
        targets: ``[N, C, H, W]`` the targets as fitted, in [-1, 1] (CPU).
        losses: ``[N, num_steps]`` total loss per image per step (CPU).
        loss_terms: ``'lpips'``, ``'l2'``, ``'locality'`` -> ``[N, num_steps]`` unweighted values (locality 0
            at steps without it).
        settings: the :class:`TuneSettings` used.
        perceptual_weights: where the LPIPS weights came from.
    """

    deltas: list[GeneratorDelta]
    images: torch.Tensor
    pivot_images: torch.Tensor
    targets: torch.Tensor
    losses: torch.Tensor
    loss_terms: dict[str, torch.Tensor]
    settings: TuneSettings
    perceptual_weights: str | None = None

    @property
    def delta(self) -> GeneratorDelta:
        """The delta of a single image (use :attr:`deltas` for a batch)."""
        if len(self.deltas) != 1:
            raise InputError(f"this result holds {len(self.deltas)} deltas, one per image: use result.deltas[k]")
        return self.deltas[0]


class TuneState:
    """The trainable updates, Adam state, random streams and loss history of N images tuned together.

    Each tuned parameter ``p`` of image ``i`` is ``p + rms(p) * D_i`` with ``D_i`` full, or ``A_i @ B_i``
    (``A_i`` zero, ``B_i ~ N(0, lora_scale**2 / r)``) where a rank-``r`` update is smaller than a full one.

    Args:
        G: the generator (never modified).
        target: ``[N, C, H, W]`` on G's device.
        ws: ``[N, num_ws, w_dim]`` the pivots.
        noise: name -> ``[N, 1, H, W]`` the pivots' noise inputs, or None (the stored ones).
        labels: ``[N, c_dim]`` class labels (for the locality samples).
        settings: the :class:`TuneSettings`.
        net: LPIPS on G's device, or None when no term uses it.
        prior: a fitted prior with ``sample`` (locality samples drawn from it) or None (mapped z, PTI).
    """

    def __init__(self, G: Generator, target: torch.Tensor, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None,
                 labels: torch.Tensor, settings: TuneSettings, *, net: PerceptualLoss | None, prior: Any = None) -> None:
        s = settings
        self.G, self.target, self.ws, self.noise, self.labels, self.settings, self.net = G, target, ws, noise, labels, s, net
        self.prior = prior
        self.n = target.shape[0]
        self.network = network_fingerprint(G)  # hashes every weight: once per run, not per image
        self.names = tunable_parameters(G, ws, noise)
        params = dict(G.named_parameters(remove_duplicate=False))
        self.base = {name: params[name].detach() for name in self.names}
        self.scale = {name: _rms(p) for name, p in self.base.items()}
        self.rank = _fitting_rank(G, self.base, s)
        self.low_rank = {name for name, p in self.base.items() if low_rank_pays(p.shape, self.rank)}
        self.vars: list[dict[str, list[torch.Tensor]]] = []  # per image: name -> [D] or [A, B]
        for _ in range(self.n):  # every image starts alike: its result does not depend on its place in the batch
            init = torch.Generator().manual_seed(s.seed)
            self.vars.append({name: self._init(name, init) for name in self.names})
        self.target_feats = None  # per image, so each image's numbers are those it has alone
        if net is not None:
            with torch.no_grad():
                per_image = [net.features(target[i : i + 1]) for i in range(self.n)]
            self.target_feats = [torch.cat(level) for level in zip(*per_image)]
        flat = [t for image in self.vars for parts in image.values() for t in parts]
        self.optimizer = torch.optim.Adam(flat, lr=s.lr, betas=s.betas)
        self.streams = [torch.Generator().manual_seed(s.seed) for _ in range(self.n)]  # locality samples
        self.history: list[torch.Tensor] = []  # per step: [N, 4] (total + TUNE_TERMS)

    def _init(self, name: str, gen: torch.Generator) -> list[torch.Tensor]:
        p, r = self.base[name], self.rank
        if name not in self.low_rank:
            return [torch.zeros_like(p).requires_grad_(True)]
        out, rest = as_matrix_shape(p.shape)
        b = torch.randn(r, rest, generator=gen) * (self.settings.lora_scale / r**0.5)
        return [torch.zeros(out, r, device=p.device).requires_grad_(True), b.to(p.device).requires_grad_(True)]

    def weights(self, i: int) -> dict[str, torch.Tensor]:
        """Image ``i``'s tuned parameters, differentiable in its updates."""
        out = {}
        for name, parts in self.vars[i].items():
            p = self.base[name]
            update = (parts[0] @ parts[1]).reshape(p.shape) if len(parts) == 2 else parts[0]
            out[name] = p + self.scale[name] * update
        return out

    def delta(self, i: int) -> GeneratorDelta:
        """Image ``i``'s current updates as a :class:`GeneratorDelta` (the scale folded into ``A``)."""
        updates: dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for name, parts in self.vars[i].items():
                scaled = (parts[0] * self.scale[name]).detach().cpu().clone()
                updates[name] = (scaled, parts[1].detach().cpu().clone()) if len(parts) == 2 else scaled
        return GeneratorDelta(updates=updates, rank=self.rank, network=self.network,
                              architecture=self.G.architecture, generator_sha256=self.G.sha256,
                              metadata={"tune_settings": json.dumps(self.settings.to_dict(), sort_keys=True)})

    def step(self, step: int) -> torch.Tensor:
        """Run step ``step`` for every image; returns ``[N]`` total losses (detached) and records the terms."""
        s = self.settings
        self.optimizer.zero_grad(set_to_none=True)
        regularise = s.locality_samples > 0 and step % s.locality_interval == 0
        rows = []
        for i in range(self.n):
            weights = self.weights(i)
            noise = None if self.noise is None else {k: v[i : i + 1] for k, v in self.noise.items()}
            img = synthesis_with(self.G, weights, self.ws[i : i + 1], noise=noise).float()
            zero = torch.zeros((), device=img.device)
            lp = zero
            if self.net is not None and self.target_feats is not None and s.lpips_weight > 0:
                lp = self.net.distance_from_features(self.net.features(img), [f[i : i + 1] for f in self.target_feats])[0]
            l2 = (img - self.target[i : i + 1]).square().mean()
            loc = self._locality(i, weights) if regularise else zero
            loss = s.lpips_weight * lp + s.l2_weight * l2 + loc
            loss.backward()
            rows.append(torch.stack([loss.detach(), lp.detach(), l2.detach(), loc.detach()]).cpu())
        self.optimizer.step()
        self.history.append(torch.stack(rows))
        return self.history[-1][:, 0]

    def _locality(self, i: int, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """PTI's locality term: original vs tuned generator at latents ``alpha`` away from the pivot, toward
        random samples (mapped with truncation, or drawn from the prior)."""
        G, s, k = self.G, self.settings, self.settings.locality_samples
        device = self.ws.device
        pivot = self.ws[i : i + 1]  # [1, num_ws, w_dim]
        seed = int(torch.randint(0, 2**31 - 1, (), generator=self.streams[i]))
        with torch.no_grad():
            if self.prior is not None and callable(getattr(self.prior, "sample", None)):
                w = self.prior.sample(k, seed=seed, device=device)
                w = G.class_average(self.labels[i : i + 1]).lerp(w, s.locality_truncation)
                samples = w.unsqueeze(1).expand(-1, G.num_ws, -1)
            else:
                z = torch.randn(k, G.z_dim, generator=torch.Generator().manual_seed(seed))
                c = self.labels[i : i + 1].expand(k, -1) if G.c_dim else None
                samples = G.mapping(z.to(device), c, truncation_psi=s.locality_truncation)
            direction = samples - pivot  # [k, num_ws, w_dim]
            norm = direction.flatten(1).norm(dim=1).clamp_min(1e-8).view(k, 1, 1)
            points = pivot + s.locality_alpha * direction / norm
            before = G.synthesis(points, noise_mode="const").float()
        after = synthesis_with(G, weights, points, noise_mode="const").float()
        l2_weight, lpips_weight = s.locality_weights
        total = l2_weight * (after - before).square().mean(dim=(1, 2, 3))
        if self.net is not None and lpips_weight > 0:
            total = total + lpips_weight * self.net(after, before)
        return total.mean()

    def save(self, path: Path, fingerprint: str, step: int, described: dict[str, Any] | None = None) -> None:
        """Checkpoint the state after ``step`` steps (atomically), with the run's description ``described``
        (:func:`describe_run`), so a rerun with other settings is told which ones differ."""
        write_checkpoint(path, {
            "version": _CHECKPOINT_VERSION, "fingerprint": fingerprint, "step": step,
            "described": json.dumps(described or {}),
            "vars": [{name: [t.detach().cpu() for t in parts] for name, parts in image.items()} for image in self.vars],
            "optimizer": self.optimizer.state_dict(),
            "rng": [g.get_state() for g in self.streams],
            "history": torch.stack(self.history) if self.history else torch.zeros(0),
        })

    def restore(self, path: Path, fingerprint: str, described: dict[str, Any] | None = None) -> int:
        """Load a checkpoint of this run; returns the steps it had done.

        Args:
            described: this run's :func:`describe_run`; a refusal names the settings that differ from the stored one.

        Raises:
            InputError: unreadable, another run's, or tensors that do not fit this run.
        """
        state = read_checkpoint(path, version=_CHECKPOINT_VERSION, fingerprint=fingerprint, kind="tuning",
                                described=described)
        stored = state.get("vars") or []
        try:
            with torch.no_grad():
                for image, saved in zip(self.vars, stored, strict=True):
                    for name, parts in image.items():
                        for t, v in zip(parts, saved[name], strict=True):
                            if v.shape != t.shape or not bool(torch.isfinite(v).all()):
                                raise ValueError(name)
                            t.copy_(v)
            self.optimizer.load_state_dict(state["optimizer"])
        except (TypeError, KeyError, ValueError) as err:
            raise InputError(f"checkpoint {path} does not fit this tuning run ({err}); delete it to start afresh") from None
        for g, rng in zip(self.streams, state["rng"]):
            g.set_state(rng)
        self.history.extend(state["history"].unbind(0) if state["history"].numel() else [])
        return int(state["step"])


def delta_bytes(base: dict[str, torch.Tensor], rank: int) -> int:
    """Bytes (float32) of a delta of rank ``rank`` (0: full) over the parameters ``base``."""
    total = 0
    for p in base.values():
        if low_rank_pays(p.shape, rank):
            out, rest = as_matrix_shape(p.shape)
            total += rank * (out + rest)
        else:
            total += p.numel()
    return 4 * total


def _fitting_rank(G: Generator, base: dict[str, torch.Tensor], s: TuneSettings) -> int:
    """``s.delta_rank``, halved (down to 1) while the delta would exceed ``s.max_delta_fraction`` of G's
    parameter bytes (narrow networks, where a rank-r factor is a large part of each weight)."""
    budget = s.max_delta_fraction * 4 * sum(p.numel() for p in G.parameters())
    rank = s.delta_rank
    while rank > 1 and delta_bytes(base, rank) > budget:
        rank //= 2
    if rank != s.delta_rank:
        logger.info("tune: rank %d -> %d, so the delta stays within %.3g %% of the generator's bytes", s.delta_rank,
                    rank, 100 * s.max_delta_fraction)
    if rank and delta_bytes(base, rank) > budget:
        logger.info("tune: even rank %d is %.1f %% of this (narrow) generator's bytes", rank,
                    100 * delta_bytes(base, rank) / (budget / s.max_delta_fraction))
    return rank


def _rms(p: torch.Tensor) -> float:
    """The scale of a parameter's updates: its RMS (1 for an all-zero parameter)."""
    rms = float(p.detach().float().square().mean().sqrt())
    return rms if rms > 1e-8 else 1.0


def describe_run(network: str, settings: TuneSettings, prior: Any, perceptual: str | None) -> dict[str, Any]:
    """The settings part of a tuning run's identity, as JSON-able data: what a refused checkpoint names.
    ``network``: :func:`~latentkit.projection.delta.network_fingerprint` of the generator."""
    return {"settings": settings.to_dict(), "network": network, "perceptual": perceptual,
            "prior": None if prior is None else type(prior).__name__}


def run_id(target: torch.Tensor, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None, labels: torch.Tensor,
           prior: Any, described: dict[str, Any]) -> str:
    """sha256 of everything that decides a tuning run (a checkpoint resumes only the same one): the tensors,
    the prior's mean and the run's :func:`describe_run` (computed once by the caller: it hashes G's weights)."""
    digest = hashlib.sha256()
    for t in [target, ws, labels] + ([noise[k] for k in sorted(noise)] if noise else []):
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    mean = getattr(prior, "mean_", None)
    if isinstance(mean, torch.Tensor):
        digest.update(mean.detach().to("cpu", torch.float64).numpy().tobytes())
    digest.update(json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()


def tune(
    G: Generator,
    targets: Any,
    ws: torch.Tensor,
    *,
    settings: TuneSettings | None = None,
    prior: Any = None,
    noise: dict[str, torch.Tensor] | None = None,
    c: torch.Tensor | None = None,
    perceptual_net: PerceptualLoss | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    progress: bool = True,
) -> TuneResult:
    """Tune ``G``'s synthesis weights so that each pivot ``ws[i]`` renders ``targets[i]`` (PTI).

    Args:
        G: the generator (left untouched; each image's tuned weights are ``result.deltas[i].apply(G)``).
        targets: image path(s) or float tensors ``[N, C, H, W]`` in [-1, 1], prepared as
            :func:`~latentkit.projection.project.prepare_targets` does for a projection.
        ws: ``[N, num_ws, w_dim]`` the pivots, e.g. ``project(...).ws``.
        settings: the :class:`TuneSettings` (None: PTI's defaults and latentkit's default rank).
        prior: a fitted prior: the locality term's random latents are then drawn from it instead of mapped z.
        noise: name -> ``[N, 1, H, W]`` the noise inputs the pivots were projected with
            (``project(...).noises``); None: the stored ones.
        c: class labels ``[N, c_dim]`` for conditional generators.
        perceptual_net: a ready LPIPS (:func:`~latentkit.projection.lpips.lpips_vgg`) to reuse.
        checkpoint: file to checkpoint to every ``checkpoint_every`` steps and on Ctrl-C; an existing
            checkpoint of the same run is resumed.
        checkpoint_every: steps between checkpoints.
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`TuneResult`; ``result.images`` are rendered with the stored deltas, so
        ``deltas[i].apply(G).synthesis(ws[i:i+1], noise=...)`` reproduces them.

    Raises:
        InputError: invalid options or targets, or a checkpoint of another run.
        ShapeError: ``ws``, ``noise`` or ``c`` of the wrong shape.
        ProjectionInterrupted: Ctrl-C; the state was checkpointed first when ``checkpoint`` is given.

    Example:
        >>> pivot = project(G, "face.png", prior=prior)  # doctest: +SKIP
        >>> result = tune(G, "face.png", pivot.ws, noise=pivot.noises)  # doctest: +SKIP
        >>> result.delta.save("tuned.safetensors")  # doctest: +SKIP
    """
    from latentkit.checks import check_finite, check_shape
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import prepare_targets

    s = settings if settings is not None else TuneSettings()
    if not isinstance(s, TuneSettings):
        raise InputError(f"settings must be a TuneSettings, got {type(s).__name__}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    device = G.w_avg.device
    target_cpu = prepare_targets(G, targets)
    n = target_cpu.shape[0]
    check_shape(ws, [n, G.num_ws, G.w_dim], "ws")
    check_finite(ws, "ws")
    pivots = ws.detach().to(device, torch.float32)
    noise_dev = None
    if noise:
        stored = G.const_noise()
        if set(noise) != set(stored):
            raise InputError(f"noise must have the generator's noise inputs {sorted(stored)}, got {sorted(noise)}")
        for k, v in noise.items():
            check_shape(v, [n, 1, *stored[k].shape[2:]], f"noise[{k!r}]")
        noise_dev = {k: v.detach().to(device, torch.float32) for k, v in noise.items()}
    labels = G.prepare_labels(c, n)
    net = perceptual_net
    if s.uses_lpips and net is None:
        net = lpips_vgg(s.perceptual_weights, device=device, max_resolution=s.max_perceptual_resolution)
    net = net.to(device) if net is not None and s.uses_lpips else None
    target = target_cpu.to(device)
    state = TuneState(G, target, pivots, noise_dev, labels, s, net=net, prior=prior)
    logger.info("tune: %d parameters of %s, rank %d (%d low-rank)", len(state.names), G.architecture, state.rank,
                len(state.low_rank))
    ckpt = Path(checkpoint) if checkpoint is not None else None
    described = describe_run(state.network, s, prior, getattr(net, "weights", None))
    key = run_id(target_cpu, pivots, noise_dev, labels, prior, described)
    start = state.restore(ckpt, key, described) if ckpt is not None and ckpt.is_file() else 0
    run_steps(state, start=start, num_steps=s.num_steps, checkpoint=ckpt, run_id=key, checkpoint_every=checkpoint_every,
              progress=progress, desc="tune", described=described)
    deltas = [state.delta(i) for i in range(n)]
    with torch.no_grad():
        images, pivot_images = [], []
        for i, delta in enumerate(deltas):
            one = None if noise_dev is None else {k: v[i : i + 1] for k, v in noise_dev.items()}
            images.append(synthesis_with(G, delta.weights(G), pivots[i : i + 1], noise=one))
            pivot_images.append(G.synthesis(pivots[i : i + 1], noise_mode="const", noise=one))
    table = torch.stack(state.history, dim=2)  # [N, 4, num_steps]
    return TuneResult(deltas=deltas, images=torch.cat(images), pivot_images=torch.cat(pivot_images), targets=target_cpu,
                      losses=table[:, 0].contiguous(),
                      loss_terms={k: table[:, j + 1].contiguous() for j, k in enumerate(TUNE_TERMS)},
                      settings=s, perceptual_weights=getattr(net, "weights", None))


def render_tuned(G: Generator, delta: GeneratorDelta, ws: torch.Tensor,
                 noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``delta.apply(G).synthesis(ws, noise=noise)`` without copying ``G``: ``[N, C, H, W]``."""
    with torch.no_grad():
        return synthesis_with(G, delta.weights(G), ws.to(G.w_avg.device), noise=noise)


def stack_noise(noises: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """Per-image noise dicts ``[1, 1, H, W]`` -> one dict of ``[N, 1, H, W]`` (None when they are empty)."""
    if not noises or not noises[0]:
        return None
    return {k: torch.cat([nz[k] for nz in noises]) for k in noises[0]}
