"""FFHQ-style face alignment from the five landmarks of facenet-pytorch's MTCNN.

FFHQ's images were cropped by a rule on the eye and mouth positions (Karras et al. 2019, the
``ffhq-dataset`` recreation script, there from 68 dlib landmarks): an oriented square centred slightly
below the eyes, sized by the larger of twice the eye distance and 1.8 times the eye-to-mouth distance,
rotated so the eyes are level. MTCNN gives exactly the points the rule needs (eye centres, mouth corners),
and its weights ship inside the facenet-pytorch package, so alignment works offline. MTCNN's eye centres
sit close to the mean of dlib's six eye points; crops agree with FFHQ's to a few pixels at 1024 px.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from latentkit.errors import InputError, ShapeError

__all__ = ["AlignedFace", "detect_landmarks", "align_from_landmarks", "align_face", "expects_aligned_faces",
           "files_without_face"]

logger = logging.getLogger(__name__)


@dataclass
class AlignedFace:
    """One aligned face.

    Attributes:
        image: the aligned RGB image, ``output_size`` x ``output_size``.
        landmarks: ``[5, 2]`` (x, y) in the input image: left eye, right eye, nose, mouth left, mouth right.
        quad: ``[4, 2]`` corners of the crop in the input image (top-left, bottom-left, bottom-right,
            top-right).
        score: detector confidence (1.0 when landmarks were given).
    """

    image: Image.Image
    landmarks: np.ndarray
    quad: np.ndarray
    score: float = 1.0


def _open(image: Image.Image | str | os.PathLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from latentkit.io import load_image, to_uint8

    return Image.fromarray(to_uint8(load_image(image))[0])  # RGBA, greyscale and 16-bit handled there


def detect_landmarks(
    image: Image.Image | str | os.PathLike, *, device: str | None = None, min_confidence: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Detect faces with MTCNN.

    Args:
        image: a PIL image or an image file.
        device: torch device for MTCNN (default CPU).
        min_confidence: drop detections below this probability.

    Returns:
        (landmarks ``[F, 5, 2]`` float64 (x, y), scores ``[F]``), largest face first; ``F`` may be 0.
    """
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:  # pragma: no cover - optional dependency
        raise InputError("face alignment needs facenet-pytorch: pip install 'latentkit[face]'") from err
    img = _open(image)
    detector = MTCNN(keep_all=True, device=device or "cpu")
    boxes, probs, points = detector.detect(img, landmarks=True)
    if boxes is None:
        return np.zeros((0, 5, 2)), np.zeros(0)
    keep = np.asarray(probs, dtype=np.float64) >= min_confidence
    boxes, probs, points = boxes[keep], np.asarray(probs)[keep], points[keep]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-area)
    return np.asarray(points, dtype=np.float64)[order], np.asarray(probs, dtype=np.float64)[order]


def _crop_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The oriented FFHQ square ``[4, 2]`` and its side length from five landmarks."""
    eye_l, eye_r, _, mouth_l, mouth_r = landmarks
    eyes = 0.5 * (eye_l + eye_r)
    across = eye_r - eye_l  # eye to eye
    down = 0.5 * (mouth_l + mouth_r) - eyes  # eye centre to mouth centre
    # Horizontal axis of the crop: the eye direction blended with the perpendicular of the eye-mouth line.
    axis_x = across - np.array([-down[1], down[0]])
    axis_x = axis_x / np.hypot(*axis_x) * max(2.0 * np.hypot(*across), 1.8 * np.hypot(*down))
    axis_y = np.array([-axis_x[1], axis_x[0]])
    centre = eyes + 0.1 * down
    quad = np.stack(
        [centre - axis_x - axis_y, centre - axis_x + axis_y, centre + axis_x + axis_y, centre + axis_x - axis_y]
    )
    return quad, 2.0 * float(np.hypot(*axis_x))


def _reflect_pad(img: Image.Image, pad: np.ndarray, side: float) -> Image.Image:
    """Pad by reflection, then blur and fade the padding towards the median colour (as FFHQ did)."""
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = (int(p) for p in pad)
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = arr.shape[:2]
    ys, xs = np.ogrid[:h, :w]
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.minimum(xs / max(left, 1e-6), (w - 1 - xs) / max(right, 1e-6))
        fy = np.minimum(ys / max(top, 1e-6), (h - 1 - ys) / max(bottom, 1e-6))
    mask = np.maximum(1.0 - fx, 1.0 - fy).astype(np.float32)[..., None]  # 0 inside, rises in the padding
    blurred = gaussian_filter(arr, [side * 0.02, side * 0.02, 0])
    arr += (blurred - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")


def align_from_landmarks(
    image: Image.Image | str | os.PathLike,
    landmarks: np.ndarray,
    *,
    output_size: int = 1024,
    transform_size: int = 4096,
    padding: bool = True,
) -> AlignedFace:
    """Crop and rotate one face FFHQ's way, given its five landmarks.

    Args:
        image: a PIL image or an image file.
        landmarks: ``[5, 2]`` (x, y): left eye, right eye, nose, mouth left, mouth right (MTCNN's order).
        output_size: side of the result in pixels (FFHQ: 1024).
        transform_size: side of the intermediate quad transform (supersampling; FFHQ: 4096).
        padding: reflect-pad (with a blurred fade) where the crop leaves the image, as FFHQ did.

    Returns:
        :class:`AlignedFace`.

    Raises:
        ShapeError: ``landmarks`` is not ``[5, 2]`` or has coinciding eyes.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ShapeError(f"landmarks must be a finite [5, 2] array of (x, y), got shape {list(points.shape)}")
    if np.hypot(*(points[1] - points[0])) < 1e-3:
        raise ShapeError("landmarks: the two eyes coincide; these are not face landmarks")
    img = _open(image)
    quad, side = _crop_quad(points)
    original_quad = quad.copy()

    shrink = int(np.floor(side / output_size * 0.5))  # downscale huge faces first (cheaper, less aliasing)
    if shrink > 1:
        img = img.resize((int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink))), Image.Resampling.LANCZOS)
        quad, side = quad / shrink, side / shrink

    border = max(int(np.rint(side * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    box = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.width),
        min(hi[1] + border, img.height),
    )
    if box[2] - box[0] < img.width or box[3] - box[1] < img.height:
        img = img.crop(box)
        quad = quad - np.array(box[:2])

    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = np.array(
        [
            max(-lo[0] + border, 0),
            max(-lo[1] + border, 0),
            max(hi[0] - img.width + border, 0),
            max(hi[1] - img.height + border, 0),
        ]
    )
    if padding and pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(side * 0.3)))
        img = _reflect_pad(img, pad, side)
        quad = quad + pad[:2]

    out = img.transform((transform_size, transform_size), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR)
    if output_size < transform_size:
        out = out.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return AlignedFace(image=out, landmarks=points, quad=original_quad)


def align_face(
    image: Image.Image | str | os.PathLike,
    *,
    output_size: int = 1024,
    transform_size: int = 4096,
    all_faces: bool = False,
    device: str | None = None,
) -> list[AlignedFace]:
    """Detect faces with MTCNN and align them FFHQ's way.

    Args:
        image: a PIL image or an image file.
        output_size: side of each result (FFHQ: 1024).
        transform_size: supersampling size of the quad transform.
        all_faces: align every detected face (largest first) instead of only the largest.
        device: torch device for MTCNN.

    Returns:
        One :class:`AlignedFace` (or several with ``all_faces``).

    Raises:
        InputError: no face found.

    Example:
        >>> face = align_face("photo.jpg", output_size=256)[0]  # doctest: +SKIP
        >>> face.image.save("aligned.png")
    """
    img = _open(image)
    landmarks, scores = detect_landmarks(img, device=device)
    name = os.fspath(image) if not isinstance(image, Image.Image) else "image"
    if len(landmarks) == 0:
        raise InputError(f"{name}: MTCNN found no face (confidence >= 0.9); crop the photo closer to the face")
    faces = []
    for points, score in zip(landmarks if all_faces else landmarks[:1], scores):
        face = align_from_landmarks(img, points, output_size=output_size, transform_size=transform_size)
        face.score = float(score)
        faces.append(face)
    logger.info("%s: %d face(s) found, %d aligned", name, len(landmarks), len(faces))
    return faces


def expects_aligned_faces(network: str) -> bool:
    """Whether ``network`` (a registry name or a file) is an FFHQ network, trained on aligned faces: its registry
    entry says FFHQ, or its name does."""
    from latentkit import hub

    name = os.fspath(network)
    if name in hub.REGISTRY:
        return "ffhq" in (hub.model_info(name).dataset + name).lower()
    return "ffhq" in os.path.basename(name).lower()


def files_without_face(files: list[str | os.PathLike], *, limit: int = 16, max_side: int = 512) -> list[str] | None:
    """The files among the first ``limit`` in which MTCNN finds no face (images downscaled to ``max_side`` first,
    so the check costs a fraction of a second each); None when facenet-pytorch is not installed."""
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        logger.debug("facenet-pytorch is not installed: the face check is skipped")
        return None
    missing = []
    for file in list(files)[:limit]:
        img = _open(file)
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        if len(detect_landmarks(img)[0]) == 0:
            missing.append(os.fspath(file))
    return missing
