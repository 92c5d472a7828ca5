"""Real multi-process runs: torchrun starts 2 CPU ranks (gloo, 127.0.0.1 only) of the API and of the CLI.

What the maths guarantees: projection is batch-independent, so each image projected by either rank equals
the one-process result (to float32 round-off); the z stream is split by blocks and float64 moments are
merged exactly up to the order of float64 sums, so the 2-rank prior equals the 1-rank one to 1e-12.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentkit.cli import main as cli
from latentkit.io import load_latents
from latentkit.latent.prior import GaussianPrior
from latentkit.load import load_generator
from latentkit.projection.batch import project_files
from latentkit.projection.inputs import expand_inputs
from latentkit.projection.outdir import LOCK, MANIFEST, read_manifest
from latentkit.projection.settings import ProjectionSettings

ROOT = Path(__file__).resolve().parents[2]
NET = ROOT / "tests" / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"
WORKER = Path(__file__).with_name("project_worker.py")
FAST = ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=64)
NAMES = [f"img{i}" for i in range(6)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node nproc`` on 127.0.0.1, importing this checkout's latentkit."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", LATENTKIT_CACHE=os.environ["LATENTKIT_CACHE"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--nnodes", "1",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.RandomState(1)
    for name in NAMES:
        Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _same_latents(out: Path, ref: Path) -> None:
    for name in NAMES:
        torch.testing.assert_close(load_latents(out / name / "projected_w.npz"), load_latents(ref / name / "projected_w.npz"),
                                   rtol=1e-5, atol=1e-5)


def _reference(images, tmp_path):
    ref = tmp_path / "ref"
    project_files(load_generator(NET), expand_inputs([images]), ref, settings=FAST, batch_size=2, progress=False)
    return ref


def _kill_rank_1(images, out):
    """A 2-rank job (batch size 1) whose rank 1 dies after its first image; torchrun then stops rank 0."""
    died = torchrun(str(WORKER), str(NET), str(images), str(out), "--batch-size", "1", "--die-rank", "1")
    assert died.returncode != 0, died.stderr[-3000:]
    rank1 = [json.loads(line)["input"] for line in (out / "manifest.rank1.jsonl").read_text().splitlines()]
    assert rank1 == [str((images / "img1.png").resolve())]  # its first image (of 1, 3, 5) was kept


def _finished(out, images, ref):
    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert sorted(line["input"] for line in lines) == sorted(str(p.resolve()) for p in images.iterdir())
    assert not list(out.glob("manifest.rank*")) and not (out / LOCK).exists()
    _same_latents(out, ref)


def test_killed_rank_loses_only_its_batch_and_a_single_run_finishes(images, tmp_path):
    ref = _reference(images, tmp_path)
    out = tmp_path / "out"
    _kill_rank_1(images, out)
    assert str((images / "img1.png").resolve()) in read_manifest(out)  # the per-rank files are read
    records = project_files(load_generator(NET), expand_inputs([images]), out, settings=FAST, progress=False)
    assert records[1].skipped and not all(r.skipped for r in records)
    _finished(out, images, ref)


@pytest.mark.slow
def test_killed_rank_then_a_two_rank_rerun_resumes(images, tmp_path):
    ref = _reference(images, tmp_path)
    out = tmp_path / "out"
    _kill_rank_1(images, out)
    again = torchrun(str(WORKER), str(NET), str(images), str(out), "--batch-size", "1")  # same batches: resumes
    assert again.returncode == 0, again.stderr[-3000:]
    _finished(out, images, ref)
    assert not list(out.glob(".checkpoint-*"))
    assert all(r.skipped for r in project_files(load_generator(NET), expand_inputs([images]), out, settings=FAST,
                                                progress=False))


def test_cli_project_and_fit_prior_on_two_ranks_equal_one_process(images, tmp_path):
    project = ["project", str(images), "--network", str(NET), "--prior", "none", "--num-steps", "3",
               "--perceptual-weights", "random", "--batch-size", "1", "--device", "cpu"]  # same batches on both sides
    n = 5 * 1024 + 300  # 6 blocks, the last one partial: 3 per rank
    fit = ["fit-prior", "--network", str(NET), "--samples", str(n), "--batch-size", "1000", "--seed", "5",
           "--device", "cpu"]
    one = CliRunner().invoke(cli, [*project, "--outdir", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    prior_one = GaussianPrior.from_generator(load_generator(NET), n, batch_size=700, seed=5, progress=False)
    jobs = [[*fit, "--out", str(tmp_path / "prior.npz")], [*project, "--outdir", str(tmp_path / "two")]]
    run = torchrun(str(WORKER.with_name("cli_worker.py")), json.dumps(jobs))
    assert run.returncode == 0, run.stderr[-3000:]
    folders = [line for line in run.stdout.split() if line.startswith(str(tmp_path / "two"))]
    assert sorted(folders) == sorted(str(tmp_path / "two" / n) for n in NAMES)  # each image once, by one rank
    _same_latents(tmp_path / "two", tmp_path / "one")
    lines = [json.loads(line) for line in (tmp_path / "two" / MANIFEST).read_text().splitlines()]
    assert [line["input"] for line in lines] == [str((images / f"{n}.png").resolve()) for n in NAMES]  # input order
    prior_two = GaussianPrior.load(tmp_path / "prior.npz")
    assert prior_two.n_samples_ == n and run.stdout.count('"prior":') == 1  # rank 0 alone wrote and printed
    for a, b in ((prior_two.mean_, prior_one.mean_), (prior_two.covariance_, prior_one.covariance_)):
        assert float((a - b).norm() / b.norm()) < 1e-12


def test_python_m_latentkit_runs_the_cli():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "latentkit", "--help"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0 and "fit-prior" in run.stdout and "Usage: latentkit" in run.stdout


@pytest.mark.slow  # two CLI runs and a torchrun job: about 90 s on 2 busy cores
def test_the_users_torchrun_command_equals_one_process_per_image(tmp_path):
    """Exactly ``torchrun --nproc-per-node 2 -m latentkit project ...`` against ``python -m latentkit project ...``
    with the default batch size and the process's own thread count (torchrun gives each rank one thread; the
    single process gets 4 here): 5 images make a partial batch, which a single process used to compute with
    all its threads. Every image's latents must be the same bits."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.RandomState(2)
    for i in range(5):
        Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    command = ["project", str(folder), "--network", str(NET), "--num-steps", "12", "--perceptual-weights", "random",
               "--prior", "none", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    one = subprocess.run([sys.executable, "-m", "latentkit", *command, "--outdir", str(tmp_path / "one")],
                         env=dict(env, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="4"), capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun("-m", "latentkit", *command, "--outdir", str(tmp_path / "two"), timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    for i in range(5):
        a = load_latents(tmp_path / "one" / f"p{i}" / "projected_w.npz")
        b = load_latents(tmp_path / "two" / f"p{i}" / "projected_w.npz")
        assert torch.equal(a, b), f"p{i}: differs by {float((a - b).abs().max()):.3g}"
