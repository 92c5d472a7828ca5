"""MobileStyleGAN (FFHQ 1024) from the random-face wheel: exactness, CPU cost, w-vs-v diagnostics, samples.

    python benchmarks/bench_mobilestylegan.py [--threads 2] [--samples 100000] [--no-images]

Measures, on the real model that ``latentkit.load_generator('mobilestylegan-ffhq')`` returns:

* exactness against OpenVINO's own inference of the same IR (if ``openvino`` is installed): max abs
  difference of w over 64 z and of images over 4 z;
* CPU seconds per image for a synthesis forward pass and for forward + backward w.r.t. ``ws`` at
  1024x1024 (batch 1, median of repeats), and OpenVINO's forward time for comparison;
* how Gaussian w and v are (v inverts the mapping's last leaky ReLU) on ``--samples`` mapped z:
  per-dimension skewness and excess kurtosis, summarised;
* sample images written to examples/mobilestylegan/ (256 px PNG grids).

Writes benchmarks/results/mobilestylegan.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mobilestylegan.json"
IMAGES = ROOT / "examples" / "mobilestylegan"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _summary(x: np.ndarray) -> dict[str, float]:
    a = np.abs(x)
    return {"mean_abs": float(a.mean()), "median_abs": float(np.median(a)), "max_abs": float(a.max()),
            "mean": float(x.mean())}


def _grid(images: torch.Tensor, size: int) -> np.ndarray:
    from latentkit.io import to_uint8

    small = F.interpolate(images, size=(size, size), mode="area")
    return np.concatenate(list(to_uint8(small)), axis=1)  # [size, N * size, 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--no-images", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from scipy import stats

    from latentkit import hub
    from latentkit.load.mobilestylegan import load_mobilestylegan
    from latentkit.latent.prior import w_to_v

    start = time.perf_counter()
    G = load_mobilestylegan()
    wheel = hub.weights_path("mobilestylegan-ffhq")
    out: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": args.threads},
        "load_seconds": time.perf_counter() - start,
        "wheel_bytes": wheel.stat().st_size if wheel.is_file() else None,
        "num_parameters": sum(p.numel() for p in G.parameters()),
        "num_ws": G.num_ws,
        "mapping_activation": {"slope": G.mapping_activation.slope, "gain": G.mapping_activation.gain},
    }
    print(f"loaded in {out['load_seconds']:.1f} s; wheel {out['wheel_bytes']} bytes; num_ws {G.num_ws}")

    # Exactness against OpenVINO.
    try:
        import openvino as ov
    except ImportError:
        ov = None
    ws1 = G.mapping(torch.from_numpy(np.random.RandomState(0).randn(1, 512).astype(np.float32)))
    if ov is not None:
        import zipfile

        with zipfile.ZipFile(wheel) as zf:
            files = {name: zf.read(name) for name in zf.namelist() if name.startswith("random_face/data/")}
        core = ov.Core()

        def compile_(stem: str):
            model = core.read_model(files[f"random_face/data/{stem}.xml"], files[f"random_face/data/{stem}.bin"])
            return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

        mapping, synthesis = compile_("MappingNetwork"), compile_("SynthesisNetwork")
        z = np.random.RandomState(1).randn(64, 512).astype(np.float32)
        w_ref = np.concatenate([mapping([z[i:i + 1]])[0] for i in range(64)])
        w_ours = G.map_latent(torch.from_numpy(z), torch.zeros(64, 0)).numpy()
        with torch.no_grad():  # the same graph in float64: how much of the difference is OpenVINO's own rounding
            w_exact = G.mapping_net.double()(torch.from_numpy(z).double()).numpy()
            G.mapping_net.float()
        img_diff = []
        with torch.no_grad():
            for i in range(4):
                ref = synthesis([w_ref[i:i + 1]])[0]
                ours = G.synthesis(torch.from_numpy(w_ref[i:i + 1]).unsqueeze(1).repeat(1, G.num_ws, 1)).numpy()
                img_diff.append(np.abs(ours - ref))
        diff = np.stack(img_diff)
        ov_seconds = _median_seconds(lambda: synthesis([w_ref[:1]]), 3)
        out["exactness_vs_openvino"] = {
            "openvino": ov.__version__, "mapping_max_abs": float(np.abs(w_ours - w_ref).max()),
            "mapping_float64_vs_openvino_max_abs": float(np.abs(w_exact - w_ref).max()),
            "mapping_float64_vs_ours_max_abs": float(np.abs(w_exact - w_ours).max()),
            "mapping_n": 64, "image_max_abs": float(diff.max()), "image_mean_abs": float(diff.mean()), "image_n": 4,
            "openvino_forward_seconds": ov_seconds,
        }
        print(json.dumps(out["exactness_vs_openvino"], indent=1))

    # CPU cost at 1024x1024, batch 1.
    with torch.no_grad():
        forward = _median_seconds(lambda: G.synthesis(ws1), 3)

    def forward_backward() -> None:
        ws = ws1.clone().requires_grad_(True)
        G.synthesis(ws).square().mean().backward()

    both = _median_seconds(forward_backward, 2)
    out["cpu_seconds_per_image"] = {"synthesis_forward": forward, "synthesis_forward_backward": both}
    if "exactness_vs_openvino" in out:
        out["cpu_seconds_per_image"]["ratio_to_openvino_forward"] = forward / out["exactness_vs_openvino"][
            "openvino_forward_seconds"]
    print(json.dumps(out["cpu_seconds_per_image"], indent=1))

    # w versus v on many samples.
    gen = torch.Generator().manual_seed(2024)
    chunks = []
    with torch.no_grad():
        for startn in range(0, args.samples, 10_000):
            zb = torch.randn(min(10_000, args.samples - startn), 512, generator=gen)
            chunks.append(G.map_latent(zb, zb[:, :0]))
    w = torch.cat(chunks)
    v = w_to_v(w, G.mapping_activation.slope, G.mapping_activation.gain)
    z_ref = torch.randn(args.samples, 512, generator=gen).numpy()
    diag = {}
    for name, x in (("w", w.double().numpy()), ("v", v.double().numpy()), ("z_reference", z_ref)):
        diag[name] = {"skewness": _summary(stats.skew(x, axis=0)),
                      "excess_kurtosis": _summary(stats.kurtosis(x, axis=0, fisher=True))}
    diag["n_samples"] = args.samples
    diag["fraction_of_w_negative"] = float((w < 0).double().mean())
    out["gaussianity"] = diag
    print(json.dumps(diag, indent=1))

    if not args.no_images:
        from PIL import Image

        IMAGES.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            zs = torch.cat([torch.from_numpy(np.random.RandomState(s).randn(1, 512)).float() for s in range(4)])
            Image.fromarray(_grid(G(zs), 192)).save(IMAGES / "seeds0-3.png", optimize=True)
            rows = [G(zs[:1], truncation_psi=psi) for psi in (1.0, 0.7, 0.4, 0.0)]
            Image.fromarray(_grid(torch.cat(rows), 192)).save(IMAGES / "seed0_psi1-0.7-0.4-0.png", optimize=True)
        out["images"] = sorted(str(p.relative_to(ROOT)) for p in IMAGES.glob("*.png"))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
