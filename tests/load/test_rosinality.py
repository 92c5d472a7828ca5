"""rosinality/stylegan2-pytorch checkpoints: safe loading, derived architecture, exact outputs.

References come from the original code (tests/data/reference-nets/README.md, sections 4 and 8); the
criterion is the README's ``max |ours - ref| <= 1e-5 * max(1, max |ref|)``.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from latentkit.errors import CheckpointError, InputError, LatentkitError, ShapeError
from latentkit.load.rosinality import load_rosinality, rosinality_config
from latentkit.nets.rosinality import RosinalityGenerator, standard_channels

REFERENCE_NETS = Path(__file__).resolve().parents[1] / "data" / "reference-nets"
CONVERT = REFERENCE_NETS / "rosinality_convert_res16.pt"
TRAIN = REFERENCE_NETS / "rosinality_trainpt_res32.pt"
FILES = {"convert_res16": CONVERT, "trainpt_res32": TRAIN}


def assert_close_to_ref(ours: torch.Tensor, ref: np.ndarray, what: str) -> None:
    ours = ours.detach().cpu().numpy()
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    err = float(np.abs(ours - ref).max())
    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert err <= tol, f"{what}: max abs error {err:.3g} > tolerance {tol:.3g}"


def _load_quietly(path: Path) -> RosinalityGenerator:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_rosinality(path)


@pytest.fixture(scope="module", params=sorted(FILES))
def loaded(request):
    """(generator, reference arrays); the train-style net gets the reference truncation centre as w_avg."""
    path = FILES[request.param]
    ref = dict(np.load(path.with_suffix(".npz"), allow_pickle=False))
    G = _load_quietly(path)
    if path == TRAIN:
        G.w_avg.copy_(torch.from_numpy(ref["truncation_latent"][0]))
    return G, ref


# ------------------------------------------------------------------------------------------------
# Architecture derived from the file.


@pytest.mark.parametrize(
    ("path", "size", "style_dim", "num_ws", "num_noise"), [(CONVERT, 16, 32, 6, 5), (TRAIN, 32, 64, 8, 7)]
)
def test_architecture_from_keys_and_shapes(path, size, style_dim, num_ws, num_noise):
    G = _load_quietly(path)
    assert G.architecture == "rosinality-stylegan2"
    assert (G.img_resolution, G.z_dim, G.w_dim, G.num_ws, G.c_dim, G.img_channels) == (
        size, style_dim, style_dim, num_ws, 0, 3,
    )
    assert G.n_mlp == 8
    assert set(G.channels.values()) == {16}  # the scaled channel table of these files (README 2.3)
    assert (G.mapping_activation.slope, G.mapping_activation.gain) == (0.2, pytest.approx(2**0.5))
    noise = G.const_noise()
    assert list(noise) == [f"noise_{i}" for i in range(num_noise)]
    assert [t.shape[-1] for t in noise.values()] == [2 ** ((i + 5) // 2) for i in range(num_noise)]
    assert not G.training and not any(p.requires_grad for p in G.parameters())


def test_buffers_are_loaded_not_recomputed():
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(TRAIN, map_location="cpu", weights_only=True)["g_ema"]
    G = _load_quietly(TRAIN)
    assert torch.equal(G.convs[2].conv.blur.kernel, state["convs.2.conv.blur.kernel"])
    assert torch.equal(G.to_rgbs[1].upsample.kernel, state["to_rgbs.1.upsample.kernel"])
    assert torch.equal(G.const_noise()["noise_6"], state["noises.noise_6"])


# ------------------------------------------------------------------------------------------------
# Numbers against the original code.


def test_mapping(loaded):
    G, ref = loaded
    z = torch.from_numpy(ref["z"])
    assert_close_to_ref(G.map_latent(z), ref["styles_w"], "styles_w")
    assert_close_to_ref(G.mapping_preact(z), ref["mapping_last_preact"], "mapping_last_preact")
    assert_close_to_ref(G.w_avg[None], ref["truncation_latent"], "truncation_latent")
    assert_close_to_ref(G.mapping(z), ref["ws_psi1"], "ws_psi1")
    assert_close_to_ref(G.mapping(z, truncation_psi=0.7), ref["ws_psi07"], "ws_psi07")


def test_last_activation_is_the_declared_one(loaded):
    G, ref = loaded
    pre = torch.from_numpy(ref["mapping_last_preact"])
    act = G.mapping_activation
    w = torch.nn.functional.leaky_relu(pre, act.slope) * act.gain
    assert_close_to_ref(w, ref["styles_w"], "activation(mapping_last_preact)")


@pytest.mark.parametrize("psi", ["1", "07"])
def test_synthesis_from_reference_latents(loaded, psi):
    G, ref = loaded
    img = G.synthesis(torch.from_numpy(ref[f"ws_psi{psi}"]), noise_mode="const")
    assert_close_to_ref(img, ref[f"img_latent_psi{psi}"], f"img_latent_psi{psi}")


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_end_to_end_from_z(loaded, psi):
    G, ref = loaded
    img = G(torch.from_numpy(ref["z"]), truncation_psi=psi, noise_mode="const")
    assert_close_to_ref(img, ref["img_z_psi1" if psi == 1 else "img_z_psi07"], f"img_z psi={psi}")


def test_zero_noise(loaded):
    G, ref = loaded
    ws = torch.from_numpy(ref["ws_psi1"])
    assert_close_to_ref(G.synthesis(ws, noise_mode="none"), ref["img_latent_psi1_zero_noise"], "noise_mode=none")
    zeros = {name: torch.zeros_like(buf) for name, buf in G.const_noise().items()}
    assert_close_to_ref(G.synthesis(ws, noise=zeros), ref["img_latent_psi1_zero_noise"], "zero noise dict")
    # The noise matters (README: 3.5 to 3.9), so the comparison above is not vacuous.
    assert float((G.synthesis(ws) - G.synthesis(ws, noise_mode="none")).abs().max()) > 0.5


def test_batch_independence(loaded):
    G, ref = loaded
    ws = torch.from_numpy(ref["ws_psi1"])
    whole = G.synthesis(ws)
    single = torch.cat([G.synthesis(ws[i : i + 1]) for i in range(ws.shape[0])])
    assert_close_to_ref(single, whole.numpy(), "batch of 1 vs batch of 4")


# ------------------------------------------------------------------------------------------------
# w_avg.


def test_w_avg_is_the_stored_latent_avg():
    G = _load_quietly(CONVERT)
    with torch.serialization.safe_globals([argparse.Namespace]):
        latent_avg = torch.load(CONVERT, map_location="cpu", weights_only=True)["latent_avg"]
    assert torch.equal(G.w_avg, latent_avg)
    assert G.w_avg_source.startswith("latent_avg")


def test_w_avg_estimated_and_said_so():
    with pytest.warns(UserWarning, match=r"stores no 'latent_avg': w_avg .* estimated .* 10000 mapped z \(seed 0\)"):
        G = load_rosinality(TRAIN)
    assert G.w_avg_source == "estimated: mean of 10000 mapped z (seed 0)"
    assert G.info()["w_avg_source"] == G.w_avg_source
    ref = np.load(TRAIN.with_suffix(".npz"))["truncation_latent"][0]
    # Both are Monte Carlo means of the same distribution (ours 10000 samples, the reference 4096).
    assert float(np.abs(G.w_avg.numpy() - ref).max()) < 0.2
    first = G.w_avg.clone()
    again = G.estimate_w_avg().clone()
    assert torch.equal(again, first)  # deterministic seed
    assert not torch.equal(G.estimate_w_avg(500, seed=1), again)


def test_estimate_w_avg_rejects_zero_samples():
    G = _load_quietly(CONVERT)
    with pytest.raises(InputError, match="num_samples must be >= 1, got 0"):
        G.estimate_w_avg(0)


# ------------------------------------------------------------------------------------------------
# Other configurations: a fresh network saved like rosinality's files round-trips through the loader.


@pytest.mark.parametrize(
    ("size", "style_dim", "n_mlp", "channels", "legacy"),
    [(8, 8, 2, {4: 6, 8: 5}, True), (64, 16, 3, {4: 12, 8: 10, 16: 8, 32: 6, 64: 4}, False)],
)
def test_other_configurations_round_trip(tmp_path, size, style_dim, n_mlp, channels, legacy):
    src = RosinalityGenerator(size, style_dim, n_mlp, channels)
    gen = torch.Generator().manual_seed(size)
    with torch.no_grad():
        for t in src.state_dict().values():
            t.copy_(torch.randn(t.shape, generator=gen) * 0.5 + 0.1)
    state = {k: v.clone() for k, v in src.state_dict().items() if k != "w_avg"}
    path = tmp_path / "g.pt"
    torch.save({"g_ema": state, "latent_avg": src.w_avg.clone()}, path, _use_new_zipfile_serialization=not legacy)

    assert rosinality_config(state) == {
        "size": size, "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels,
        "kernel_size": 3, "blur_taps": 4, "img_channels": 3,
    }
    G = load_rosinality(path)
    z = torch.randn(2, style_dim, generator=gen)
    ws = G.mapping(z, truncation_psi=0.5)
    assert ws.shape == (2, 2 * int(np.log2(size)) - 2, style_dim)
    img = G.synthesis(ws)
    assert img.shape == (2, 3, size, size)
    assert torch.equal(img, src.synthesis(src.mapping(z, truncation_psi=0.5)))


@pytest.mark.parametrize("n", [1, 3])
def test_shapes_noise_modes_and_gradients(n):
    G = _load_quietly(CONVERT)
    ws = G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(n)))
    assert ws.shape == (n, 6, 32)
    const = G.synthesis(ws, noise_mode="const")
    assert const.shape == (n, 3, 16, 16)
    torch.manual_seed(0)
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), const)
    per_sample = {k: v.expand(n, -1, -1, -1).clone() for k, v in G.const_noise().items()}
    assert torch.allclose(G.synthesis(ws, noise=per_sample), const, atol=1e-6)
    ws = ws.clone().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_synthesis_argument_errors():
    G = _load_quietly(CONVERT)
    ws = G.mapping(torch.zeros(2, G.z_dim))
    with pytest.raises(InputError, match=r"noise_mode must be one of \('const', 'random', 'none'\), got 'off'"):
        G.synthesis(ws, noise_mode="off")
    with pytest.raises(InputError, match=r"noise has unknown keys \['noise_9'\]"):
        G.synthesis(ws, noise={"noise_9": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ShapeError, match=r"noise\['noise_1'\] must have shape \[2 or 1, 1, 8, 8\], got \[1, 1, 4, 4\]"):
        G.synthesis(ws, noise={"noise_1": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ShapeError, match=r"noise\['noise_0'\] must have shape \[2 or 1, 1, 4, 4\]"):
        G.synthesis(ws, noise={"noise_0": torch.zeros(3, 1, 4, 4)})
    with pytest.raises(ShapeError, match=r"ws must have shape \[N, 6, 32\]"):
        G.synthesis(ws[:, :5])


def test_constructor_errors():
    with pytest.raises(InputError, match="size must be a power of two >= 4, got 24"):
        RosinalityGenerator(24, 8, 2, {4: 4, 8: 4, 16: 4})
    with pytest.raises(InputError, match=r"missing \[16\]"):
        RosinalityGenerator(16, 8, 2, {4: 4, 8: 4})


# ------------------------------------------------------------------------------------------------
# Safety and broken files.


class _Payload:
    """Pickles as a call to os.system that would create the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_code_payload_is_refused_and_never_executed(tmp_path, legacy):
    sentinel = tmp_path / "EXECUTED"
    path = tmp_path / "hostile.pt"
    payload = {"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": _Payload(sentinel)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"refused to unpickle the global '(posix|nt|os)\.system'") as info:
        load_rosinality(path)
    assert isinstance(info.value.__cause__, Exception)
    assert not sentinel.exists()


def test_nested_payload_in_namespace_is_refused(tmp_path):
    sentinel = tmp_path / "EXECUTED"
    path = tmp_path / "hostile_args.pt"
    torch.save({"args": argparse.Namespace(size=_Payload(sentinel))}, path)
    with pytest.raises(CheckpointError, match=r"global '(posix|nt|os)\.system'"):
        load_rosinality(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("path", [CONVERT, TRAIN], ids=["legacy", "zip"])
def test_truncated_file(tmp_path, path):
    data = path.read_bytes()
    cut = tmp_path / path.name
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"not a readable torch\.save checkpoint \(truncated or corrupted\?\)"):
        load_rosinality(cut)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"", b"hello, this is not a checkpoint", b"\x80\x04K\x01."])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"{path.name}: (not a readable torch\.save checkpoint|expected a dict)"):
        load_rosinality(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"rosinality checkpoint not found: .*nope\.pt"):
        load_rosinality(tmp_path / "nope.pt")


def _state(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def test_no_g_ema_names_the_keys(tmp_path):
    ckpt = _state(TRAIN)
    path = tmp_path / "no_ema.pt"
    torch.save({"g": ckpt["g"], "d": ckpt["d"]}, path)
    with pytest.raises(CheckpointError, match=r"no generator 'g_ema' \(keys found: 'g', 'd'\)"):
        load_rosinality(path)


def test_bare_state_dict_is_accepted(tmp_path):
    ckpt = _state(CONVERT)
    path = tmp_path / "bare.pt"
    torch.save({**ckpt["g_ema"], "latent_avg": ckpt["latent_avg"]}, path)
    G = load_rosinality(path)
    assert torch.equal(G.w_avg, ckpt["latent_avg"])


def test_strict_keys_and_shapes(tmp_path):
    ckpt = _state(CONVERT)
    state = dict(ckpt["g_ema"])
    del state["convs.1.noise.weight"]
    torch.save({"g_ema": state}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['convs\.1\.noise\.weight'\]"):
        load_rosinality(tmp_path / "missing.pt")

    state = dict(ckpt["g_ema"], extra=torch.zeros(1))
    torch.save({"g_ema": state}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['extra'\]"):
        load_rosinality(tmp_path / "extra.pt")

    state = dict(ckpt["g_ema"])
    state["convs.1.activate.bias"] = torch.zeros(7)
    torch.save({"g_ema": state}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"convs\.1\.activate\.bias: file \[7\], expected \[16\]"):
        load_rosinality(tmp_path / "shape.pt")

    state = {k: v for k, v in ckpt["g_ema"].items() if k != "noises.noise_4"}
    torch.save({"g_ema": state}, tmp_path / "noise.pt")
    with pytest.raises(CheckpointError, match=r"has 5 noise buffers noises\.noise_i, 'g_ema' has 4"):
        load_rosinality(tmp_path / "noise.pt")

    torch.save({"g_ema": {"conv1.conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"mapping layers must be style\.1 \.\.\. style\.N, found indices none"):
        load_rosinality(tmp_path / "other.pt")


def test_bad_latent_avg(tmp_path):
    ckpt = _state(CONVERT)
    torch.save({"g_ema": ckpt["g_ema"], "latent_avg": torch.zeros(5)}, tmp_path / "avg.pt")
    with pytest.raises(CheckpointError, match=r"'latent_avg' must have 32 values .* got shape \[5\]"):
        load_rosinality(tmp_path / "avg.pt")


def test_standard_channel_table():
    assert standard_channels(1024, 2) == {
        4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32,
    }
    assert standard_channels(256, 1) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}


def test_errors_are_latentkit_errors():
    assert issubclass(CheckpointError, LatentkitError) and issubclass(CheckpointError, ValueError)


def test_dispatcher_uses_this_loader():
    from latentkit import load_generator

    G = load_generator(CONVERT)
    assert isinstance(G, RosinalityGenerator) and G.architecture == "rosinality-stylegan2"
    assert len(G.sha256) == 64
