"""The SCHP parsing network (SPEC §3-§8), written from the specification.

ResNet-101 with a deep stem and a dilated layer4 (output stride 16), a PSP
context module, an edge branch on layer1-3, a decoder on layer1, and a fusion
head. Module names and ``Sequential`` indices follow the official checkpoints
exactly (including the misspelt ``fushion``), so an official state dict, with
its ``module.`` prefix stripped, loads with ``strict=True``.

Only what the parsing output needs is computed: the decoder-only logits
(``decoder.conv4``) and the edge logits (``edge.conv4``/``conv5``) are training
signals that do not feed the fusion head, so their weights are held (for
loading) but never run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segworker.schp.layers import SchpNorm, conv1x1, conv3x3, conv_norm, upsample

#: Bottleneck blocks per ResNet-101 stage.
LAYER_BLOCKS = (3, 4, 23, 3)

#: Channel growth of a bottleneck block (output = 4 x planes).
EXPANSION = 4

#: PSP pyramid pooling sizes, in bins per side.
PSP_SIZES = (1, 2, 3, 6)


class Bottleneck(nn.Module):
    """ResNet bottleneck with the stride on the 3x3 conv (v1.5 placement)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = SchpNorm(planes)
        self.conv2 = conv3x3(planes, planes, stride=stride, dilation=dilation)
        self.bn2 = SchpNorm(planes)
        self.conv3 = conv1x1(planes, planes * EXPANSION)
        self.bn3 = SchpNorm(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual, inplace=True)


def make_layer(inplanes: int, planes: int, blocks: int, stride: int = 1,
               dilation: int = 1) -> nn.Sequential:
    """One ResNet stage; block 0 carries the stride and a 1x1 projection shortcut."""
    downsample = None
    if stride != 1 or inplanes != planes * EXPANSION:
        downsample = nn.Sequential(conv1x1(inplanes, planes * EXPANSION, stride=stride),
                                   SchpNorm(planes * EXPANSION))
    layers = [Bottleneck(inplanes, planes, stride, dilation, downsample)]
    layers += [Bottleneck(planes * EXPANSION, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class PSPModule(nn.Module):
    """Pyramid pooling: pools of 1/2/3/6 bins, each 1x1 conv + norm, upsampled and
    concatenated with the input, then a 3x3 conv + norm."""

    def __init__(self, cin: int = 2048, cout: int = 512) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), conv1x1(cin, cout),
                          SchpNorm(cout, leaky=True))
            for size in PSP_SIZES)
        self.bottleneck = conv_norm(cin + len(PSP_SIZES) * cout, cout, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        priors = [upsample(stage(x), size) for stage in self.stages]
        return self.bottleneck(torch.cat(priors + [x], dim=1))


class EdgeModule(nn.Module):
    """Edge branch. Only its features (layer1-3, 256 channels each, at layer1's
    size) feed the fusion head; ``conv4``/``conv5`` (edge logits) are held for
    loading but not run."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_norm(256, 256)
        self.conv2 = conv_norm(512, 256)
        self.conv3 = conv_norm(1024, 256)
        self.conv4 = nn.Conv2d(256, 2, kernel_size=3, padding=1, bias=True)
        self.conv5 = nn.Conv2d(6, 2, kernel_size=1, bias=True)

    def forward(self, x2: torch.Tensor, x3: torch.Tensor, x4: torch.Tensor) -> torch.Tensor:
        size = x2.shape[2:]
        e1 = self.conv1(x2)
        e2 = upsample(self.conv2(x3), size)
        e3 = upsample(self.conv3(x4), size)
        return torch.cat([e1, e2, e3], dim=1)


class DecoderModule(nn.Module):
    """Decoder: context (1/16) through a 1x1 conv, upsampled to layer1's size,
    joined with 48 reduced layer1 channels, then two 1x1 conv + norm units.
    Returns the 256-channel feature; ``conv4`` (decoder logits) is not run."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = conv_norm(512, 256)
        self.conv2 = conv_norm(256, 48)
        self.conv3 = nn.Sequential(conv1x1(304, 256), SchpNorm(256, leaky=True),
                                   conv1x1(256, 256), SchpNorm(256, leaky=True))
        self.conv4 = conv1x1(256, num_classes, bias=True)

    def forward(self, xt: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        xt = upsample(self.conv1(xt), xl.shape[2:])
        return self.conv3(torch.cat([xt, self.conv2(xl)], dim=1))


class SchpNet(nn.Module):
    """The full SCHP network. ``forward`` takes a normalised BGR batch
    ``[N, 3, H, W]`` and returns the fusion logits ``[N, C, ceil(H/4), ceil(W/4)]``
    (the output the reference extractor uses)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = conv3x3(3, 64, stride=2)
        self.bn1 = SchpNorm(64)
        self.conv2 = conv3x3(64, 64)
        self.bn2 = SchpNorm(64)
        self.conv3 = conv3x3(64, 128)
        self.bn3 = SchpNorm(128)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_layer(128, 64, LAYER_BLOCKS[0])
        self.layer2 = make_layer(256, 128, LAYER_BLOCKS[1], stride=2)
        self.layer3 = make_layer(512, 256, LAYER_BLOCKS[2], stride=2)
        self.layer4 = make_layer(1024, 512, LAYER_BLOCKS[3], stride=1, dilation=2)
        self.context_encoding = PSPModule(2048, 512)
        self.edge = EdgeModule()
        self.decoder = DecoderModule(num_classes)
        self.fushion = nn.Sequential(conv1x1(1024, 256), SchpNorm(256, leaky=True),
                                     nn.Dropout2d(0.1), conv1x1(256, num_classes, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        x = F.relu(self.bn3(self.conv3(x)), inplace=True)
        x2 = self.layer1(self.maxpool(x))
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        x5 = self.layer4(x4)
        context = self.context_encoding(x5)
        parsing_fea = self.decoder(context, x2)
        edge_fea = self.edge(x2, x3, x4)
        return self.fushion(torch.cat([parsing_fea, edge_fea], dim=1))

    def norm_layers(self) -> dict[str, SchpNorm]:
        """Every norm layer by its state-dict name (119 of them)."""
        return {name: m for name, m in self.named_modules() if isinstance(m, SchpNorm)}

    def set_abs_weight(self, enabled: bool) -> None:
        """Choose the norm maths: True = InPlace-ABN |w|+eps (current files),
        False = plain BatchNorm with the raw weight (2019 files)."""
        for norm in self.norm_layers().values():
            norm.abs_weight = enabled
