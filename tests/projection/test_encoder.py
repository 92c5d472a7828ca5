"""The encoder: file format (strict, no pickle), training (resumable), the encoder start and the stopping rule."""

from __future__ import annotations

import json
import struct
from dataclasses import replace

import pytest
import torch

from conftest import REFERENCE_NETS, invoke_cli, make_toy_generator, synthetic_prior
from latentkit.errors import InputError
from latentkit.projection.encoder import EncoderConfig, ImageEncoder, ResNetEncoder, network_fingerprint, prior_head
from latentkit.projection.encoder_file import load_encoder, save_encoder
from latentkit.projection.settings import NVIDIA_INITIAL_NOISE_FACTOR, ProjectionSettings, converged


def fresh_net(path, seed=2027):
    """A tiny rosinality StyleGAN2 (16 px) no other test has seen: the res16 reference net's tensors redrawn
    with the same mean and spread from ``seed``."""
    ckpt = torch.load(REFERENCE_NETS / "rosinality_convert_res16.pt", weights_only=True)
    g = torch.Generator().manual_seed(seed)
    state = {k: t.clone() if k.endswith("kernel") or k.startswith("noises.") or t.numel() < 2
             else torch.randn(t.shape, generator=g) * t.std() + t.mean() for k, t in ckpt["g_ema"].items()}
    torch.save({"g_ema": state, "latent_avg": ckpt["latent_avg"]}, path)
    return path


@pytest.fixture
def toy_encoder():
    G = make_toy_generator(w_dim=6, num_ws=3)
    prior = synthetic_prior(w_dim=6)
    enc = ResNetEncoder(EncoderConfig(num_ws=3, w_dim=6, input_resolution=16, channels=(8, 8)), *prior_head(prior))
    return G, prior, enc


@pytest.mark.parametrize("n", [1, 3])
def test_untrained_encoder_predicts_the_prior_mode(toy_encoder, n):
    G, prior, enc = toy_encoder
    ws = enc(torch.rand(n, 3, 40, 24) * 2 - 1)
    assert isinstance(enc, ImageEncoder) and ws.shape == (n, 3, 6)
    mode = prior.from_coefficients(torch.zeros(1, 6, dtype=torch.float64)).float()
    torch.testing.assert_close(ws, mode.expand(n, 3, -1), atol=1e-4, rtol=1e-4)


def test_head_is_the_prior_transform(toy_encoder):
    _, prior, enc = toy_encoder
    u = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(enc.to_w(u.float()), prior.from_coefficients(u).float(), atol=1e-4, rtol=1e-4)


def test_file_round_trip_and_strict_checks(toy_encoder, tmp_path):
    G, _, enc = toy_encoder
    with torch.no_grad():
        enc.out.bias.normal_()
    path = save_encoder(tmp_path / "e.safetensors", enc, network=network_fingerprint(G))
    back = load_encoder(path, G)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(back(x), enc(x))
    other = make_toy_generator(w_dim=6, num_ws=3, resolution=32)
    with pytest.raises(InputError, match="trained for another network"):
        load_encoder(path, other)
    raw = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    name = "out.bias"
    start, _ = header[name]["data_offsets"]
    bad = bytearray(raw)
    bad[8 + size + start : 8 + size + start + 4] = struct.pack("<f", float("nan"))
    (tmp_path / "nan.safetensors").write_bytes(bytes(bad))
    with pytest.raises(InputError, match="NaN"):
        load_encoder(tmp_path / "nan.safetensors", G)
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(InputError, match="header claims"):
        load_encoder(tmp_path / "huge.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match="not a latentkit encoder"):
        load_encoder(tmp_path / "plain.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        load_encoder(tmp_path / "missing.safetensors")


def test_encoder_start_and_errors(toy_encoder):
    from latentkit.projection.project import project

    G, prior, enc = toy_encoder
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    s = ProjectionSettings(num_steps=1, perceptual=None, mse_weight=1.0, start="encoder", w_avg_samples=100,
                           learning_rate=0.0)
    result = project(G, target, settings=s, prior=prior, encoder=enc, progress=False)
    torch.testing.assert_close(result.ws, enc(target), atol=1e-4, rtol=1e-4)  # lr 0: the start itself
    with pytest.raises(InputError, match="needs encoder="):
        project(G, target, settings=s, prior=prior, progress=False)
    with pytest.raises(InputError, match="settings.start is 'w_avg'"):
        project(G, target, settings=ProjectionSettings(start="w_avg", perceptual=None, mse_weight=1.0), encoder=enc)


def test_stopping_rule():
    s = ProjectionSettings(stop_tol=0.01, stop_window=2)
    assert not converged(s, [[1.0], [0.5], [0.4]])  # fewer than two windows
    assert not converged(s, [[1.0], [1.0], [0.5], [0.5]])  # improving
    assert converged(s, [[1.0], [1.0], [1.0], [0.999]])
    assert not converged(ProjectionSettings(), [[1.0]] * 500)  # off by default
    # while latent noise is added (the first 75 % of num_steps) the loss plateaus by design: not a stop
    ramped = ProjectionSettings(stop_tol=0.01, stop_window=2, num_steps=100, initial_noise_factor=NVIDIA_INITIAL_NOISE_FACTOR)
    flat = [[1.0]] * 4
    assert converged(ramped, flat) and not converged(ramped, flat, steps_done=78)
    assert converged(ramped, flat, steps_done=79)  # both windows after step 75
    assert converged(replace(ramped, initial_noise_factor=0.0), flat, steps_done=4)  # no noise: no wait
    assert converged(ProjectionSettings(stop_tol=0.01, stop_window=2, num_steps=100), flat, steps_done=4)  # the default: none
    assert "stop_tol" not in ProjectionSettings().to_dict()  # old fingerprints unchanged
    with pytest.raises(InputError, match="stop_window"):
        ProjectionSettings(stop_window=0)


def test_project_stops_when_converged():
    from latentkit.projection.project import project

    G = make_toy_generator()
    s = ProjectionSettings(num_steps=60, perceptual=None, mse_weight=1.0, w_avg_samples=100, stop_tol=0.5,
                           stop_window=3)
    result = project(G, torch.zeros(1, 3, 16, 16), settings=s, progress=False)
    assert result.stop_reason == "converged" and result.steps_run < 60 and result.losses.shape == (1, result.steps_run)


def test_train_encoder_resumes(tmp_path):
    from latentkit.projection.encoder_settings import EncoderTrainSettings
    from latentkit.projection.encoder_train import train_encoder

    G = make_toy_generator(w_dim=6, num_ws=3)
    prior = synthetic_prior(w_dim=6)
    s = EncoderTrainSettings(samples=32, val_samples=16, steps=4, batch_size=8, checkpoint_every=2, input_resolution=16)
    out = tmp_path / "enc.safetensors"
    first = train_encoder(G, out, settings=s, prior=prior, progress=False)
    assert [h["step"] for h in first.history] == [2, 4]
    more = train_encoder(G, out, settings=EncoderTrainSettings(**{**s.__dict__, "steps": 6}), prior=prior, progress=False)
    assert [h["step"] for h in more.history] == [2, 4, 6]  # resumed, the samples reused from the cache
    assert load_encoder(out, G).config.input_resolution == 16
    with pytest.raises(InputError, match=r"another encoder training \(mixing=0\.5 \(now 0\.0\)\)"):
        train_encoder(G, out, settings=EncoderTrainSettings(**{**s.__dict__, "mixing": 0.0}), prior=prior, progress=False)


def test_latent_loss_in_v_weighs_directions_by_variance():
    from latentkit.projection.encoder_settings import EncoderTrainSettings
    from latentkit.projection.encoder_train import _latent_loss

    g = torch.Generator().manual_seed(0)
    u = torch.randn(4000, 2, 3, generator=g, dtype=torch.float64)
    colour = torch.diag(torch.tensor([3.0, 1.0, 1e-4], dtype=torch.float64))  # one near-null direction
    zero = torch.zeros_like(u)
    # predicting the mode scores about 1 in both metrics (u ~ N(0, I))
    assert abs(float(_latent_loss(zero, u, None)) - 1) < 0.05 and abs(float(_latent_loss(zero, u, colour)) - 1) < 0.05
    only_null_wrong = u.clone()
    only_null_wrong[..., 2] = 0  # right in the two visible directions, the mode in the near-null one
    assert float(_latent_loss(only_null_wrong, u, None)) > 0.3  # u counts it fully
    assert float(_latent_loss(only_null_wrong, u, colour)) < 1e-8  # v barely at all
    with pytest.raises(InputError, match="latent_loss"):
        EncoderTrainSettings(latent_loss="w")


def test_cli_errors(tmp_path):
    net = fresh_net(tmp_path / "net.pt")
    img = tmp_path / "x.png"
    from latentkit.io import save_image

    save_image(img, torch.zeros(1, 3, 16, 16))
    result = invoke_cli(["project", img, "--network", net, "--init", "encoder", "--perceptual-weights", "random"])
    assert result.exit_code == 2 and "--init encoder needs --encoder" in result.output


@pytest.mark.slow
def test_acceptance_encoder_20_steps_beat_default_100(tmp_path):
    """On a net no other test uses: train-encoder, then 20 steps from its prediction reach a lower LPIPS (the
    loss's own VGG, random weights offline) than 100 steps from the default start, on generated targets."""
    from latentkit.io import save_image
    from latentkit.load import load_generator

    net = fresh_net(tmp_path / "net.pt")
    G = load_generator(net)
    targets = []
    for i in range(3):
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(9000 + i))
        targets.append(save_image(tmp_path / f"t{i}.png", G(z).clamp(-1, 1)))
    enc = tmp_path / "enc.safetensors"
    result = invoke_cli(["train-encoder", "--network", net, "--out", enc, "--samples", 4096, "--steps", 1500,
                         "--device", "cpu"])
    assert result.exit_code == 0, result.output
    common = ["--network", net, "--perceptual-weights", "random", "--device", "cpu"]
    lpips = {}
    for name, extra in [("encoder", ["--init", "encoder", "--encoder", enc, "--num-steps", 20]),
                        ("default", ["--num-steps", 100])]:
        result = invoke_cli(["project", *targets, *common, "--outdir", tmp_path / name, *extra])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (tmp_path / name / "manifest.jsonl").read_text().splitlines()]
        lpips[name] = sorted((r["input"], r["lpips"]) for r in rows)
    for (_, ours), (_, theirs) in zip(lpips["encoder"], lpips["default"]):
        assert ours < theirs, lpips


def test_ctrl_c_saves_the_training_state(tmp_path, monkeypatch):
    from latentkit.projection.encoder_settings import EncoderTrainSettings
    from latentkit.projection.encoder_train import EncoderTrainingInterrupted, train_encoder

    G = make_toy_generator(w_dim=6, num_ws=3)
    prior = synthetic_prior(w_dim=6)
    s = EncoderTrainSettings(samples=16, val_samples=16, steps=10, batch_size=4, checkpoint_every=100, input_resolution=16)
    real, calls = ResNetEncoder.coefficients, []

    def interrupt_at_third(self, x):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(ResNetEncoder, "coefficients", interrupt_at_third)
    with pytest.raises(EncoderTrainingInterrupted, match="interrupted at step 2 of 10"):
        train_encoder(G, tmp_path / "enc.safetensors", settings=s, prior=prior, progress=False)
    monkeypatch.setattr(ResNetEncoder, "coefficients", real)
    assert json.loads((tmp_path / "enc.safetensors.work" / "history.json").read_text())[-1]["step"] == 2
    result = train_encoder(G, tmp_path / "enc.safetensors", settings=s, prior=prior, progress=False)
    assert [h["step"] for h in result.history] == [2, 10]


def test_manifest_and_losses_record_the_stop(tmp_path):
    from latentkit.io import save_image
    from latentkit.projection.batch import project_files

    G = make_toy_generator()
    save_image(tmp_path / "a.png", torch.zeros(1, 3, 16, 16))
    s = ProjectionSettings(num_steps=60, perceptual=None, mse_weight=1.0, w_avg_samples=100, stop_tol=0.5, stop_window=3)
    project_files(G, [tmp_path / "a.png"], tmp_path / "out", settings=s, progress=False)
    losses = json.loads((tmp_path / "out" / "a" / "losses.json").read_text())
    line = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert losses["stop_reason"] == line["stop_reason"] == "converged"
    assert losses["steps_run"] == line["steps_run"] == len(losses["losses"]) < 60
