"""Pure-PyTorch building blocks of the StyleGAN family, one op per module.

They reproduce the numerics of the reference (non-CUDA) code paths of NVIDIA's ``torch_utils.ops``
exactly: the same padding rules, the same filter flipping, the same order of operations. They run on any
device and dtype and are differentiable (float64 ``gradcheck`` in the tests). Feature maps are
``[N, C, H, W]``.
"""

from latentkit.nets.ops.bias_act import ACTIVATIONS, Activation, bias_act
from latentkit.nets.ops.conv2d_resample import conv2d_resample
from latentkit.nets.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_output_size
from latentkit.nets.ops.modulated_conv import modulated_conv2d
from latentkit.nets.ops.normalize import normalize_2nd_moment
from latentkit.nets.ops.upfirdn2d import parse_padding, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "bias_act",
    "conv2d_resample",
    "filtered_lrelu",
    "filtered_lrelu_output_size",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "parse_padding",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
