"""Time to a good reconstruction: LPIPS and PSNR against wall-clock seconds, per start and schedule.

Methods, run interleaved on the same targets, the same CPU and threads:

* ``nvidia``: NVIDIA's projector as ``ProjectionSettings`` mimics it: space W, the samples' mean w as the
  start, Adam on w (no prior), lr 0.1 with NVIDIA's ramps, latent noise 0.05 decaying to 0 at 75 %, noise
  regularisation 1e5 (one difference remains: the noise inputs start from the stored buffers).
* ``latentkit``: ``latentkit project``'s defaults (W+, the cached Gaussian prior, its whitened
  coefficients from the prior's mode, no latent noise). The defaults had NVIDIA's latent noise until this
  benchmark showed it slowing every method down: the runs made then are stored as
  ``latentkit,initial_noise_factor=0.05`` (and ``latentkit:100,...``).
* ``encoder``: the defaults started from an encoder's prediction with the schedule ``--init encoder`` runs
  (``from_encoder_start``: lr 0.03, no latent noise); the encoder's forward pass counts in the time.
* ``fast``: the defaults (the prior's mode as the start) with the encoder's schedule, lr 0.03 and no latent
  noise: separates what the encoder's start gives from what its gentler schedule gives.
* ``wplus``: NVIDIA's schedule and start in W+ (Adam on w from the samples' mean w, no prior): the paper
  study's best reconstruction at 150 steps. ``wplus,initial_noise_factor=0`` is what
  ``latentkit project --prior none`` runs.
* ``METHOD:N`` (e.g. ``latentkit:100``): that method with a schedule of N steps. Every schedule (learning
  rate ramps, latent noise to 75 %) is laid out over ``num_steps``, so a 300-step run's curve at step 100
  is not what a 100-step run reaches: a short schedule is its own method.
* ``METHOD[:N],FIELD=VALUE,...`` (e.g. ``wplus:150,precision=bf16`` or ``wplus:100,start=encoder``): that
  method with ``ProjectionSettings`` fields replaced; ``start=encoder`` starts from the encoder's prediction
  (its forward pass counted in the time) and keeps the method's schedule.

Every ``--every`` steps the current latents and noise are rendered and scored (LPIPS VGG16 with the
``--weights`` backbone at 256 px, PSNR at full size); scoring is not counted in the time. Seconds include
the set-up (w statistics, the encoder). Targets: images rendered from known latents (z seeds) plus the
photos in ``examples/`` (face.png, grace_hopper.jpg). The figure of merit is the time each method needs to
reach, per target, the LPIPS NVIDIA's schedule has after ``--nvidia-steps`` steps (300 on this CPU, where
1000 takes hours). The trajectory of a run that stops early is a prefix of the full run (the schedule
depends on ``num_steps`` only), so the stopping rule (``stop_tol``/``stop_window``) is evaluated on the
recorded losses for several tolerances.

Results go to ``benchmarks/results/time_to_quality.json`` after each run (reruns skip finished runs);
``--plot`` draws ``benchmarks/results/time_to_quality.png`` from it.

Usage::

    nice -n 19 python benchmarks/bench_time_to_quality.py --network mobilestylegan-ffhq --seeds 1 \\
        --photos examples/face.png --encoder enc.safetensors &
    python benchmarks/bench_time_to_quality.py --plot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
OUT = RESULTS / "time_to_quality.json"
PLOT = RESULTS / "time_to_quality.png"
STOP_TOLS = (1e-3, 3e-3, 1e-2)


def _settings(method: str, steps: int, overrides: dict[str, str] | None = None):
    """The ``ProjectionSettings`` of a method (its base name) with ``overrides`` (field -> text) applied."""
    s = _base_settings(method, steps)
    fields = {f.name: f for f in dataclasses.fields(s)}
    changes = {}
    for name, text in (overrides or {}).items():
        if name not in fields or name == "num_steps":
            raise SystemExit(f"unknown ProjectionSettings field {name!r} in a method's overrides")
        kind = type(getattr(s, name))
        if kind not in (str, bool, int, float):
            raise SystemExit(f"ProjectionSettings field {name!r} ({kind.__name__}) cannot be set in a method's overrides")
        changes[name] = text if kind is str else (text.lower() in ("1", "true", "yes") if kind is bool else kind(text))
    return dataclasses.replace(s, **changes)


def parse_method(text: str) -> tuple[str, int | None, dict[str, str]]:
    """``'wplus:150,precision=bf16'`` -> ``('wplus', 150, {'precision': 'bf16'})``; the steps None when not given."""
    head, *pairs = text.split(",")
    base, _, n = head.partition(":")
    overrides = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key or not value:
            raise SystemExit(f"method {text!r}: overrides are FIELD=VALUE")
        overrides[key] = value
    if n and (not n.isdigit() or int(n) < 1):
        raise SystemExit(f"method {text!r}: the steps after ':' must be a positive integer")
    return base, int(n) if n else None, overrides


def _base_settings(method: str, steps: int):
    from latentkit.projection.settings import NVIDIA_INITIAL_NOISE_FACTOR, ProjectionSettings, from_encoder_start

    nvidia = dict(start="w_avg", parametrization="w", initial_noise_factor=NVIDIA_INITIAL_NOISE_FACTOR)
    if method == "nvidia":
        return ProjectionSettings(num_steps=steps, space="w", **nvidia)
    if method == "wplus":
        return ProjectionSettings(num_steps=steps, space="w+", **nvidia)
    base = ProjectionSettings(num_steps=steps)
    if method == "fast":
        return dataclasses.replace(from_encoder_start(base), start=base.start)
    return from_encoder_start(base) if method == "encoder" else base


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean()
    return float(10 * torch.log10(4.0 / mse))


def run_one(G, target, method: str, steps: int, every: int, *, prior, net, score_net, encoder,
            overrides: dict[str, str] | None = None) -> dict:
    """One projection driven step by step; the curve of (seconds, LPIPS, PSNR) every ``every`` steps."""
    from latentkit.projection.state import ProjectionState

    s = _settings(method, steps, overrides)
    started = time.perf_counter()
    start_ws = None
    if s.start == "encoder":
        with torch.no_grad():
            start_ws = encoder(target)
    labels = G.prepare_labels(None, 1)
    state = ProjectionState(G, target, labels, s, prior=None if method in ("nvidia", "wplus") else prior, perceptual=net,
                            start_ws=start_ws)
    elapsed = time.perf_counter() - started
    curve = {"step": [], "seconds": [], "lpips": [], "psnr": []}

    def score(step: int) -> None:
        with torch.no_grad():
            img = G.synthesis(state.latents().expand(-1, G.num_ws, -1), noise_mode="const", noise=state.noises or None)
            curve["step"].append(step)
            curve["seconds"].append(round(elapsed, 3))
            curve["lpips"].append(round(float(score_net(img.clamp(-1, 1), target)), 5))
            curve["psnr"].append(round(_psnr(img, target), 3))

    score(0)
    for step in range(steps):
        t0 = time.perf_counter()
        state.step(step)
        elapsed += time.perf_counter() - t0
        if (step + 1) % every == 0 or step + 1 == steps:
            score(step + 1)
    losses = [float(row[0, 0]) for row in state.history]
    return {**curve, "losses": [round(x, 6) for x in losses], "stop": _stop_points(s, losses)}


def _stop_points(s, losses: list[float]) -> dict[str, int | None]:
    """Step at which the stopping rule would end this run, per tolerance (None: it would not)."""
    from latentkit.projection.settings import converged

    out: dict[str, int | None] = {}
    for tol in STOP_TOLS:
        rule = dataclasses.replace(s, stop_tol=tol)
        out[f"{tol:g}"] = next((k for k in range(1, len(losses) + 1) if converged(rule, [[x] for x in losses[:k]], k)), None)
    return out


def _targets(G, seeds: int, photos: list[str]) -> dict[str, torch.Tensor]:
    from latentkit.latent.sampling import z_from_seed
    from latentkit.projection.project import prepare_targets

    out = {}
    for seed in range(seeds):
        with torch.no_grad():
            out[f"seed{seed}"] = G(z_from_seed(seed, G.z_dim, device=G.w_avg.device)).clamp(-1, 1)
    for photo in photos:
        out[Path(photo).stem] = prepare_targets(G, photo).to(G.w_avg.device)
    return out


def _time_to(curve: dict, goal: float) -> float | None:
    return next((t for t, q in zip(curve["seconds"], curve["lpips"]) if q <= goal), None)


def _nvidia_reference(runs: dict) -> str | None:
    """The method key of a target's last NVIDIA run (``nvidia`` or ``nvidia:300``; runs are stored in the order
    they ran), or None: the goal every method of the target is measured against."""
    return next((m for m in reversed(list(runs)) if parse_method(m)[0] == "nvidia"), None)


def summarise(results: dict) -> dict:
    """Per target: NVIDIA's final LPIPS (the goal), each method's seconds to reach it and its speed-up.

    The reference is :func:`_nvidia_reference`, so a rerun in a later session is compared with the methods of
    that session."""
    summary = {}
    for target, runs in results["runs"].items():
        reference = _nvidia_reference(runs)
        if reference is None:
            continue
        ref = runs[reference]
        goal, ref_seconds = ref["lpips"][-1], _time_to(ref, ref["lpips"][-1])
        row = {"nvidia_reference": reference, "nvidia_lpips": goal, "nvidia_seconds": ref_seconds}
        for method, curve in runs.items():
            seconds = _time_to(curve, goal)
            row[method] = {"seconds": seconds, "final_lpips": curve["lpips"][-1],
                           "speedup": round(ref_seconds / seconds, 2) if seconds and ref_seconds else None}
        summary[target] = row
    return summary


# what the plot draws, in this order: (method, label, colour); methods a target lacks are left out
PLOTTED = [
    ("nvidia", "NVIDIA, 300 steps", "tab:gray"),
    ("nvidia:300", "NVIDIA, 300 steps (rerun)", "black"),
    ("latentkit,initial_noise_factor=0.05", "defaults until 0.2 (latent noise), 300", "tab:blue"),
    ("latentkit:100", "defaults (no latent noise), 100", "tab:cyan"),
    ("wplus:100,initial_noise_factor=0", "--prior none, 100", "tab:orange"),
    ("wplus:100,initial_noise_factor=0,precision=bf16", "--prior none --precision bf16, 100", "tab:red"),
    ("encoder-v", "encoder start (4096 samples), 100", "tab:green"),
    ("encoder-16k", "encoder start (16384 samples), 100", "tab:olive"),
]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(results["runs"])
    cols = min(3, max(1, len(targets)))
    rows = -(-max(1, len(targets)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.axis("off")
    for ax, target in zip(axes.flat, targets):
        runs = results["runs"][target]
        for method, label, colour in PLOTTED:
            if method in runs:
                ax.plot(runs[method]["seconds"], runs[method]["lpips"], label=label, color=colour)
        reference = _nvidia_reference(runs)
        if reference is not None:
            ax.axhline(runs[reference]["lpips"][-1], ls=":", color="tab:gray", lw=0.8)
        ax.set_title(target)
        ax.set_xlabel("seconds" + (f" ({results['meta']['threads']} threads)" if results["meta"].get("device", "cpu") == "cpu" else ""))
        ax.set_ylabel("LPIPS")
        ax.legend(fontsize=6)
    fig.suptitle(f"{results['meta']['network']} on {results['meta']['cpu']}; dotted: NVIDIA's LPIPS after 300 steps",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--network", default="mobilestylegan-ffhq")
    p.add_argument("--seeds", type=int, default=2, help="targets rendered from z seeds 0..N-1")
    p.add_argument("--photos", nargs="*", default=["examples/face.png", "examples/grace_hopper.jpg"])
    p.add_argument("--methods", nargs="*", default=["nvidia", "latentkit", "encoder"],
                   help="nvidia, latentkit, encoder, fast, wplus; METHOD:N for a schedule of N steps; "
                        "METHOD[:N],FIELD=VALUE,... to replace ProjectionSettings fields")
    p.add_argument("--nvidia-steps", type=int, default=300)
    p.add_argument("--latentkit-steps", type=int, default=300)
    p.add_argument("--encoder-steps", type=int, default=100)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--encoder", default=None, help="encoder file for the 'encoder' method")
    p.add_argument("--weights", default="auto", help="LPIPS backbone (loss and score)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_check.sh)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--plot", action="store_true", help="only draw the plot from --out")
    args = p.parse_args()
    out = Path(args.out)
    if args.plot:
        results = json.loads(out.read_text())
        plot(results, PLOT if out == OUT else out.with_suffix(".png"))
        print(json.dumps(summarise(results), indent=1))
        return

    from latentkit.io import atomic_path
    from latentkit.latent.prior_cache import cached_prior
    from latentkit.load import load_generator
    from latentkit.projection.lpips import lpips_vgg

    torch.set_num_threads(args.threads)
    G = load_generator(args.network, device=args.device)
    prior = cached_prior(G, device=args.device, progress=False)
    net = lpips_vgg(args.weights, device=args.device, max_resolution=256)
    encoder = None
    methods = list(args.methods)
    parsed = {m: parse_method(m) for m in methods}

    def needs_encoder(m: str) -> bool:
        return parsed[m][0] == "encoder" or parsed[m][2].get("start") == "encoder"

    if any(needs_encoder(m) for m in methods):
        if args.encoder is None:
            methods = [m for m in methods if not needs_encoder(m)]
        else:
            from latentkit.projection.encoder_file import load_encoder

            encoder = load_encoder(args.encoder, G)
    steps = {"nvidia": args.nvidia_steps, "latentkit": args.latentkit_steps, "encoder": args.encoder_steps,
             "fast": args.encoder_steps, "wplus": args.latentkit_steps}
    for m in methods:
        base, n, overrides = parsed[m]
        if base not in steps:
            p.error(f"unknown method {m!r}: nvidia, latentkit, encoder, fast or wplus, optionally :STEPS and ,FIELD=VALUE")
        if m != base:
            steps[m] = n if n is not None else steps[base]
        _settings(base, steps[m], overrides)  # an unknown field fails before any run
    results = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    where = torch.cuda.get_device_name(G.w_avg.device) if G.w_avg.device.type == "cuda" else cpu_model()
    meta = results.setdefault("meta", {})  # notes and earlier sessions' step counts are kept
    meta.update({"network": args.network, "cpu": where, "device": args.device, "threads": args.threads,
                 "torch": torch.__version__, "steps": {**meta.get("steps", {}), **steps}, "every": args.every,
                 "weights": net.weights, "load_average": os.getloadavg()})
    targets = _targets(G, args.seeds, args.photos)
    for name, target in targets.items():  # interleaved: every method on one target before the next target
        for method in methods:
            if method in results["runs"].get(name, {}):
                continue
            print(f"{name} {method} ({steps[method]} steps)", flush=True)
            curve = run_one(G, target, parsed[method][0], steps[method], args.every, prior=prior, net=net,
                            score_net=net, encoder=encoder, overrides=parsed[method][2])
            curve["ran"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
                            "load_average_after": [round(x, 2) for x in os.getloadavg()], "encoder": args.encoder}
            results["runs"].setdefault(name, {})[method] = curve
            results["summary"] = summarise(results)
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(results, indent=1))
    print(json.dumps(results.get("summary", {}), indent=1))


if __name__ == "__main__":
    main()
