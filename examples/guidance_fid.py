"""FID versus latent-guidance scale for a class-conditional generator (e.g. StyleGAN-XL ImageNet).

Needs a real checkpoint and real images; nothing here runs in the tests. For each scale s, it renders
``--num`` images with balanced classes (seed i gets class ``i % c_dim``; z drawn as NVIDIA's
gen_images.py does), guided with ``latentkit.latent.guide``, writes them under ``OUTDIR/s<scale>/`` and compares
them with the real images using ``latentkit.evaluate`` (Inception features: a true FID).

    python examples/guidance_fid.py --network stylegan-xl-imagenet-64 \\
        --real ~/data/imagenet64-val/ --scales 1,1.25,1.5,2 --num 10000 --outdir fid-vs-scale

Scale 1 is the unguided baseline. ``--num-classes-sample K`` averages the marginal over K random classes
instead of all 1000 (cost: K + 1 mapping calls per image instead of 1001; the synthesis network, the
expensive part, runs once either way). Published FIDs use 50k samples; fewer give higher, noisier values,
so compare scales at the same ``--num``. Results go to OUTDIR/fid_vs_scale.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from latentkit import evaluate, guide, load_generator
from latentkit.io import save_image
from latentkit.latent.sampling import one_hot, z_from_seed


def render(G, scale: float, seeds: list[int], folder: Path, *, batch: int, trunc: float, k: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for start in tqdm(range(0, len(seeds), batch), desc=f"s={scale:g}", unit="batch"):
        chunk = seeds[start : start + batch]
        z = torch.cat([z_from_seed(s, G.z_dim) for s in chunk])  # [B, z_dim]
        c = one_hot([s % G.c_dim for s in chunk], G.c_dim)  # [B, c_dim]
        with torch.no_grad():
            ws = guide(G, z, c, scale=scale, truncation_psi=trunc, num_classes_sample=k, seed=0)
            images = G.synthesis(ws, noise_mode="const")  # [B, C, H, W]
        for seed, image in zip(chunk, images):
            save_image(folder / f"seed{seed:06d}.png", image.unsqueeze(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="stylegan-xl-imagenet-64", help="checkpoint or registry name")
    parser.add_argument("--real", required=True, help="folder of real images at the generator's resolution")
    parser.add_argument("--scales", default="1,1.25,1.5,2", help="comma-separated guidance scales")
    parser.add_argument("--num", type=int, default=10000, help="images per scale")
    parser.add_argument("--num-classes-sample", type=int, default=None, help="random classes for the marginal")
    parser.add_argument("--trunc", type=float, default=1.0, help="truncation psi (1: none, as for FID)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--outdir", default="fid-vs-scale")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    G = load_generator(args.network, device=args.device)
    if G.c_dim == 0:
        parser.error(f"{args.network} is unconditional: guidance needs a class-conditional generator")
    outdir = Path(args.outdir)
    seeds = list(range(args.num))
    results = []
    for scale in (float(s) for s in args.scales.split(",")):
        folder = outdir / f"s{scale:g}"
        render(G, scale, seeds, folder, batch=args.batch, trunc=args.trunc, k=args.num_classes_sample)
        metrics = evaluate(args.real, folder, metrics=("fid",), num_samples=args.num, device=args.device).metrics
        calls = (args.num_classes_sample or G.c_dim) + 1
        results.append({"scale": scale, "fid": metrics["fid"], "mapping_calls_per_image": calls})
        print(f"s={scale:g}: FID {metrics['fid']:.2f} ({args.num} images, {calls} mapping calls per image)")
    (outdir / "fid_vs_scale.json").write_text(json.dumps(
        {"network": args.network, "sha256": G.sha256, "num": args.num, "trunc": args.trunc,
         "num_classes_sample": args.num_classes_sample, "results": results}, indent=1))


if __name__ == "__main__":
    main()
