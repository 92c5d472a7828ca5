"""Fuzzing the loaders: byte mutations of valid files (an NVIDIA pickle, a rosinality .pt, an IR .xml) end
in a loaded generator or a LatentkitError; never another exception, a crash or unbounded memory."""

from __future__ import annotations

import io
import os
from pathlib import Path
import pickletools
import subprocess
import sys
import textwrap
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentkit import load_generator
from latentkit.errors import LatentkitError
from latentkit.load.openvino_ir import read_ir
from latentkit.nets.ir.program import IRProgram

from conftest import PEAK_RSS_KIB, REFERENCE_NETS
from test_mobilestylegan import tiny_synthesis

# The worktree's package (not an installed one, whatever the current directory), single-threaded.
_SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}

PICKLE = (REFERENCE_NETS / "sg2ada_cond_map2_res32.pkl").read_bytes()
LEGACY_PT = (REFERENCE_NETS / "rosinality_convert_res16.pt").read_bytes()
XML, BIN = tiny_synthesis()


def _opcode_positions(data: bytes) -> list[int]:
    """Offsets of the opcodes of the first pickle(s) in data: mutations there change structure, not weights."""
    stream, out = io.BytesIO(data), []
    try:
        while len(out) < 200_000:
            for _op, _arg, pos in pickletools.genops(stream):
                out.append(pos)
    except Exception:  # noqa: BLE001 - end of the pickles
        pass
    return out


PICKLE_OPS = _opcode_positions(PICKLE)
PT_OPS = _opcode_positions(LEGACY_PT)


def _mutate(data: bytes, positions: list[int], edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for index, shift, value in edits:
        pos = min(positions[index % len(positions)] + shift, len(out) - 1)
        out[pos] = value
    return bytes(out[:cut] if cut else out)


_edits = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 8), st.integers(0, 255)), min_size=1, max_size=4)
_cut = st.one_of(st.none(), st.integers(1, 10**7))
_fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_generator(path)
        except LatentkitError:
            pass


@_fuzz
@given(edits=_edits, cut=_cut)
def test_mutated_network_pickle(tmp_path, edits, cut):
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(_mutate(PICKLE, PICKLE_OPS, edits, cut and cut % len(PICKLE)))
    _load(path)


@_fuzz
@given(edits=_edits, cut=_cut)
def test_mutated_legacy_torch_file(tmp_path, edits, cut):
    path = tmp_path / "fuzz.pt"
    path.write_bytes(_mutate(LEGACY_PT, PT_OPS, edits, cut and cut % len(LEGACY_PT)))
    _load(path)


@_fuzz
@given(edits=_edits, cut=_cut)
def test_mutated_ir_xml(edits, cut):
    xml = _mutate(XML, list(range(len(XML))), edits, cut and cut % len(XML))
    try:
        IRProgram(read_ir(xml, BIN))
    except LatentkitError:
        pass


_RSS_SCRIPT = PEAK_RSS_KIB + textwrap.dedent("""
    import random, resource, sys, warnings, tempfile, os
    warnings.simplefilter("ignore")
    from latentkit import load_generator
    from latentkit.errors import LatentkitError
    data = open(sys.argv[1], "rb").read()
    rng = random.Random(int(sys.argv[2]))
    outcomes = {"loaded": 0, "refused": 0}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.pkl")
        for _ in range(int(sys.argv[3])):
            out = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(min(len(out), 4096)) if rng.random() < 0.7 else rng.randrange(len(out))
                out[pos] = rng.randrange(256)
            open(path, "wb").write(bytes(out))
            try:
                load_generator(path)
                outcomes["loaded"] += 1
            except LatentkitError:
                outcomes["refused"] += 1
    print(outcomes["loaded"], outcomes["refused"], peak_rss_kib())
""")


@pytest.mark.parametrize("name", ["sg3t_uncond_res32.pkl", "rosinality_convert_res16.pt"])
def test_fuzzed_loads_stay_under_a_memory_bound(name):
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(REFERENCE_NETS / name), "0", "60"],
                         capture_output=True, text=True, timeout=600, env=_SUBPROCESS_ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded, refused, rss_kb = map(int, out.stdout.split())
    assert loaded + refused == 60
    assert rss_kb < 1_500_000
