"""A resumed projection checkpoint must hold finite tensors of the right shapes, even with the right fingerprint."""

from __future__ import annotations

import pytest
import torch

from latentkit.errors import InputError

from test_project import FAST, _targets, run


@pytest.mark.parametrize("damage, match", [
    (lambda s: s["w_opt"].fill_(float("nan")), "w_opt is missing, mis-shaped or not finite"),
    (lambda s: s.__setitem__("w_opt", s["w_opt"][:, :1]), "w_opt is missing, mis-shaped"),
    (lambda s: s.__setitem__("step", -4), "step -4"),
    (lambda s: s.__setitem__("noises", {}), "other noise buffers"),
], ids=["nan", "shape", "step", "noises"])
def test_damaged_checkpoint_is_refused(toy_generator, tmp_path, damage, match):
    G = toy_generator
    _, target = _targets(G, 1)
    ckpt = tmp_path / "run.pt"
    run(G, target, num_steps=3, checkpoint=ckpt, checkpoint_every=1, **FAST)
    state = torch.load(ckpt, weights_only=True)
    damage(state)
    torch.save(state, ckpt)
    with pytest.raises(InputError, match=match):
        run(G, target, num_steps=3, checkpoint=ckpt, **FAST)
