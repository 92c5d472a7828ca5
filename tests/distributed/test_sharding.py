"""The pieces of distributed runs that need no second process: environment, shards, stream split, merges."""

from __future__ import annotations

import json

import pytest
import torch

from latentkit.distributed import check_shard, init_distributed, torchrun_environment
from latentkit.errors import InputError
from latentkit.latent.gaussianize import w_to_v64
from latentkit.latent.moments import Moments, merge_across_ranks
from latentkit.latent.sampling import iter_mapping, shard_size
from latentkit.projection.distributed import agree, manifest_name, my_share
from latentkit.projection.outdir import MANIFEST, merge_manifests, read_manifest


def test_torchrun_environment():
    assert torchrun_environment({}) is None
    assert torchrun_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == {
        "rank": 1, "world_size": 4, "local_rank": 1}
    with pytest.raises(InputError, match="incomplete: RANK set but not WORLD_SIZE, LOCAL_RANK"):
        torchrun_environment({"RANK": "0"})
    with pytest.raises(InputError, match="must be integers"):
        torchrun_environment({"RANK": "a", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(InputError, match="0 <= RANK < WORLD_SIZE"):
        torchrun_environment({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_outside_torchrun_nothing_happens(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert init_distributed("cpu") is None


def test_check_shard():
    assert check_shard(None) == (0, 1) and check_shard((0, 1)) == (0, 1)
    with pytest.raises(InputError, match="0 <= rank < world_size"):
        check_shard((3, 2))
    with pytest.raises(InputError, match="must be \\(rank, world_size\\)"):
        check_shard("ab")
    with pytest.raises(InputError, match="needs the matching torch.distributed process group"):
        check_shard((1, 2))


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_partition_the_one_process_stream(toy_generator, world):
    n = 4 * 1024 + 77
    full = torch.cat(list(iter_mapping(toy_generator, n, batch_size=999, seed=2)))
    parts = [list(iter_mapping(toy_generator, n, batch_size=500, seed=2, shard=(r, world))) for r in range(world)]
    blocks = full.split(1024)
    for rank, part in enumerate(parts):
        mine = torch.cat(part) if part else full[:0]
        assert mine.shape[0] == shard_size(n, (rank, world))
        assert torch.equal(mine, torch.cat(blocks[rank::world]) if blocks[rank::world] else full[:0])
        assert all(w.shape[0] <= 500 for w in part)


def test_moments_merged_in_rank_order_equal_one_accumulator(toy_generator):
    v = w_to_v64(torch.cat(list(iter_mapping(toy_generator, 3000, seed=1))), 0.2, 2**0.5)
    one = Moments(v.shape[1], torch.device("cpu"))
    one.update(v.clone())
    merged = Moments(v.shape[1], torch.device("cpu"))
    for part in (v[:0], v[:1024], v[1024:2900], v[2900:]):  # an empty rank too
        m = Moments(v.shape[1], torch.device("cpu"))
        if len(part):
            m.update(part.clone())
        merged.merge(Moments.from_state(m.state(), torch.device("cpu")))
    assert merged.n == one.n and merge_across_ranks(one, 1) is one
    assert float((merged.mean - one.mean).norm() / one.mean.norm()) < 1e-12
    assert float((merged.scatter() - one.scatter()).norm() / one.scatter().norm()) < 1e-12


def test_my_share_and_names():
    items = list(range(7))
    shares = [items[r::3] for r in range(3)]
    assert my_share(items, (0, 1)) == items
    assert shares[0] == [0, 3, 6] and sorted(sum(shares, [])) == items
    assert my_share(items, None) == items
    assert manifest_name(None) == MANIFEST


def test_agree_alone_reraises_its_own_error():
    agree(None, None)
    with pytest.raises(InputError, match="mine"):
        agree(InputError("mine"), None)


def test_merge_manifests_keeps_the_last_line_per_input_in_input_order(tmp_path):
    def write(name, *inputs):
        (tmp_path / name).write_text("".join(json.dumps({"input": i, "v": name}) + "\n" for i in inputs))

    write(MANIFEST, "a", "b")
    write("manifest.rank1.jsonl", "d", "b")
    write("manifest.rank0.jsonl", "c", "e")
    (tmp_path / "manifest.rank0.jsonl").open("a").write('{"input": "trunc')  # a line cut by a crash
    assert read_manifest(tmp_path)["b"]["v"] == "manifest.rank1.jsonl"
    assert merge_manifests(tmp_path, ["a", "b", "c", "d", "e"]) == 4
    lines = [json.loads(line) for line in (tmp_path / MANIFEST).read_text().splitlines()]
    assert [(r["input"], r["v"]) for r in lines] == [
        ("a", MANIFEST), ("b", "manifest.rank1.jsonl"), ("c", "manifest.rank0.jsonl"), ("d", "manifest.rank1.jsonl"),
        ("e", "manifest.rank0.jsonl")]
    assert not list(tmp_path.glob("manifest.rank*")) and merge_manifests(tmp_path) == 0
