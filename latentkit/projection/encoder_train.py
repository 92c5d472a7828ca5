"""Training an encoder for any generator on the generator's own samples (latent and image pairs are free).

Samples: z drawn from explicit seeds, mapped to W, and (with probability ``mixing``) two w's crossed over
at a random layer, so the targets cover W+ as style mixing does; the generator renders each with its
stored noise, and the image is area-resized to the encoder's input size. They are written in chunks to a
work folder (``<out>.work/`` by default), each chunk from its own seed, so an interrupted run renders only
what is missing. The target of each sample is the prior's whitened coefficients ``u`` per layer.

Losses: the mean squared error of the predicted coefficients (1.0 is what the untrained encoder, which
predicts the prior's mode, scores; a held-out set of samples gives the validation curve), plus optionally
``image_weight`` times LPIPS between the generator's rendering of the prediction and the sample (a
generator pass per step). The encoder, Adam state, step, random state and curve are checkpointed
atomically every ``checkpoint_every`` steps and on Ctrl-C, and the encoder file ``out`` is rewritten at
each checkpoint, so a partly trained encoder is always usable; the same call resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import InputError, LatentkitError
from latentkit.nets.generator import Generator
from latentkit.projection.encoder import ResNetEncoder, default_config, network_fingerprint, prior_head
from latentkit.projection.encoder_settings import EncoderTrainSettings

__all__ = ["EncoderTrainSettings", "EncoderTrainResult", "EncoderTrainingInterrupted", "train_encoder"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
_CHUNK = 16  # samples per cache file


@dataclass
class EncoderTrainResult:
    """What :func:`train_encoder` did: the encoder, its file, and the curve (``history``: one dict per
    checkpoint with ``step``, ``seconds``, ``train_latent``, ``val_latent`` and ``image`` losses)."""

    encoder: ResNetEncoder
    path: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)


class EncoderTrainingInterrupted(LatentkitError, KeyboardInterrupt):
    """Ctrl-C during training: the state was saved; the same command resumes."""

    def __init__(self, step: int, steps: int, work_dir: Path) -> None:
        self.step = step
        super().__init__(f"encoder training interrupted at step {step} of {steps}; the state is saved in "
                         f"{work_dir}: run the same again to resume")


def _sample_chunk(G: Generator, seed: int, n: int, mixing: float, resolution: int) -> dict[str, torch.Tensor]:
    """``n`` samples from ``seed``: ``images [n, C, r, r]``, ``ws [n, num_ws, w_dim]`` (CPU float32)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2 * n, G.z_dim, generator=g)
    mix = torch.rand(n, generator=g) < mixing
    cut = torch.randint(1, max(2, G.num_ws), (n,), generator=g)
    device = G.w_avg.device
    with torch.no_grad():
        classes = torch.randint(max(1, G.c_dim), (n,), generator=g)
        c = torch.eye(G.c_dim)[classes].repeat(2, 1).to(device) if G.c_dim else G.prepare_labels(None, 2 * n)
        w = G.map_latent(z.to(device), c)  # [2n, w_dim]
        layer = torch.arange(G.num_ws, device=device)
        second = (mix.to(device)[:, None] & (layer[None] >= cut.to(device)[:, None]))  # [n, num_ws]
        ws = torch.where(second[..., None], w[n:, None], w[:n, None])  # [n, num_ws, w_dim]
        images = torch.cat([G.synthesis(part, noise_mode="const") for part in ws.split(4)])
        images = _resize(images.clamp(-1, 1), resolution)
    return {"images": images.cpu().float().contiguous(), "ws": ws.cpu().float().contiguous()}


def _resize(images: torch.Tensor, r: int) -> torch.Tensor:
    import torch.nn.functional as F

    if images.shape[-1] == r:
        return images
    if images.shape[-1] > r:
        return F.adaptive_avg_pool2d(images, r)
    return F.interpolate(images, size=(r, r), mode="bicubic", antialias=True, align_corners=False)


def _load_cache(G: Generator, folder: Path, tag: str, base_seed: int, total: int, mixing: float,
                resolution: int, progress: bool, shard: tuple[int, int]) -> dict[str, torch.Tensor]:
    """All ``total`` samples of one set, rendering (and caching) the chunks that are missing; under torchrun
    rank R renders chunks ``k % world == R`` first, and after a barrier every rank reads them all."""
    from tqdm.auto import tqdm

    chunks = []
    n_chunks = -(-total // _CHUNK)
    rank, world = shard
    if world > 1:
        import torch.distributed as dist

        for k in range(rank, n_chunks, world):
            _chunk(G, folder, tag, base_seed, k, mixing, resolution)
        dist.barrier()
    bar = tqdm(total=n_chunks * _CHUNK, desc=f"render {tag} samples", disable=not progress, leave=False)
    for k in range(n_chunks):
        chunks.append(_chunk(G, folder, tag, base_seed, k, mixing, resolution))
        bar.update(_CHUNK)
    bar.close()
    return {key: torch.cat([c[key] for c in chunks])[:total] for key in ("images", "ws")}


def _chunk(G: Generator, folder: Path, tag: str, base_seed: int, k: int, mixing: float,
           resolution: int) -> dict[str, torch.Tensor]:
    """Chunk ``k`` of a set from the cache, rendered and written (atomically) when missing or damaged."""
    from safetensors.torch import load_file, save_file

    from latentkit.io import atomic_path

    path = folder / f"{tag}-{k:05d}.safetensors"
    chunk = None
    if path.is_file():
        try:
            chunk = load_file(str(path))
            if set(chunk) != {"images", "ws"} or chunk["ws"].shape[1:] != (G.num_ws, G.w_dim):
                chunk = None
        except Exception:  # noqa: BLE001 - a damaged chunk is rendered again
            chunk = None
    if chunk is None:
        chunk = _sample_chunk(G, base_seed + k, _CHUNK, mixing, resolution)
        with atomic_path(path) as tmp:
            save_file(chunk, str(tmp))
    return chunk


def _run_key(G: Generator, s: EncoderTrainSettings, config: dict[str, Any], prior_id: str) -> tuple[str, dict[str, Any]]:
    """(the key of a training run, its description): what a work folder belongs to."""
    # steps, samples and checkpoint_every may grow between runs: more of the same training
    kept = {k: v for k, v in asdict(s).items() if k not in ("steps", "samples", "checkpoint_every")}
    described = {"settings": kept, "config": config, "network": network_fingerprint(G), "prior": prior_id}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16], described


def train_encoder(
    G: Generator,
    out: str | os.PathLike,
    *,
    settings: EncoderTrainSettings | None = None,
    prior: Any = None,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> EncoderTrainResult:
    """Train an encoder for ``G`` on its own samples and write it to ``out`` (resumable).

    Args:
        G: the generator (its parameters stay untouched); computation happens on its device.
        out: the encoder file to write (``.safetensors``), rewritten at every checkpoint.
        settings: :class:`EncoderTrainSettings` (None: the defaults).
        prior: the fitted GaussianPrior whose coefficients the encoder predicts (None: the cached prior of
            ``G``, as ``latentkit project`` uses by default).
        work_dir: sample cache and training state (None: ``<out>.work``); delete it to start afresh.
        progress: tqdm bars on stderr (with the ETA).
        shard: ``(rank, world_size)`` under torchrun (:func:`latentkit.distributed.init_distributed`; the
            process group initialised): the ranks render their share of the samples, train one
            DistributedDataParallel encoder on ``batch_size`` samples each, and rank 0 writes the files.
            ``work_dir`` must be on a file system every rank sees. None: one process.

    Returns:
        :class:`EncoderTrainResult`.

    Raises:
        InputError: invalid settings, or a work folder of another run (other settings or network).
        EncoderTrainingInterrupted: Ctrl-C; the state was saved and the same call resumes.

    Example:
        >>> result = train_encoder(G, "enc.safetensors", settings=EncoderTrainSettings(samples=2000, steps=3000))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from latentkit.io import atomic_path
    from latentkit.projection.encoder import prior_fingerprint
    from latentkit.projection.encoder_file import save_encoder

    s = settings if settings is not None else EncoderTrainSettings()
    if not isinstance(s, EncoderTrainSettings):
        raise InputError(f"settings must be an EncoderTrainSettings, got {type(s).__name__}")
    out = Path(out)
    folder = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".work")
    device = G.w_avg.device
    if prior is None:
        from latentkit.latent.prior_cache import cached_prior

        prior = cached_prior(G, device=device, progress=progress)
    config = default_config(G, input_resolution=s.input_resolution)
    mean, colour, slope, gain = prior_head(prior)
    with torch.random.fork_rng(devices=[]):  # the initial weights from s.seed, without touching the global stream
        torch.manual_seed(s.seed)
        enc = ResNetEncoder(config, mean, colour, slope, gain)
    enc = enc.to(device).train()
    key, described = _run_key(G, s, config.to_dict(), prior_fingerprint(enc.prior_mean, enc.prior_colour))
    folder.mkdir(parents=True, exist_ok=True)
    _claim(folder, key, described)

    rank, world = shard if shard is not None else (0, 1)
    main = rank == 0
    progress = progress and main
    r = config.input_resolution
    train = _load_cache(G, folder, "train", s.seed * 1_000_003, s.samples, s.mixing, r, progress, (rank, world))
    val = _load_cache(G, folder, "val", s.seed * 1_000_003 + 500_000, s.val_samples, s.mixing, r, progress, (rank, world))
    with torch.no_grad():
        train_u = prior.coefficients(train["ws"].to(device)).float()  # [samples, num_ws, w_dim]
        val_u = prior.coefficients(val["ws"].to(device)).float()
    train_x, val_x = train["images"].to(device), val["images"].to(device)

    opt = torch.optim.Adam(enc.parameters(), lr=s.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.05 + 0.95 * 0.5 * (1 + torch.cos(
        torch.tensor(min(t, s.steps) / s.steps * torch.pi)).item()))
    history: list[dict[str, float]] = []
    step, seconds = 0, 0.0
    state_path = folder / "state.pt"
    if state_path.is_file():
        step, seconds, history = _restore(state_path, key, enc, opt, sched)
        logger.info("train-encoder: resuming from %s at step %d of %d", state_path, step, s.steps)
    lpips_net = None
    if s.image_weight > 0:
        from latentkit.projection.lpips import lpips_vgg

        lpips_net = lpips_vgg(s.perceptual_weights, device=device, max_resolution=r)
    network = network_fingerprint(G)
    model: torch.nn.Module = _Coefficients(enc)
    if world > 1:  # the same start on every rank (same seed, same state file), gradients averaged
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    loss_colour = enc.prior_colour.to(device) if s.latent_loss == "v" else None

    def checkpoint(done: int) -> None:
        if not main:
            return
        val_loss = _validate(enc, val_x, val_u, loss_colour)
        recent = [h for h in running if h]
        history.append({"step": done, "seconds": round(seconds, 2), "val_latent": val_loss,
                        "train_latent": sum(x[0] for x in recent) / max(1, len(recent)),
                        "image": sum(x[1] for x in recent) / max(1, len(recent))})
        running.clear()
        training = {"samples": s.samples, "steps": done, "of_steps": s.steps, "seconds": round(seconds, 1),
                    "val_latent": val_loss, "settings": asdict(s)}
        save_encoder(out, enc, network=network, training=training)
        state = {"version": _STATE_VERSION, "key": key, "step": done, "seconds": seconds, "model": enc.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": json.dumps(history)}
        with atomic_path(state_path) as tmp:
            torch.save(state, tmp)
        with atomic_path(folder / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=1))

    running: list[tuple[float, float]] = []
    bar = tqdm(total=s.steps, initial=step, desc="train-encoder", disable=not progress, leave=False)
    done = step
    try:
        for t in range(step, s.steps):
            started = time.perf_counter()
            rng = torch.Generator().manual_seed(s.seed * 1_000_003 + rank * 100_003 + t)  # step t's batch, rank R
            idx = torch.randint(s.samples, (s.batch_size,), generator=rng).to(device)
            x, u = train_x[idx], train_u[idx]
            pred = model(x)
            latent = _latent_loss(pred, u, loss_colour)
            image = torch.zeros((), device=device)
            if lpips_net is not None:
                rendered = _resize(G.synthesis(enc.to_w(pred), noise_mode="const"), r)
                image = lpips_net(rendered, x).mean()
            loss = latent + s.image_weight * image
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seconds += time.perf_counter() - started
            done = t + 1
            running.append((latent.item(), image.item()))
            bar.update(1)
            bar.set_postfix(latent=f"{float(latent):.3f}")
            if done % s.checkpoint_every == 0 or done == s.steps:
                checkpoint(done)
    except KeyboardInterrupt:
        if done > step and (not history or history[-1]["step"] != done):
            checkpoint(done)
        raise EncoderTrainingInterrupted(done, s.steps, folder) from None
    finally:
        bar.close()
    if not history or history[-1]["step"] != done:
        checkpoint(done)
    return EncoderTrainResult(encoder=enc.eval().requires_grad_(False), path=out, steps=done, history=history)


def _latent_loss(pred: torch.Tensor, u: torch.Tensor, colour: torch.Tensor | None) -> torch.Tensor:
    """Mean latent error of predictions ``[N, num_ws, w_dim]`` (whitened): in u, or in v through the prior's
    colouring ``colour [w_dim, w_dim]`` (``v = mean + u @ colour``), divided by ``trace(colour colour^T)`` so
    that predicting the mode (u = 0) for u ~ N(0, I) scores 1 either way."""
    if colour is None:
        return (pred - u).square().mean()
    return ((pred - u) @ colour).square().sum(-1).mean() / colour.square().sum()


def _validate(enc: ResNetEncoder, x: torch.Tensor, u: torch.Tensor, colour: torch.Tensor | None = None) -> float:
    was = enc.training
    enc.eval()
    with torch.no_grad():
        loss = float(torch.stack([_latent_loss(enc.coefficients(a), b, colour) * len(a)
                                  for a, b in zip(x.split(32), u.split(32))]).sum() / len(x))
    enc.train(was)
    return round(loss, 6)


def _claim(folder: Path, key: str, described: dict[str, Any]) -> None:
    """The work folder belongs to one run (settings, network, prior): refuse another's, naming what differs
    when the folder recorded its description."""
    from latentkit.io import atomic_path
    from latentkit.projection.fingerprint import describe_difference

    marker = folder / "run.json"
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text())
            old, old_described = stored.get("key"), stored.get("described")
        except (ValueError, AttributeError):
            old, old_described = None, None
        if old != key:
            what = describe_difference(old_described, described) if isinstance(old_described, dict) else ""
            raise InputError(f"{folder} holds the samples and state of another encoder training "
                             f"({what or 'other settings, network or prior'}): delete it, or choose another "
                             "--out / work folder")
        return
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps({"key": key, "described": described}))


class _Coefficients(torch.nn.Module):
    """The encoder's coefficient prediction as a module's forward (what DistributedDataParallel wraps)."""

    def __init__(self, enc: ResNetEncoder) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc.coefficients(x)


def _restore(path: Path, key: str, enc, opt, sched) -> tuple[int, float, list[dict[str, float]]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise InputError(f"cannot read the training state {path}: {err}; delete it to start afresh") from err
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION or state.get("key") != key:
        raise InputError(f"{path} is not the state of this encoder training; delete it to start afresh")
    enc.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return int(state["step"]), float(state["seconds"]), json.loads(state["history"])
