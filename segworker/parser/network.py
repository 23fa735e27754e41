"""The garment parser's network: a compact encoder-decoder for CPU inference.

Residual encoder with five stages (strides 2 to 32), a feature-pyramid decoder
that adds each stage back on the way up, and a 1x1 classifier at stride 2.
Plain 3x3 convolutions with batch norm and ReLU: the layers oneDNN runs
fastest on one CPU core, and that fold into a single convolution each for
inference (:func:`fuse_batch_norms`).

The input is the person crop (:mod:`segworker.parser.crop`): RGB normalised
to about zero mean and unit variance, plus the person-probability channel
from the MediaPipe selfie model (:mod:`segworker.parser.person`), and for
networks of eight input channels the pose heatmaps (:mod:`segworker.parser.pose`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from segworker.parser.classes import ONE_PIECE_ID

#: Any network: :func:`channels_last` returns what it is given.
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class NetShape:
    """Everything that decides the network's tensors (stored with the weights)."""

    in_channels: int = 4                                #: RGB + person (+ 4 pose planes: 8)
    num_classes: int = 8                                #: see :mod:`segworker.parser.classes`
    widths: tuple[int, ...] = (24, 48, 80, 128, 192)    #: channels at strides 2, 4, 8, 16, 32
    blocks: tuple[int, ...] = (0, 1, 2, 2, 2)           #: residual blocks per stage
    decoder_width: int = 48                             #: channels of every decoder level

    def as_dict(self) -> dict:
        return {"in_channels": self.in_channels, "num_classes": self.num_classes,
                "widths": list(self.widths), "blocks": list(self.blocks),
                "decoder_width": self.decoder_width}

    @classmethod
    def from_dict(cls, raw: dict) -> NetShape:
        return cls(in_channels=int(raw["in_channels"]), num_classes=int(raw["num_classes"]),
                   widths=tuple(int(w) for w in raw["widths"]),
                   blocks=tuple(int(b) for b in raw["blocks"]),
                   decoder_width=int(raw["decoder_width"]))


def conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """Convolution (no bias) + batch norm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """Two 3x3 convolutions around an identity shortcut."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(width, width)
        self.conv2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)), inplace=True)


class ParserNet(nn.Module):
    """Logits at half the input's resolution for ``shape.num_classes`` classes.

    ``dropout`` is a training setting, not part of the shape: the chance that a
    whole feature channel is zeroed while training, on the deepest features
    and before the classifier (no parameters, so files load either way)."""

    def __init__(self, shape: NetShape = NetShape(), dropout: float = 0.0) -> None:
        super().__init__()
        self.shape = shape
        # Identity at 0, so that the random stream (and the run) is the one
        # without the option. Stateless, so one module serves both places.
        self.dropout: nn.Module = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        stages: list[nn.Module] = []
        cin = shape.in_channels
        for width, blocks in zip(shape.widths, shape.blocks):
            stages.append(nn.Sequential(conv_bn(cin, width, stride=2),
                                        *[Residual(width) for _ in range(blocks)]))
            cin = width
        self.stages = nn.ModuleList(stages)
        d = shape.decoder_width
        self.laterals = nn.ModuleList(conv_bn(w, d, kernel=1) for w in shape.widths)
        self.smooth = nn.ModuleList(conv_bn(d, d) for _ in shape.widths[:-1])
        self.classifier = nn.Conv2d(d, shape.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        y = self.laterals[-1](self.dropout(skips[-1]))
        for level in range(len(skips) - 2, -1, -1):
            up = F.interpolate(y, size=skips[level].shape[-2:], mode="bilinear",
                               align_corners=False)
            y = self.smooth[level](up + self.laterals[level](skips[level]))
        return self.classifier(self.dropout(y))


def lower_one_piece(model: ParserNet, penalty: float) -> ParserNet:
    """``model`` with its one-piece logit lowered by ``penalty`` everywhere
    (in place, folded into the classifier's bias, so it costs nothing).

    A one-piece pixel is in both masks, so a top over shorts called one-piece
    puts the shorts in the upper mask: the weights file's calibration
    (``one_piece_penalty``, :mod:`segworker.parser.weights`) asks for surer
    evidence of a dress than the training loss alone does."""
    bias = model.classifier.bias
    assert bias is not None  # the classifier is built with one
    with torch.no_grad():
        bias[ONE_PIECE_ID] -= penalty
    return model


def fuse_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every Conv2d + BatchNorm2d pair into one biased Conv2d (inference
    only: the result computes the same function with fewer passes over
    memory). Changes ``model`` in place and returns it (or, for a bare
    Sequential, its folded copy)."""
    if isinstance(model, nn.Sequential):
        return _fuse_sequence(model)
    for name, child in list(model.named_children()):
        setattr(model, name, fuse_batch_norms(child))
    return model


def _fuse_sequence(seq: nn.Sequential) -> nn.Sequential:
    layers = list(seq)
    fused: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and isinstance(after, nn.BatchNorm2d):
            fused.append(_fold(layer, after))
            i += 2
        else:
            fused.append(fuse_batch_norms(layers[i]))
            i += 1
    return nn.Sequential(*fused)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = copy.deepcopy(conv)  # same geometry (stride, padding, groups, dilation)
    with torch.no_grad():
        out.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        out.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return out


def channels_last(net: ModuleT) -> ModuleT:
    """``net`` with its weights in channels-last order (faster convolutions on CPU)."""
    # Module.to takes memory_format at run time; torch's overloads omit it.
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
