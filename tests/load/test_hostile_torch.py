"""Hostile torch.save files: compressed members (zip bombs), views and storages claiming more than the file."""

from __future__ import annotations

import io
import pickletools
import zipfile

import pytest
import torch

from latentkit import load_generator
from latentkit.errors import CheckpointError

from conftest import REFERENCE_NETS


def test_deflated_members_are_refused_before_torch_load(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"g_ema": {"w": torch.zeros(1000, 1000)}}, plain)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert bomb.stat().st_size < plain.stat().st_size // 10
    with pytest.raises(CheckpointError, match="is compressed.*zip bomb"):
        load_generator(bomb)


def test_stride_zero_views_in_a_pt_are_budgeted(tmp_path):
    state = torch.load(REFERENCE_NETS / "rosinality_convert_res16.pt", weights_only=True)
    state["g_ema"]["style.1.weight"] = torch.zeros(1).expand(40000, 40000)  # a view: 6.4 GB if materialised
    path = tmp_path / "views.pt"
    torch.save(state, path)
    assert path.stat().st_size < 10 << 20
    with pytest.raises(CheckpointError, match="more than the file can hold"):
        load_generator(path)


def test_legacy_storage_claiming_more_than_the_file(tmp_path):
    buffer = io.BytesIO()
    torch.save({"g_ema": {"w": torch.zeros(10)}}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    # the storage's element count (10) is the last integer before the persistent id: claim 2**30 instead
    ops = []
    stream = io.BytesIO(data)
    for _ in range(4):
        ops.extend(pickletools.genops(stream))
    persid = next(i for i, (op, _, _) in enumerate(ops) if op.name == "BINPERSID")
    op, arg, pos = next(item for item in reversed(ops[:persid]) if item[0].name == "BININT1")
    assert arg == 10
    hostile = data[:pos] + b"J" + (2**30).to_bytes(4, "little") + data[pos + 2:]
    path = tmp_path / "legacy.pt"
    path.write_bytes(hostile)
    with pytest.raises(CheckpointError, match="claim 1,073,741,824 elements"):
        load_generator(path)
