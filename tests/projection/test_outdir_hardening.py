"""The output folder is untrusted: symlinks out of it, inputs named like its bookkeeping files, forged locks,
damaged manifest lines and checkpoints, and non-finite results are refused or skipped, never written through
or recorded as done."""

from __future__ import annotations

import json
import os
import socket
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.errors import InputError
from latentkit.projection.batch import project_files
from latentkit.projection.inputs import folder_names
from latentkit.projection.outdir import LOCK, MANIFEST, folder_lock, read_manifest, rank_manifest
from latentkit.projection.project import ProjectionSettings, project

FAST = ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=64)


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.RandomState(len(path.name)).randint(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_a_per_image_folder_symlinked_outside_is_refused(toy_generator, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "a").symlink_to(outside)
    with pytest.raises(InputError, match="symlink leading out of"):
        project_files(toy_generator, [_image(tmp_path / "in" / "a.png")], out, settings=FAST, progress=False)
    assert list(outside.iterdir()) == []
    assert not (out / MANIFEST).exists()


def test_a_manifest_symlinked_outside_is_refused(toy_generator, tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.jsonl"
    out.mkdir()
    victim.write_text("")
    (out / MANIFEST).symlink_to(victim)
    with pytest.raises(InputError, match="symlink"):
        project_files(toy_generator, [_image(tmp_path / "in" / "a.png")], out, settings=FAST, progress=False)
    assert victim.read_text() == ""


@pytest.mark.parametrize("stem", [MANIFEST, LOCK, rank_manifest(0), ".checkpoint-abc.pt", "manifest"])
def test_inputs_named_like_bookkeeping_files_get_other_folders(toy_generator, tmp_path, stem):
    names = folder_names([tmp_path / f"{stem}.png"])
    assert not names[0].startswith(".") and not names[0].startswith("manifest")
    out = tmp_path / "out"
    files = [_image(tmp_path / "in" / f"{stem}.png"), _image(tmp_path / "in" / "b.png")]
    project_files(toy_generator, files, out, settings=FAST, progress=False)
    again = project_files(toy_generator, files, out, settings=FAST, progress=False)  # the folder still works
    assert all(r.skipped for r in again)
    assert (out / MANIFEST).is_file() and not (out / LOCK).exists()


def test_files_follow_the_umask(toy_generator, tmp_path):
    old = os.umask(0o022)
    try:
        project_files(toy_generator, [_image(tmp_path / "in" / "a.png")], tmp_path / "out", settings=FAST, progress=False)
    finally:
        os.umask(old)
    for name in ("projected_w.npz", "proj.png", "losses.json"):
        assert stat.S_IMODE((tmp_path / "out" / "a" / name).stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out" / MANIFEST).stat().st_mode) == 0o644


@pytest.mark.parametrize("pid", ["1", 1e400, 1.0, True, [1], 1 << 40, -5, None])
def test_a_forged_lock_is_never_taken_over(tmp_path, pid):
    (tmp_path / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}).replace("Infinity", "1e400"))
    with pytest.raises(InputError, match="is writing to"):
        with folder_lock(tmp_path):
            pass
    assert (tmp_path / LOCK).exists()


def test_a_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    (tmp_path / LOCK).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    with folder_lock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("line", [
    b"\xff\xfe not utf-8", b"[" * 5000 + b"]" * 5000, b'{"input": "x", "folder": "f", "fingerprint": "k", "final_loss": NaN}',
    b'{"input": 3}', b'{"input": "x", "folder": "f", "fingerprint": "k", "final_loss": 1, "final_terms": [1]}',
], ids=["utf8", "deep", "nan", "input-type", "terms"])
def test_damaged_manifest_lines_are_skipped(tmp_path, line, caplog):
    good = {"input": "y", "folder": "f", "fingerprint": "k", "final_loss": 1.0, "final_terms": {}, "psnr": 1.0}
    (tmp_path / MANIFEST).write_bytes(line + b"\n" + json.dumps(good).encode() + b"\n")
    assert list(read_manifest(tmp_path)) == ["y"]
    assert "not a manifest record" in caplog.text


def _checkpoint(G, tmp_path, damage):
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    ckpt = tmp_path / "run.pt"
    settings = ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=64)
    project(G, target, settings=settings, checkpoint=ckpt, checkpoint_every=1, progress=False)
    state = torch.load(ckpt, weights_only=True)
    damage(state)
    torch.save(state, ckpt)
    return target, ckpt, settings


@pytest.mark.parametrize("damage, match", [
    (lambda s: s["optimizer"]["state"][0]["exp_avg"].fill_(float("nan")), "exp_avg of parameter 0"),
    (lambda s: s["optimizer"]["state"][0]["exp_avg_sq"].fill_(-1.0), "exp_avg_sq of parameter 0"),
    (lambda s: s.__setitem__("step", 10 ** 6), "past the end"),
    (lambda s: s.__setitem__("rng", s["rng"][:0]), "rng must be"),
    (lambda s: s.__setitem__("history", s["history"].fill_(float("inf"))), "loss history"),
    (lambda s: s["optimizer"].__setitem__("param_groups", []), "not an Adam state"),
], ids=["nan-adam", "negative-adam", "step-past-end", "rng", "history", "groups"])
def test_damaged_checkpoint_fields_are_refused(toy_generator, tmp_path, damage, match):
    target, ckpt, settings = _checkpoint(toy_generator, tmp_path, damage)
    with pytest.raises(InputError, match=match):
        project(toy_generator, target, settings=settings, checkpoint=ckpt, progress=False)


def test_non_finite_results_are_neither_written_nor_recorded(toy_generator, tmp_path, monkeypatch):
    import latentkit.projection.project as projection

    real = projection.project

    def diverged(*args, **kwargs):
        result = real(*args, **kwargs)
        result.ws.fill_(float("nan"))
        return result

    monkeypatch.setattr(projection, "project", diverged)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="NaN or inf"):
        project_files(toy_generator, [_image(tmp_path / "in" / "a.png")], out, settings=FAST, progress=False)
    assert read_manifest(out) == {} and not (out / "a" / "projected_w.npz").exists()


@pytest.mark.parametrize("fill", [0.0, float("nan")], ids=["zeroed", "nan"])
def test_a_damaged_cached_vgg16_file_is_refused(tmp_path, fill):
    import latentkit.projection.lpips_weights as perceptual
    from latentkit.errors import CheckpointError

    state = {k: v.fill_(fill) for k, v in perceptual._random_state().items()}
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="damaged"):
        perceptual.load_vgg16_backbone(path)
    converted = tmp_path / "vgg16.npz"
    np.savez(converted, **{k: v.numpy() for k, v in state.items()})
    with pytest.raises(CheckpointError, match="damaged"):
        perceptual.load_vgg16_backbone(converted)


def test_an_images_latents_do_not_depend_on_its_batch_or_the_thread_count(toy_generator, tmp_path):
    """What a torchrun rank does (1 thread, every other file, batches of its share) gives the same bits as one
    process with 4 threads whose last batch holds one image alone (the in-process form of the torchrun test)."""
    from latentkit.projection.lpips import lpips_vgg

    files = [_image(tmp_path / "in" / f"p{i}.png") for i in range(5)]
    settings = ProjectionSettings(num_steps=4, perceptual_weights="random", w_avg_samples=64)
    net = lpips_vgg("random")
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        project_files(toy_generator, files, tmp_path / "one", settings=settings, batch_size=4, perceptual_net=net,
                      progress=False)
        torch.set_num_threads(1)
        for share in (files[0::2], files[1::2]):
            project_files(toy_generator, share, tmp_path / "two", settings=settings, batch_size=4, perceptual_net=net,
                          progress=False)
    finally:
        torch.set_num_threads(old)
    from latentkit.io import load_latents

    for i in range(5):
        a, b = (load_latents(tmp_path / d / f"p{i}" / "projected_w.npz") for d in ("one", "two"))
        assert torch.equal(a, b), f"p{i} differs by {float((a - b).abs().max()):.3g}"


def test_one_thread_per_image_fixes_the_reduction_order():
    """A 1024x1024 mean differs between 1 and 2 threads; inside one_thread_per_image every job and the caller
    compute on one thread whatever the process had, and the count is restored after."""
    from latentkit.projection.cpu_parallel import core_budget, one_thread_per_image, run_per_core

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with one_thread_per_image(torch.device("cpu")):
            assert torch.get_num_threads() == 1 and core_budget() == 2
            assert run_per_core(lambda _: torch.get_num_threads(), [0, 1, 2]) == [1, 1, 1]
        assert torch.get_num_threads() == 2
        with one_thread_per_image(torch.device("meta")):  # other devices: unchanged
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
