"""File mechanics: atomic writes (umask, fsync, nothing left behind), OS errors as one line, no symlink
followed out of a root, and the .npz + JSON format read with bounds checked before anything inflates."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from latentkit import files, hub
from latentkit.checksums import write_record
from latentkit.datafiles import loads_bounded, read_npz, write_npz
from latentkit.errors import CheckpointError, InputError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_files_import_neither_torch_nor_numpy():
    code = "import sys, latentkit.files, latentkit.datafiles; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_write_respects_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = files.atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("code, match", [
    (errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
    (errno.EDQUOT, "quota"),
])
def test_os_errors_while_writing_are_one_line_and_leave_nothing(tmp_path, monkeypatch, code, match):
    (tmp_path / "out.npz").write_bytes(b"old")

    def failing(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fsync", failing)
    with pytest.raises(InputError, match=match) as info:
        write_npz(tmp_path / "out.npz", {"w": np.zeros(3)})
    assert "\n" not in str(info.value) and str(tmp_path / "out.npz") in str(info.value)
    assert (tmp_path / "out.npz").read_bytes() == b"old"  # the old file stands
    assert _leftovers(tmp_path) == []


def test_a_name_too_long_and_a_file_in_the_way_are_one_line(tmp_path):
    with pytest.raises(InputError, match="too long"):
        files.atomic_write_text(tmp_path / ("x" * 300 + ".json"), "{}")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="existing file, not a folder"):
        files.atomic_write_text(tmp_path / "file" / "a.json", "{}")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="existing folder"):
        files.atomic_write_text(tmp_path / "folder", "{}")
    assert _leftovers(tmp_path) == []


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "img").symlink_to(outside)
    (root / "manifest.jsonl").symlink_to(outside / "victim.jsonl")
    with pytest.raises(InputError, match="symlink leading out of"):
        files.atomic_write_text(root / "img" / "losses.json", "{}", root=root)
    with pytest.raises(InputError, match="symlink"):
        files.append_line(root / "manifest.jsonl", "{}", root=root)
    with pytest.raises(InputError, match="symlink leading out of"):
        files.atomic_write_text(root / "manifest.jsonl", "{}", root=root)
    assert list(outside.iterdir()) == []
    (root / "inner").mkdir()
    (root / "alias").symlink_to(root / "inner")  # inside the root: allowed
    files.atomic_write_text(root / "alias" / "a.json", "{}", root=root)
    assert (root / "inner" / "a.json").is_file()


def test_a_symlink_loop_is_one_line(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InputError):
        files.atomic_write_text(tmp_path / "loop" / "a.json", "{}", root=tmp_path)


@pytest.mark.parametrize("data, match", [
    (b"\xff\xfe{}", "not UTF-8"), ("[" * 100 + "]" * 100, "levels deep"), ('{"a": NaN}', "not valid JSON"),
    ("{" , "not valid JSON"), ("1" * 100, "more than the limit"),
])
def test_loads_bounded_refuses_with_one_line(data, match):
    with pytest.raises(InputError, match=match):
        loads_bounded(data, "x", max_bytes=50 if match == "more than the limit" else 1 << 20)


def test_loads_bounded_ignores_brackets_inside_strings():
    assert loads_bounded(json.dumps({"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}), "x") == {"a": "[" * 40}


def test_npz_round_trip_and_metadata(tmp_path):
    path = write_npz(tmp_path / "a.npz", {"x": np.arange(4.0)}, {"format": "t", "n": 1})
    arrays, meta = read_npz(path, "test .npz")
    assert meta == {"format": "t", "n": 1} and arrays["x"].tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match="reserved"):
        write_npz(tmp_path / "b.npz", {"metadata": np.zeros(1)}, {})


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_duplicated_members_are_refused(tmp_path):
    path = tmp_path / "dup.npz"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _zip(path, [("x.npy", _npy(np.zeros(2))), ("x.npy", _npy(np.ones(2)))])
    with pytest.raises(InputError, match="appears twice"):
        read_npz(path, "test .npz")


def test_a_member_inflating_past_the_budget_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", _npy(np.zeros(1 << 18)))  # 2 MiB of zeros, a few KiB compressed
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match="inflates to"):
        read_npz(path, "test .npz", max_member_bytes=1 << 20)


def test_a_header_declaring_more_than_is_stored_is_refused(tmp_path):
    header = _npy(np.zeros(2))
    forged = header.replace(b"(2,)", b"(9999999999,)".ljust(4))
    length = len(forged) - 10  # keep the header length field consistent
    forged = forged[:8] + struct.pack("<H", length) + forged[10:]
    path = tmp_path / "liar.npz"
    _zip(path, [("x.npy", forged)])
    with pytest.raises(InputError, match="cannot read"):
        read_npz(path, "test .npz")


@pytest.mark.parametrize("content, match", [
    (b"", "empty"), (b"PK\x03\x04" + b"\0" * 40, "BadZipFile"), (b"hello", "not an .npz"),
])
def test_unreadable_npz_files_are_one_line(tmp_path, content, match):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_npz(path, "test .npz")


def test_too_many_members_and_object_arrays(tmp_path):
    path = tmp_path / "many.npz"
    np.savez(path, **{f"a{i}": np.zeros(1) for i in range(10)})
    with pytest.raises(InputError, match="10 members"):
        read_npz(path, "test .npz", max_members=5)
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{}], dtype=object))
    with pytest.raises(InputError, match="object array"):
        read_npz(path, "test .npz")


def test_a_registry_record_that_is_a_folder_is_one_line_and_leaves_no_temp_file(tmp_path):
    (tmp_path / "sha256.json").mkdir()
    weights = tmp_path / "net.pkl"
    weights.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="sha256.json is corrupt"):
        hub.verify_cached(weights, expected="", url="https://example.org/net.pkl")
    with pytest.raises((CheckpointError, InputError), match="sha256.json"):
        write_record(weights, "0" * 64, "https://example.org/net.pkl")
    assert _leftovers(tmp_path) == []


def test_cache_errors_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path / "file"))
    with pytest.raises(InputError, match="LATENTKIT_CACHE"):
        hub.cache_dir("weights")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path / "loop"))
    with pytest.raises(InputError, match="LATENTKIT_CACHE"):
        hub.cache_dir("weights")


@pytest.mark.parametrize("home", ["", "/"])
def test_an_empty_home_does_not_put_the_cache_at_the_root(monkeypatch, home, tmp_path):
    monkeypatch.delenv("LATENTKIT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", home)
    monkeypatch.setattr(hub.tempfile, "gettempdir", lambda: str(tmp_path))
    path = hub.cache_dir()
    assert not str(path).startswith("/.cache") and path.is_relative_to(tmp_path)
