"""Hostile network pickles beyond code execution: memory corruption, EXT opcodes, poisoning, allocation
bombs, deep nesting. Each file is built here; each must end in a CheckpointError and nothing may run."""

from __future__ import annotations

import copyreg
import io
import os
from pathlib import Path
import pickle
import struct
import subprocess
import sys
import textwrap
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from latentkit import load_generator
from latentkit.errors import CheckpointError
from latentkit.load.safe_pickle import loads_network_pickle, read_network_pickle

from conftest import PEAK_RSS_KIB, REFERENCE_NETS

# The worktree's package (not an installed one, whatever the current directory), single-threaded.
_SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}

REFERENCE = REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl"


def _reducer(func, *args):
    class Payload:
        def __reduce__(self):
            return func, args

    return Payload()


def _storage(values: torch.Tensor):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(values.storage(), buffer, _use_new_zipfile_serialization=False)
    return _reducer(torch.storage._load_from_bytes, buffer.getvalue())


def _tensor(storage, size, stride, offset=0):
    return _reducer(torch._utils._rebuild_tensor_v2, storage, offset, tuple(size), tuple(stride), False, OrderedDict())


def _pickle(obj) -> bytes:
    return pickle.dumps({"G_ema": obj}, protocol=4)


def test_object_ndarray_by_the_real_class_is_refused():
    # ndarray((2,), 'O', buffer): element pointers would be bytes of the file.
    data = b"\x80\x02cnumpy\nndarray\n(K\x02\x85cnumpy\ndtype\n(VO8\nI00\nI01\ntRC\x10" + b"A" * 16 + b"tR."
    with pytest.raises(CheckpointError, match="numpy dtype 'O8' is not allowed|not an allow-listed function"):
        loads_network_pickle(data)
    data = b"\x80\x02cnumpy\nndarray\n(K\x02\x85VO\nC\x10" + b"A" * 16 + b"tR."
    with pytest.raises(CheckpointError, match="not an allow-listed function"):
        loads_network_pickle(data)


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_object_array_by_reconstruct_is_refused(module):
    template = pickle.dumps(np.array([1, 2], dtype=object), protocol=3)
    assert b"_reconstruct" in template
    for spelling in (b"numpy.core.multiarray", b"numpy._core.multiarray"):
        template = template.replace(spelling, module.encode())
    with pytest.raises(CheckpointError, match="numpy dtype 'O8' is not allowed"):
        loads_network_pickle(template)
    # the state names the dtype with a string instead of a dtype object
    head = f"c{module}\n_reconstruct\ncnumpy\nndarray\n".encode() + b"K\x00\x85C\x01b\x87R"
    data = b"\x80\x02" + head + b"(K\x01K\x02\x85VO\n\x89C\x10" + b"B" * 16 + b"tb."
    with pytest.raises(CheckpointError, match="plain numeric dtype"):
        loads_network_pickle(data)


def test_numeric_numpy_arrays_still_load():
    arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = loads_network_pickle(pickle.dumps({"a": arr, "f": np.asfortranarray(arr * 0.5)}, protocol=3))
    np.testing.assert_array_equal(out["a"], arr)
    np.testing.assert_array_equal(out["f"], arr * 0.5)


@pytest.fixture
def registered_extension(tmp_path):
    """os.system registered as extension code 0xf00 and resolved once, as some library might do."""
    sentinel = tmp_path / "sentinel"
    copyreg.add_extension("os", "system", 0xF00)
    try:
        pickle.loads(b"\x80\x02\x83\x00\x0f.")  # fills copyreg._extension_cache
        yield sentinel
    finally:
        copyreg.remove_extension("os", "system", 0xF00)
        copyreg._extension_cache.pop(0xF00, None)
    assert not sentinel.exists()


@pytest.mark.parametrize("opcode", [b"\x82\x05", b"\x83\x00\x0f", b"\x84\x00\x0f\x00\x00"],
                         ids=["EXT1", "EXT2", "EXT4"])
def test_ext_opcodes_are_refused_before_unpickling(tmp_path, registered_extension, opcode):
    body = b"\x80\x02" + opcode + b"(V" + f"touch {registered_extension}".encode() + b"\ntR."
    path = tmp_path / "ext.pkl"
    path.write_bytes(body)
    with pytest.raises(CheckpointError, match=r"opcode EXT[124]"):
        load_generator(path)


@pytest.mark.parametrize("payload", [
    b"\x80\x02cdnnlib.util\nEasyDict\n(}(V__init__\nNdtb.",  # slot state on the class
    b"\x80\x02cdnnlib.util\nEasyDict\n}(V__init__\nNdb.",  # dict state on the class
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(N(V__defaults__\n)dtb.",  # BUILD on a stand-in function
    b"\x80\x02ccollections\nOrderedDict\n)R(V__class__\nNdb.",  # BUILD on an instance of a real class
], ids=["easydict-slots", "easydict-dict", "function", "ordereddict"])
def test_build_cannot_mutate_stand_ins_and_later_loads_still_work(payload):
    with pytest.raises(CheckpointError, match="sets the state of"):
        loads_network_pickle(payload)
    g_ema = read_network_pickle(REFERENCE)["G_ema"]
    assert g_ema.init_kwargs["synthesis_kwargs"]["conv_clamp"] == 1.5


def test_build_on_a_tensor_is_refused():
    tensor = _tensor(_storage(torch.ones(4)), [4], [1])
    data = pickle.dumps(tensor, protocol=3)[:-1] + b"(V__dict__\nNdb."
    with pytest.raises(CheckpointError, match="sets the state of 'Tensor'"):
        loads_network_pickle(data)


@pytest.mark.parametrize("size, stride", [([40000, 40000], [0, 0]), ([2**40, 2**40], [0, 0]),
                                          ([2**62, 2**62, 2**62], [0, 0, 0])],
                         ids=["6GB-stride0", "400GB", "overflow"])
def test_views_claiming_more_than_the_file_are_refused(size, stride):
    with pytest.raises(CheckpointError, match="more than the file can hold"):
        loads_network_pickle(_pickle(_tensor(_storage(torch.ones(1)), size, stride)))


def test_one_storage_reused_from_the_memo_is_charged_every_time():
    storage = _storage(torch.ones(256 * 1024))  # 1 MiB, stored once
    data = _pickle([_tensor(storage, [256 * 1024], [1]) for _ in range(2000)])  # 2 GB if materialised
    assert len(data) < 2 << 20
    with pytest.raises(CheckpointError, match="more than the file can hold"):
        loads_network_pickle(data)


@pytest.mark.parametrize("data", [b"\x80\x02Nr\x00\x00\x00\x10.", b"\x80\x02Nh\xff0j\x00\x00\x00\x10."],
                         ids=["put-2^28", "get-2^28"])
def test_huge_memo_indices_are_refused(data):
    with pytest.raises(CheckpointError, match="memo index"):
        loads_network_pickle(data)


@pytest.mark.parametrize("opcode", [b"Q", b"\x92", b"\x97", b"\x98", b"i", b"o"],
                         ids=["BINPERSID", "NEWOBJ_EX", "NEXT_BUFFER", "READONLY_BUFFER", "INST", "OBJ"])
def test_opcodes_outside_the_set_are_refused(opcode):
    with pytest.raises(CheckpointError, match="is not allowed in a checkpoint|truncated|not a valid"):
        loads_network_pickle(b"\x80\x05N" + opcode + b".")


def test_deep_nesting_and_cycles_are_refused():
    depth = 200_000
    deep = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(CheckpointError, match="stack grows past 50,000"):
        loads_network_pickle(deep)
    marks = b"\x80\x02" + b"(" * depth + b"1" * depth + b"N."
    with pytest.raises(CheckpointError, match="stack grows past"):
        loads_network_pickle(marks)
    depth = 5_000  # within the stack bound, past the nesting bound
    deep = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(CheckpointError, match="nested more than"):
        loads_network_pickle(deep)
    cycle = b"\x80\x02]q\x00h\x00a."
    with pytest.raises(CheckpointError, match="cycle"):
        loads_network_pickle(cycle)
    shared = b"\x80\x02" + b"]q\x00" + b"(h\x00h\x00tq\x00" * 200 + b"."  # a DAG 200 deep
    with pytest.raises(CheckpointError, match="nested more than"):
        loads_network_pickle(shared)


@pytest.mark.parametrize("attr, value", [("z_dim", "sixty-four"), ("z_dim", -5), ("w_dim", 10**9),
                                         ("z_dim", 2 * 10**7), ("img_resolution", 10**5), ("c_dim", 1.5),
                                         ("w_dim", np.array([1, 2]))])
def test_odd_size_attributes_are_checkpoint_errors(tmp_path, attr, value):
    data = read_network_pickle(REFERENCE)
    data["G_ema"].state[attr] = value
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps(_as_records(data), protocol=4))
    with pytest.raises(CheckpointError, match=attr):
        load_generator(path)


def test_non_finite_gain_and_block_resolution_bomb(tmp_path):
    data = read_network_pickle(REFERENCE)
    data["G_ema"]["synthesis.b32.torgb"].state["weight_gain"] = float("inf")
    path = tmp_path / "inf.pkl"
    path.write_bytes(pickle.dumps(_as_records(data), protocol=4))
    with pytest.raises(CheckpointError, match="weight_gain is inf"):
        load_generator(path)
    data = read_network_pickle(REFERENCE)
    data["G_ema"]["synthesis"].state["block_resolutions"] = [4, 8, 16, 100000]
    path.write_bytes(pickle.dumps(_as_records(data), protocol=4))
    with pytest.raises(CheckpointError, match="block_resolutions"):
        load_generator(path)


def test_nan_weights_are_refused(tmp_path):
    data = read_network_pickle(REFERENCE)
    data["G_ema"]["mapping"].state["_buffers"]["w_avg"][0] = float("nan")
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps(_as_records(data), protocol=4))
    with pytest.raises(CheckpointError, match="w_avg holds NaN"):
        load_generator(path)


def _as_records(obj):
    """Re-pickle the data tree as the NVIDIA layout (persistence records, EasyDict, real tensors)."""
    from latentkit.load.records import ModuleRecord

    def convert(value):
        if isinstance(value, ModuleRecord):
            meta = {"type": "class", "version": 6, "module_src": "", "class_name": value.class_name,
                    "state": convert(value.state)}
            return _reducer(_persistent, meta)
        if isinstance(value, dict):
            return type(value)((k, convert(v)) for k, v in value.items()) if type(value) in (dict, OrderedDict) \
                else {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        if isinstance(value, torch.Tensor):
            flat = value.detach().contiguous()
            return _tensor(_storage(flat.reshape(-1).clone()), list(flat.shape), list(flat.stride()))
        return value

    return convert(obj)


def _persistent(meta):  # only its name is written
    raise AssertionError


_persistent.__module__ = "torch_utils.persistence"
_persistent.__qualname__ = "_reconstruct_persistent_obj"
sys.modules.setdefault("torch_utils", type(sys)("torch_utils"))
_persistence_module = type(sys)("torch_utils.persistence")
_persistence_module._reconstruct_persistent_obj = _persistent
sys.modules.setdefault("torch_utils.persistence", _persistence_module)


def test_rewritten_reference_still_loads_exactly(tmp_path):
    data = read_network_pickle(REFERENCE)
    path = tmp_path / "same.pkl"
    path.write_bytes(pickle.dumps(_as_records(data), protocol=4))
    a, b = load_generator(REFERENCE), load_generator(path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


_RSS_SCRIPT = PEAK_RSS_KIB + textwrap.dedent("""
    import resource, sys
    from latentkit.errors import CheckpointError
    from latentkit.load.safe_pickle import loads_network_pickle
    outcomes = []
    for name in sys.argv[1:]:
        try:
            loads_network_pickle(open(name, "rb").read(), name=name)
            outcomes.append("loaded")
        except CheckpointError:
            outcomes.append("refused")
    print(",".join(outcomes), peak_rss_kib())
""")


def test_allocation_bombs_stay_under_a_memory_bound(tmp_path):
    files = {
        "stride0.pkl": _pickle(_tensor(_storage(torch.ones(1)), [40000, 40000], [0, 0])),
        "memo.pkl": _pickle([_tensor(_storage(torch.ones(1024 * 1024)), [1024 * 1024], [1])] * 1
                            + [_tensor(_storage(torch.ones(1)), [1], [1])]),
        "memo2000.pkl": _pickle([_tensor(s, [256 * 1024], [1]) for s in [_storage(torch.ones(256 * 1024))]
                                 for _ in range(2000)]),
        "memoindex.pkl": b"\x80\x02Nr\x00\x00\x00\x10.",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, *[str(tmp_path / n) for n in files]],
                         capture_output=True, text=True, timeout=300, env=_SUBPROCESS_ENV)
    assert out.returncode == 0, out.stderr
    outcomes, rss_kb = out.stdout.split()
    assert outcomes.split(",") == ["refused", "loaded", "refused", "refused"]
    assert int(rss_kb) < 1_500_000  # KiB on Linux: 1.5 GB
