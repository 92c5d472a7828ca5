"""Pivotal tuning (latentkit.tune) and generator deltas on tiny nets."""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import sys
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_NETS, make_toy_generator

from latentkit.errors import CheckpointError, InputError, ShapeError
from latentkit.projection.delta import GeneratorDelta, network_fingerprint
from latentkit.projection.lpips import lpips_vgg
from latentkit.projection.tune import tune
from latentkit.projection.tune_settings import DEFAULT_DELTA_RANK, TuneSettings

FAST = TuneSettings(num_steps=25, learning_rate=0.05, perceptual_weights="random", locality_samples=0,
                    max_delta_fraction=1.0)  # the toy net's weights are too small for low-rank factors to pay


@pytest.fixture(scope="module")
def net():
    return lpips_vgg("random")


@pytest.fixture(scope="module")
def toy():
    return make_toy_generator()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(4 / (a.clamp(-1, 1) - b.clamp(-1, 1)).square().flatten(1).mean(1))


def _smooth_targets(n: int, res: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, 3, res // 4, res // 4, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def tuned(toy, net):
    """Two toy images tuned together at the default rank."""
    ws = toy.mapping(torch.randn(2, toy.z_dim, generator=torch.Generator().manual_seed(0)))
    targets = _smooth_targets(2, toy.img_resolution)
    return ws, targets, tune(toy, targets, ws, settings=FAST, perceptual_net=net, progress=False)


def test_tuning_gains_at_least_3_db_over_the_pivot(tuned):
    ws, targets, result = tuned
    gain = _psnr(result.images, targets) - _psnr(result.pivot_images, targets)
    assert bool((gain >= 3).all()), gain
    assert result.losses.shape == (2, FAST.num_steps) and set(result.loss_terms) == {"lpips", "l2", "locality"}
    assert len(result.deltas) == 2 and result.images.shape == targets.shape


def test_each_image_gets_its_own_delta_independent_of_the_batch(toy, net, tuned):
    ws, targets, result = tuned
    alone = tune(toy, targets[1:], ws[1:], settings=FAST, perceptual_net=net, progress=False)
    assert torch.allclose(alone.images, result.images[1:], atol=1e-5)
    assert not torch.equal(result.deltas[0].updates["const"], result.deltas[1].updates["const"])
    with pytest.raises(InputError, match="one per image"):
        result.delta


def test_saved_delta_applied_through_the_api_reproduces_the_images(toy, tuned, tmp_path):
    ws, _, result = tuned
    before = {k: v.clone() for k, v in toy.state_dict().items()}
    path = result.deltas[1].save(tmp_path / "tuned.safetensors")
    tuned_G = GeneratorDelta.load(path, toy).apply(toy)
    with torch.no_grad():
        image = tuned_G.synthesis(ws[1:2])
    assert torch.equal(image, result.images[1:2])
    assert all(torch.equal(v, toy.state_dict()[k]) for k, v in before.items())  # G untouched


def test_default_rank_delta_is_at_most_5_percent_of_the_generator(net):
    from latentkit.load import load_generator

    G = load_generator(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl")
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    result = tune(G, _smooth_targets(1, 32), ws, settings=dataclasses.replace(FAST, num_steps=1, max_delta_fraction=0.05),
                  perceptual_net=net, progress=False)
    assert 1 <= result.delta.rank <= DEFAULT_DELTA_RANK  # halved to fit: this test net is narrow
    assert result.delta.nbytes <= 0.05 * 4 * sum(p.numel() for p in G.parameters())
    full = tune(G, _smooth_targets(1, 32), ws, settings=dataclasses.replace(FAST, num_steps=1, delta_rank=0),
                perceptual_net=net, progress=False)
    assert full.delta.nbytes > 4 * result.delta.nbytes


@pytest.mark.parametrize("name", ["sg3t_uncond_res32.pkl", "sgxl_cond_t_res16.pkl", "rosinality_convert_res16.pt",
                                  "sg2ada_cond_map2_res32.pkl", "mobilestylegan"])
def test_every_architecture_tunes_and_its_delta_applies(name, net):
    from latentkit.load import load_generator

    if name == "mobilestylegan":
        sys.path.insert(0, str(Path(__file__).parents[1] / "load"))
        from test_mobilestylegan import tiny_generator

        G = tiny_generator()
    else:
        G = load_generator(REFERENCE_NETS / name)
    c = torch.eye(G.c_dim)[:1] if G.c_dim else None
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)), c)
    s = dataclasses.replace(FAST, num_steps=2, locality_samples=1, learning_rate=1e-2)
    if G.img_resolution < 32:  # too small for VGG's pooling: pixel terms only
        s = dataclasses.replace(s, lpips_weight=0.0, locality_lpips_weight=0.0)
    result = tune(G, _smooth_targets(1, G.img_resolution).clamp(-1, 1), ws, c=c, settings=s, perceptual_net=net,
                  progress=False)
    assert result.delta.updates, "no tunable parameters found"
    with torch.no_grad():
        again = result.delta.apply(G).synthesis(ws)
    assert torch.allclose(again, result.images, atol=1e-4)
    assert not torch.allclose(result.images, result.pivot_images, atol=1e-6)


def test_locality_keeps_random_latents_closer_than_the_pivot(net):
    from latentkit.load import load_generator

    G = load_generator(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl")
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    s = TuneSettings(num_steps=12, learning_rate=1e-2, perceptual_weights="random", locality_alpha=3.0)
    result = tune(G, _smooth_targets(1, 32), ws, settings=s, perceptual_net=net, progress=False)
    others = G.mapping(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(9)))
    tuned_G = result.delta.apply(G)
    with torch.no_grad():
        at_pivot = (result.images - result.pivot_images).abs().mean()
        elsewhere = (tuned_G.synthesis(others) - G.synthesis(others)).abs().mean()
    assert elsewhere < 0.5 * at_pivot, (float(elsewhere), float(at_pivot))


def test_checkpoint_resumes_bit_for_bit(toy, net, tmp_path):
    ws = toy.mapping(torch.randn(1, toy.z_dim, generator=torch.Generator().manual_seed(3)))
    target = _smooth_targets(1, 16)
    s = dataclasses.replace(FAST, num_steps=6, locality_samples=1)
    whole = tune(toy, target, ws, settings=s, perceptual_net=net, progress=False)
    ckpt = tmp_path / "t.pt"
    tune(toy, target, ws, settings=dataclasses.replace(s, num_steps=6), perceptual_net=net, progress=False,
         checkpoint=ckpt, checkpoint_every=3)
    assert ckpt.is_file()
    from latentkit.projection.tune import TuneState

    calls = []
    original = TuneState.step
    try:
        TuneState.step = lambda self, step: (calls.append(step), original(self, step))[1]
        resumed = tune(toy, target, ws, settings=s, perceptual_net=net, progress=False, checkpoint=ckpt)
    finally:
        TuneState.step = original
    assert calls == [] and torch.equal(resumed.images, whole.images)


def test_checkpoint_of_other_settings_names_them(toy, net, tmp_path):
    ws = toy.mapping(torch.randn(1, toy.z_dim, generator=torch.Generator().manual_seed(3)))
    target = _smooth_targets(1, 16)
    ckpt = tmp_path / "t.pt"
    tune(toy, target, ws, settings=dataclasses.replace(FAST, num_steps=2), perceptual_net=net, progress=False,
         checkpoint=ckpt)
    other = dataclasses.replace(FAST, num_steps=2, learning_rate=0.01)
    with pytest.raises(InputError, match=r"learning_rate=0\.05 \(now 0\.01\)"):
        tune(toy, target, ws, settings=other, perceptual_net=net, progress=False, checkpoint=ckpt)


def test_learning_rate_by_kind_of_update():
    from latentkit.projection.tune_settings import FULL_LEARNING_RATE, LOW_RANK_LEARNING_RATE

    assert TuneSettings().lr == LOW_RANK_LEARNING_RATE == pytest.approx(10 * FULL_LEARNING_RATE)  # low rank by default
    assert TuneSettings(delta_rank=0).lr == FULL_LEARNING_RATE == 3e-4  # full weights: PTI's rate
    assert TuneSettings(delta_rank=0, learning_rate=0.02).lr == TuneSettings(learning_rate=0.02).lr == 0.02
    for bad in (0, -1e-3, float("nan"), True, "1e-3"):
        with pytest.raises(InputError, match="learning_rate"):
            TuneSettings(learning_rate=bad)
    # the locality term: PTI's 0.1 for full weights, 3x that for the faster low-rank runs, unless given
    assert TuneSettings(delta_rank=0).locality_weights == (0.1, 0.1)
    assert TuneSettings().locality_weights == (0.3, 0.3)
    assert TuneSettings(locality_l2_weight=0.0, locality_lpips_weight=2.0).locality_weights == (0.0, 2.0)
    with pytest.raises(InputError, match="locality_l2_weight"):
        TuneSettings(locality_l2_weight=float("inf"))


def test_tune_rejects_bad_input(toy, net):
    ws = toy.mapping(torch.randn(1, toy.z_dim))
    with pytest.raises(InputError, match="num_steps"):
        TuneSettings(num_steps=0)
    with pytest.raises(InputError, match="both 0"):
        TuneSettings(lpips_weight=0, l2_weight=0)
    with pytest.raises(ShapeError):
        tune(toy, _smooth_targets(2, 16), ws, settings=FAST, perceptual_net=net, progress=False)
    with pytest.raises(InputError, match="TuneSettings"):
        tune(toy, _smooth_targets(1, 16), ws, settings=object(), progress=False)


# --------------------------------------------------------------------------------------------------
# Delta files: each corruption is one clear error.


@pytest.fixture
def delta_file(tuned, tmp_path):
    return tuned[2].deltas[0].save(tmp_path / "tuned.safetensors")


def test_truncated_delta_is_refused(toy, delta_file):
    data = delta_file.read_bytes()
    delta_file.write_bytes(data[: len(data) - 10])
    with pytest.raises(CheckpointError, match="truncated"):
        GeneratorDelta.load(delta_file, toy)
    delta_file.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        GeneratorDelta.load(delta_file, toy)


def test_delta_of_another_network_is_refused(delta_file):
    other = make_toy_generator(seed=1)
    with pytest.raises(CheckpointError, match="another network"):
        GeneratorDelta.load(delta_file, other)


def test_nan_delta_is_refused(toy, tuned, tmp_path):
    delta = tuned[2].deltas[0]
    bad = dataclasses.replace(delta, updates={k: (v.clone() if not isinstance(v, tuple) else v) for k, v in delta.updates.items()})
    bad.updates["const"][0, 0, 0, 0] = float("nan")
    path = bad.save(tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        GeneratorDelta.load(path, toy)


def test_oversized_header_and_file_are_refused(toy, tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CheckpointError, match="exceeds"):
        GeneratorDelta.load(path, toy)
    path.write_bytes(b"\0" * (8 + (1 << 22) + 4 * sum(p.numel() for p in toy.parameters()) + 1))
    with pytest.raises(CheckpointError, match="larger than any delta"):
        GeneratorDelta.load(path, toy)


def test_pickle_is_refused_without_unpickling(toy, tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"const": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="pickle"):
        GeneratorDelta.load(path, toy)
    torch.save({"a": torch.zeros(1)}, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        GeneratorDelta.load(tmp_path / "t.pt", toy)


def test_mismatched_shapes_and_names_are_refused(toy, delta_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(delta_file), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    tensors["const"] = tensors["const"][..., :8].contiguous()
    save_file(tensors, str(tmp_path / "shape.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="shape"):
        GeneratorDelta.load(tmp_path / "shape.safetensors", toy)
    meta2 = dict(meta, parameters=json.dumps(["nope"]))
    save_file({"nope": torch.zeros(1)}, str(tmp_path / "name.safetensors"), metadata=meta2)
    with pytest.raises(CheckpointError, match="not in this"):
        GeneratorDelta.load(tmp_path / "name.safetensors", toy)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a latentkit generator delta"):
        GeneratorDelta.load(tmp_path / "plain.safetensors", toy)


def test_network_fingerprint_sees_values(toy):
    assert network_fingerprint(toy) == network_fingerprint(make_toy_generator())
    assert network_fingerprint(toy) != network_fingerprint(make_toy_generator(seed=2))


@pytest.mark.slow
def test_default_rank_delta_of_the_real_model_is_at_most_5_percent():
    """MobileStyleGAN FFHQ 1024 (needs the random-face wheel in the cache): sizes only, no tuning."""
    from latentkit.load import load_generator
    from latentkit.projection.delta import tunable_parameters
    from latentkit.projection.tune import delta_bytes

    G = load_generator("mobilestylegan-ffhq")
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    params = dict(G.named_parameters(remove_duplicate=False))
    base = {name: params[name] for name in tunable_parameters(G, ws)}
    assert delta_bytes(base, DEFAULT_DELTA_RANK) <= 0.05 * 4 * sum(p.numel() for p in G.parameters())
