"""FFHQ-style alignment: the crop rule on known landmarks, MTCNN on a real photo, errors, the CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentkit.projection.align import _crop_quad, align_face, align_from_landmarks, detect_landmarks
from latentkit.cli import main
from latentkit.errors import InputError, ShapeError

PHOTOS = Path(__file__).parents[1] / "data" / "photos"
needs_mtcnn = pytest.mark.skipif(
    importlib.util.find_spec("facenet_pytorch") is None, reason="facenet-pytorch (latentkit[face]) not installed"
)
# left eye, right eye, nose, mouth left, mouth right (x, y)
UPRIGHT = np.array([[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [42.0, 70.0], [58.0, 70.0]])


def test_crop_rule_on_upright_face():
    quad, side = _crop_quad(UPRIGHT)
    # Eye distance 20, eye-to-mouth 20: half-size = max(2 * 20, 1.8 * 20) = 40, centre = eyes + 0.1 * 20 down.
    assert side == pytest.approx(80.0)
    np.testing.assert_allclose(quad, [[10, 12], [10, 92], [90, 92], [90, 12]], atol=1e-9)


def test_crop_rule_follows_rotation():
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([50.0, 50.0])
    quad, side = _crop_quad((UPRIGHT - centre) @ rot.T + centre)
    upright, _ = _crop_quad(UPRIGHT)
    np.testing.assert_allclose(quad, (upright - centre) @ rot.T + centre, atol=1e-9)
    assert side == pytest.approx(80.0)


def test_align_from_landmarks_output_and_padding():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8))
    face = align_from_landmarks(img, UPRIGHT, output_size=64, transform_size=256)
    assert face.image.size == (64, 64) and face.image.mode == "RGB"
    np.testing.assert_allclose(face.quad, _crop_quad(UPRIGHT)[0])
    # A face at the image border: the crop leaves the image and is reflect-padded, not black.
    edge = align_from_landmarks(img, UPRIGHT - [35, 40], output_size=64, transform_size=256)
    assert np.asarray(edge.image)[:8, :8].mean() > 20


@needs_mtcnn
def test_real_photo_eyes_end_up_level_and_centred():
    faces = align_face(PHOTOS / "grace_hopper.jpg", output_size=128, transform_size=512)
    assert len(faces) == 1 and faces[0].score > 0.99
    points, _ = detect_landmarks(faces[0].image)
    left, right = points[0][0], points[0][1]
    assert abs(left[1] - right[1]) < 3  # eyes level
    assert abs((left[0] + right[0]) / 2 - 64) < 3  # centred
    assert 25 < right[0] - left[0] < 40  # eye distance ~ a quarter of the crop, as in FFHQ


@needs_mtcnn
def test_errors(tmp_path):
    img = Image.new("RGB", (64, 64), (128, 128, 128))
    with pytest.raises(ShapeError, match=r"finite \[5, 2\] array"):
        align_from_landmarks(img, np.zeros((68, 2)))
    with pytest.raises(ShapeError, match="eyes coincide"):
        align_from_landmarks(img, np.zeros((5, 2)))
    with pytest.raises(InputError, match="MTCNN found no face"):
        align_face(img)
    with pytest.raises(InputError, match="image file not found"):
        align_face(tmp_path / "missing.jpg")


@needs_mtcnn
def test_align_cli(tmp_path):
    out = tmp_path / "aligned"
    result = CliRunner().invoke(
        main, ["align", str(PHOTOS / "astronaut.jpg"), "--outdir", str(out), "--size", "64", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "astronaut.png")
    assert Image.open(out / "astronaut.png").size == (64, 64)
