"""A corpus of hostile checkpoint files, built here (no opaque blobs): none may execute, each is a
CheckpointError that names the refused global where there is one.

Every payload would create ``sentinel`` if it ran; each test asserts the file does not exist.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import types
import zipfile

import pytest
import torch

from latentkit import load_generator
from latentkit.errors import CheckpointError

from conftest import REFERENCE_NETS

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "sentinel"
    yield path
    assert not path.exists(), "a hostile checkpoint executed code"


def _reducer(func, *args):
    """An object whose unpickling calls ``func(*args)``."""

    class Payload:
        def __reduce__(self):
            return func, args

    return Payload()


def _write(path, obj, protocol=4):
    path.write_bytes(pickle.dumps({"G_ema": obj}, protocol=protocol))
    return path


@pytest.mark.parametrize(
    "make, refused",
    [
        (lambda s: _reducer(os.system, f"touch {s}"), r"(os|posix)\.system"),
        (lambda s: _reducer(eval, f"open({str(s)!r}, 'w').close()"), r"(builtins|__builtin__)\.eval"),
        (lambda s: _reducer(exec, f"open({str(s)!r}, 'w').close()"), r"(builtins|__builtin__)\.exec"),
        (lambda s: _reducer(subprocess.call, ["touch", str(s)]), r"(subprocess|commands)\.call"),
        (lambda s: _reducer(subprocess.Popen, ["touch", str(s)]), r"(subprocess|commands)\.Popen"),
        (lambda s: _reducer(getattr, str(s), "upper"), r"(builtins|__builtin__)\.getattr"),
    ],
    ids=["os.system", "eval", "exec", "subprocess.call", "subprocess.Popen", "getattr"],
)
@pytest.mark.parametrize("protocol", [2, 4])
def test_code_calling_pickles_are_refused(tmp_path, sentinel, make, refused, protocol):
    path = _write(tmp_path / "evil.pkl", make(sentinel), protocol)
    with pytest.raises(CheckpointError, match=rf"refused global {refused}"):
        load_generator(path)


def test_builtins_import_chain_is_refused(tmp_path, sentinel):
    # getattr(__import__('os'), 'system')('touch sentinel'), written opcode by opcode.
    body = (
        b"cbuiltins\n__import__\n(Vos\ntRp0\n0"
        b"cbuiltins\ngetattr\n(g0\nVsystem\ntR(V" + f"touch {sentinel}".encode() + b"\ntR."
    )
    path = tmp_path / "import.pkl"
    path.write_bytes(b"\x80\x02" + body)
    with pytest.raises(CheckpointError, match=r"refused global builtins\.__import__"):
        load_generator(path)
    # The same chain without a protocol header is not even a pickle latentkit accepts.
    path.write_bytes(body)
    with pytest.raises(CheckpointError, match="not a checkpoint latentkit can read"):
        load_generator(path)


@pytest.fixture
def fake_persistence(monkeypatch):
    """Registers a stand-in ``torch_utils.persistence`` so that pickle writes the real global name."""
    package = types.ModuleType("torch_utils")
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called: only its name is written
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)

    def record(class_name, state, module_src=""):
        meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name,
                "state": state}
        return _reducer(_reconstruct_persistent_obj, meta)

    return record


def test_nested_reduce_inside_a_persistence_record(tmp_path, sentinel, fake_persistence):
    evil = _reducer(os.system, f"touch {sentinel}")
    inner = fake_persistence("MappingNetwork", {"_parameters": {}, "_buffers": {}, "_modules": {}, "z_dim": evil})
    outer = fake_persistence("Generator", {"_parameters": {}, "_buffers": {}, "_modules": {"mapping": inner}})
    path = _write(tmp_path / "nested.pkl", outer)
    with pytest.raises(CheckpointError, match=r"refused global (os|posix)\.system"):
        load_generator(path)


def test_persistence_record_source_is_never_executed(tmp_path, sentinel, fake_persistence):
    source = f"open({str(sentinel)!r}, 'w').write('pwned')\nclass Generator:\n    pass\n"
    record = fake_persistence("Generator", {"_parameters": {}, "_buffers": {}, "_modules": {}}, source)
    path = _write(tmp_path / "source.pkl", record)
    # Read as data; the record has no mapping/synthesis, so it is refused as a generator.
    with pytest.raises(CheckpointError, match=r"'G_ema' \(Generator\) is not a StyleGAN generator"):
        load_generator(path)


def test_real_generator_with_hostile_source_loads_as_data(tmp_path, sentinel, fake_persistence, monkeypatch):
    """A real network (reference pickle, re-written) whose every record carries source that would write
    the sentinel: it loads and renders exactly like the clean file, and the source never runs."""
    from latentkit.load.safe_pickle import ModuleRecord, read_network_pickle

    easydict_module = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    easydict_module.EasyDict = EasyDict
    monkeypatch.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
    monkeypatch.setitem(sys.modules, "dnnlib.util", easydict_module)
    reconstruct = sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj
    source = f"import os\nos.system('touch {sentinel}')\nopen({str(sentinel)!r}, 'w').close()\n"

    class Writer(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, ModuleRecord):
                meta = {"type": "class", "version": 6, "module_src": source, "class_name": obj.class_name,
                        "state": obj.state}
                return reconstruct, (meta,)
            if isinstance(obj, dict) and type(obj).__name__ == "_EasyDict":
                return EasyDict, (), None, None, iter(obj.items())
            return NotImplemented

    clean_path = REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl"
    buffer = io.BytesIO()
    Writer(buffer, protocol=4).dump(read_network_pickle(clean_path))
    path = tmp_path / "with_source.pkl"
    path.write_bytes(buffer.getvalue())
    assert source.encode() in path.read_bytes()

    clean, hostile = load_generator(clean_path), load_generator(path)
    z = torch.randn(2, clean.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.eye(clean.c_dim)[[1, 7]]
    with torch.no_grad():
        assert torch.equal(clean(z, c, truncation_psi=0.7), hostile(z, c, truncation_psi=0.7))


def test_storage_payload_whose_inner_pickle_runs_code(tmp_path, sentinel):
    header = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (_LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                         "type_sizes": {"short": 2, "int": 4, "long": 4}})
    )
    for inner in (pickle.dumps(_reducer(os.system, f"touch {sentinel}"), protocol=2),
                  header + pickle.dumps(_reducer(os.system, f"touch {sentinel}"), protocol=2)):
        storage = _reducer(torch.storage._load_from_bytes, inner)
        tensor = _reducer(torch._utils._rebuild_tensor_v2, storage, 0, (1,), (1,), False, {})
        path = _write(tmp_path / "storage.pkl", {"w_avg": tensor})
        with pytest.raises(CheckpointError, match=r"refused global inside a tensor storage: (os|posix)\.system"):
            load_generator(path)


def test_torch_save_zip_with_code_payload(tmp_path, sentinel):
    pytest.importorskip("latentkit.load.rosinality")
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _reducer(os.system, f"touch {sentinel}")}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError, match=r"(os|posix)\.system|system"):
        load_generator(path)
    # The same payload under a suffix that says nothing is recognised by its content.
    renamed = tmp_path / "evil.bin"
    path.rename(renamed)
    with pytest.raises(CheckpointError, match="system"):
        load_generator(renamed)


def test_legacy_torch_save_with_code_payload(tmp_path, sentinel):
    pytest.importorskip("latentkit.load.rosinality")
    path = tmp_path / "evil_legacy.pt"
    buffer = io.BytesIO()
    torch.save({"g_ema": _reducer(os.system, f"touch {sentinel}")}, buffer, _use_new_zipfile_serialization=False)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="system"):
        load_generator(path)


@pytest.mark.parametrize("fraction", [0.0005, 0.5, 0.999])
def test_truncated_network_pickle(tmp_path, fraction):
    data = (REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl").read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"truncated\.pkl.*(truncated|not a valid pickle|malformed)"):
        load_generator(path)


@pytest.mark.parametrize("name", ["rosinality_convert_res16.pt", "rosinality_trainpt_res32.pt"])
def test_truncated_torch_file(tmp_path, name):
    pytest.importorskip("latentkit.load.rosinality")
    data = (REFERENCE_NETS / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=name):
        load_generator(path)


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".bin"])
def test_text_file(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are not the weights you are looking for\n")
    with pytest.raises(CheckpointError, match=f"notes{suffix}"):
        load_generator(path)


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ""])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        load_generator(path)
