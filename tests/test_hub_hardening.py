"""Supply chain: planted cache files, corrupt sha256 records, http:// URLs, registry names vs local files."""

from __future__ import annotations

import json
import shutil

import pytest

from latentkit import hub, load_generator
from latentkit.errors import CheckpointError, InputError

from conftest import REFERENCE_NETS


def _plant(name: str, source: str = "sg2ada_uncond_map8_res32.pkl"):
    path = hub.weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REFERENCE_NETS / source, path)
    return path


def test_a_planted_file_of_another_network_is_refused():
    _plant("stylegan2-ffhq-1024")  # a 32x32 net where the 1024x1024 FFHQ one belongs
    with pytest.raises(CheckpointError, match=r"registered as 'stylegan2-ffhq-1024' \(stylegan2, 1024x1024.*32x32"):
        load_generator("stylegan2-ffhq-1024")


def test_a_planted_file_of_the_right_shape_but_wrong_classes_is_refused():
    _plant("stylegan2-cifar10-32")  # unconditional 32x32, the registry says 10 classes
    with pytest.raises(CheckpointError, match="10 classes"):
        load_generator("stylegan2-cifar10-32")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"ffhq.pkl": {"sha256": "abc"}}', '{"x": 3}'],
                         ids=["syntax", "list", "short-hash", "not-a-dict"])
def test_corrupt_sha256_record_is_an_error_and_is_kept(content):
    path = _plant("stylegan2-ffhq-1024")
    record = path.parent / "sha256.json"
    record.write_text(content)
    with pytest.raises(CheckpointError, match="sha256.json is corrupt"):
        load_generator("stylegan2-ffhq-1024")
    assert record.read_text() == content  # never reset


def test_writing_a_record_keeps_the_others(tmp_path):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"a")
    second.write_bytes(b"b")
    hub.verify_cached(first, expected="", url="https://example.org/a")
    hub.verify_cached(second, expected="", url="https://example.org/b")
    records = json.loads((tmp_path / "sha256.json").read_text())
    assert sorted(records) == ["a.bin", "b.bin"]


def test_http_urls_are_refused(tmp_path):
    with pytest.raises(InputError, match="only https://"):
        hub.download_url("http://example.org/net.pkl", tmp_path / "net.pkl", progress=False)
    with pytest.raises(InputError, match="use https://"):
        load_generator("http://example.org/net.pkl")


def test_a_registry_name_wins_over_a_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl", tmp_path / "stylegan2-ffhq-1024")
    monkeypatch.setenv("LATENTKIT_OFFLINE", "1")
    from latentkit.errors import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError):
        load_generator("stylegan2-ffhq-1024")  # the registry entry (not cached, offline), not ./stylegan2-...
    assert load_generator("./stylegan2-ffhq-1024").img_resolution == 32  # a path that looks like one
