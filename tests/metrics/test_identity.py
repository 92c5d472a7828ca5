"""Face identity: dlib on real photos (offline), facenet wiring with RANDOM weights (marked as such)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.errors import InputError, ShapeError, WeightsUnavailableError
from latentkit.io import load_image
from latentkit.metrics.identity import (
    FACENET_URL,
    FaceEmbedder,
    face_embeddings,
    identity_similarity,
)

PHOTOS = Path(__file__).parents[1] / "data" / "photos"
ASTRONAUT = PHOTOS / "astronaut.jpg"
HOPPER = PHOTOS / "grace_hopper.jpg"

pytest.importorskip("dlib")


def _array(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _variants(path: Path) -> list[np.ndarray]:
    """The photo, a shifted and rescaled crop, a brighter copy and a mirror image: same person each time."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    crop = img.crop((8, 12, w - 4, h - 6)).resize((w * 9 // 10, h * 9 // 10), Image.BICUBIC)
    bright = np.clip(np.asarray(img, dtype=np.float32) * 1.25 + 10, 0, 255).astype(np.uint8)
    return [np.asarray(img), np.asarray(crop), bright, np.asarray(img)[:, ::-1].copy()]


@pytest.fixture(scope="module")
def dlib_embedder():
    return FaceEmbedder("dlib")


def test_dlib_same_person_scores_higher_than_different_people(dlib_embedder):
    images = _variants(ASTRONAUT) + _variants(HOPPER)  # 0-3 one person, 4-7 the other
    emb, found = dlib_embedder.embed(images)
    assert bool(found.all())
    sim = emb @ emb.T  # [8, 8] cosine similarities
    same = [float(sim[i, j]) for group in (range(4), range(4, 8)) for i, j in itertools.combinations(group, 2)]
    different = [float(sim[i, j]) for i, j in itertools.product(range(4), range(4, 8))]
    assert min(same) > max(different) + 0.05, (same, different)
    assert min(same) > 0.95
    assert max(different) < 0.93
    # The public function gives the same numbers.
    pairs = identity_similarity([images[0], images[0]], [images[3], images[5]], embedder=dlib_embedder)
    torch.testing.assert_close(pairs, torch.stack([sim[0, 3], sim[0, 5]]), atol=1e-5, rtol=0)


def test_dlib_batched_equals_pairwise_and_broadcasts(dlib_embedder):
    a = [ASTRONAUT, HOPPER]
    b = [_variants(ASTRONAUT)[3], _variants(HOPPER)[1]]
    batched = identity_similarity(a, b, embedder=dlib_embedder)
    assert batched.shape == (2,) and batched.dtype == torch.float32
    single = torch.stack([identity_similarity(x, y, embedder=dlib_embedder)[0] for x, y in zip(a, b)])
    torch.testing.assert_close(batched, single)
    broadcast = identity_similarity(ASTRONAUT, [ASTRONAUT, HOPPER], embedder=dlib_embedder)
    assert broadcast.shape == (2,)
    assert broadcast[0] == pytest.approx(1.0, abs=1e-5)
    assert broadcast[1] < 0.93


def test_input_kinds_agree(dlib_embedder):
    emb = face_embeddings([ASTRONAUT, HOPPER], backend="dlib")
    assert emb.shape == (2, 128)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    path_result = emb[:1]
    tensor = load_image(ASTRONAUT)  # [1, 3, H, W] in [-1, 1]
    array = _array(ASTRONAUT)  # [H, W, 3] uint8
    torch.testing.assert_close(dlib_embedder.embed([array])[0], path_result)
    assert identity_similarity(tensor, array, embedder=dlib_embedder)[0] == pytest.approx(1.0, abs=1e-6)
    assert identity_similarity(tensor[0], ASTRONAUT, embedder=dlib_embedder)[0] == pytest.approx(1.0, abs=1e-6)


def test_channels_last_tensors_and_strided_arrays_embed_like_contiguous_ones(dlib_embedder):
    tensor = load_image(ASTRONAUT)  # [1, 3, H, W]
    strided = tensor.contiguous(memory_format=torch.channels_last)  # as a channels-last generator returns them
    assert not strided.is_contiguous()
    assert identity_similarity(strided, tensor, embedder=dlib_embedder)[0] == pytest.approx(1.0, abs=1e-6)
    array = _array(ASTRONAUT)
    flipped = np.ascontiguousarray(array[:, ::-1])[:, ::-1]  # the same pixels through a negative stride
    assert not flipped.flags.c_contiguous
    torch.testing.assert_close(dlib_embedder.embed([flipped])[0], dlib_embedder.embed([array])[0])


def test_no_face_raises_or_gives_nan(dlib_embedder):
    grey = np.full((120, 120, 3), 128, dtype=np.uint8)
    with pytest.raises(InputError, match=r"no face found in b\[1\].*on_missing='nan'"):
        identity_similarity([ASTRONAUT, HOPPER], [ASTRONAUT, grey], embedder=dlib_embedder)
    sims = identity_similarity([ASTRONAUT, HOPPER], [ASTRONAUT, grey], embedder=dlib_embedder, on_missing="nan")
    assert not math.isnan(float(sims[0])) and math.isnan(float(sims[1]))


def test_detect_false_embeds_whole_images():
    # A generator's 32 px output holds no detectable face; detect=False still gives an embedding.
    img = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = FaceEmbedder("dlib", detect=False)
    sims = identity_similarity(img, img, embedder=whole)
    torch.testing.assert_close(sims, torch.ones(3), atol=1e-5, rtol=0)
    other = identity_similarity(img, img.flip(0), embedder=whole)
    assert bool(torch.isfinite(other).all()) and float(other[0]) < 1 - 1e-4


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"backend": "arcface"}, InputError, "backend must be one of"),
        ({"backend": "dlib", "on_missing": "skip"}, InputError, "on_missing must be"),
        ({"backend": "dlib", "face_weights": "x.pt"}, InputError, "face_weights is a facenet option"),
    ],
)
def test_option_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        identity_similarity(ASTRONAUT, HOPPER, **kwargs)


def test_input_errors(dlib_embedder):
    with pytest.raises(ShapeError, match="same number of images"):
        identity_similarity([ASTRONAUT, HOPPER], [ASTRONAUT, HOPPER, ASTRONAUT], embedder=dlib_embedder)
    with pytest.raises(ShapeError, match="must be uint8"):
        identity_similarity(_array(ASTRONAUT).astype(np.float32), ASTRONAUT, embedder=dlib_embedder)
    with pytest.raises(ShapeError, match=r"float images \[N, C, H, W\]"):
        identity_similarity(torch.zeros(2, 5, 8, 8), ASTRONAUT, embedder=dlib_embedder)
    with pytest.raises(InputError, match="must be an image path"):
        identity_similarity(42, ASTRONAUT, embedder=dlib_embedder)
    with pytest.raises(InputError, match="image file not found"):
        identity_similarity(PHOTOS / "missing.png", ASTRONAUT, embedder=dlib_embedder)


# --------------------------------------------------------------------------------------------------
# facenet: the real weights cannot be downloaded here. These tests build InceptionResnetV1 with RANDOM
# weights (written to a local file) to test the wiring: MTCNN crop (real MTCNN weights ship with
# facenet-pytorch), standardisation, batching, the local-file path. Their similarities mean nothing.


@pytest.fixture(scope="module")
def random_facenet_weights(tmp_path_factory) -> Path:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)  # test-only: the library never seeds globally
    net = InceptionResnetV1(pretrained=None, classify=False).eval()
    path = tmp_path_factory.mktemp("facenet") / "RANDOM-untrained-inception-resnet-v1.pt"
    torch.save(net.state_dict(), path)
    return path


def test_facenet_wiring_with_random_weights(random_facenet_weights):
    embedder = FaceEmbedder("facenet", face_weights=random_facenet_weights)
    assert embedder.weights_path == random_facenet_weights
    emb, found = embedder.embed([_array(ASTRONAUT), _array(HOPPER), np.full((100, 100, 3), 128, np.uint8)])
    assert emb.shape == (3, 512)
    assert found.tolist() == [True, True, False]  # MTCNN (real weights) finds both faces, not the grey square
    torch.testing.assert_close(emb[:2].norm(dim=1), torch.ones(2))
    sims = identity_similarity([ASTRONAUT, HOPPER], [ASTRONAUT, HOPPER], embedder=embedder)
    torch.testing.assert_close(sims, torch.ones(2), atol=1e-5, rtol=0)
    # detect=False: the whole image is resized to 160 px and standardised; batched as one call.
    whole = FaceEmbedder("facenet", detect=False, face_weights=random_facenet_weights)
    emb_whole, found_whole = whole.embed([_array(ASTRONAUT)] * 3, batch_size=2)
    assert bool(found_whole.all())
    torch.testing.assert_close(emb_whole[0], emb_whole[2])


def test_facenet_offline_error_says_where_to_put_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(WeightsUnavailableError, match=r"Download .*20180402-114759-vggface2\.pt and put it at .*th/checkpoints"):
        FaceEmbedder("facenet")
    assert not (tmp_path / "th" / "checkpoints" / Path(FACENET_URL).name).exists()


def test_facenet_uses_cached_file(tmp_path, monkeypatch, random_facenet_weights):
    cached = tmp_path / "th" / "checkpoints" / Path(FACENET_URL).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(random_facenet_weights.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert FaceEmbedder("facenet").weights_path == cached


def test_facenet_bad_weight_files(tmp_path):
    with pytest.raises(InputError, match="face_weights file not found"):
        FaceEmbedder("facenet", face_weights=tmp_path / "nope.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InputError, match="do not fit InceptionResnetV1"):
        FaceEmbedder("facenet", face_weights=wrong)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read facenet weights"):
        FaceEmbedder("facenet", face_weights=junk)


def test_compare_faces_uses_the_published_operating_point():
    pytest.importorskip("dlib")
    from latentkit.metrics.identity import OPERATING_POINTS, compare_faces

    result = compare_faces([PHOTOS / "astronaut.jpg", PHOTOS / "astronaut.jpg"],
                           [PHOTOS / "astronaut.jpg", PHOTOS / "grace_hopper.jpg"], backend="dlib")
    assert result.backend == "dlib" and result.threshold == OPERATING_POINTS["dlib"][1] == 0.6
    assert result.same_person.tolist() == [True, False]
    assert float(result.distance[0]) < 1e-6 and float(result.distance[1]) > 0.6
    assert float(result.similarity[0]) == pytest.approx(1.0, abs=1e-6)
    # dlib's raw descriptors are not unit length: the verdict uses their distance, not the cosine's
    assert float(result.distance[1]) ** 2 != pytest.approx(2 - 2 * float(result.similarity[1]), rel=1e-3)


def test_choose_backend_prefers_given_facenet_weights(tmp_path):
    from latentkit.metrics.identity import choose_backend

    assert choose_backend(tmp_path / "w.pt") == "facenet"
    assert choose_backend() == "dlib"  # the tests' private torch home holds no facenet weights
