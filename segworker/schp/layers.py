"""Building blocks of the SCHP network: its normalisation layer and resize rule.

The released SCHP files were trained with In-Place Activated BatchNorm
(InPlaceABNSync). Its inference maths differs from ``nn.BatchNorm2d`` in two
ways that matter for the official weights (SPEC §2):

* the scale is ``|weight| + eps``, not ``weight`` (trained weights can be
  negative and still scale positively);
* the head layers fuse a leaky ReLU of slope 0.01 into the norm; backbone
  layers have no activation inside the norm (a plain ReLU follows in the
  block code).

:class:`SchpNorm` reproduces that, and can be switched to plain BatchNorm
maths (raw weight) for the 2019 generation of files, which were trained with
``nn.BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Epsilon of every norm layer (inside the square root and, for InPlace-ABN, added to |weight|).
NORM_EPS = 1e-5

#: Negative slope of the leaky ReLU fused into the head norm layers.
LEAKY_SLOPE = 0.01


class SchpNorm(nn.BatchNorm2d):
    """BatchNorm2d-compatible inference norm with SCHP's maths.

    Parameters and buffers are BatchNorm2d's (``weight``, ``bias``,
    ``running_mean``, ``running_var`` and ``num_batches_tracked``), so
    checkpoints load with the usual names. The layer always normalises with
    the running statistics, in ``train()`` mode too: it is for inference only.

    ``leaky``: apply ``leaky_relu(0.01)`` after normalising (head layers).
    ``abs_weight``: scale by ``|weight| + eps`` (InPlace-ABN, the current
    release files); False scales by the raw weight (2019 BatchNorm files).
    """

    def __init__(self, num_features: int, leaky: bool = False) -> None:
        super().__init__(num_features, eps=NORM_EPS)
        self.leaky = leaky
        self.abs_weight = True

    def effective_weight(self) -> torch.Tensor:
        """The per-channel scale actually applied (before dividing by the std)."""
        if self.abs_weight:
            return self.weight.abs() + self.eps
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.batch_norm(x, self.running_mean, self.running_var, self.effective_weight(),
                         self.bias, False, 0.0, self.eps)
        if self.leaky:
            return F.leaky_relu(y, LEAKY_SLOPE, inplace=True)
        return y

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, leaky={self.leaky}, "
                f"abs_weight={self.abs_weight}")


def upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to ``size`` (H, W) with ``align_corners=True``, SCHP's rule
    for every resize, in the network and in post-processing alike."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def conv1x1(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """A 1x1 convolution (bias-free unless asked)."""
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=bias)


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1,
            bias: bool = False) -> nn.Conv2d:
    """A 3x3 convolution whose padding equals its dilation (size-preserving at stride 1)."""
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=dilation,
                     dilation=dilation, bias=bias)


def conv_norm(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    """``Sequential(conv, SchpNorm(leaky))``: the head unit (keys ``.0`` and ``.1``)."""
    conv = conv1x1(cin, cout) if kernel == 1 else conv3x3(cin, cout)
    return nn.Sequential(conv, SchpNorm(cout, leaky=True))
