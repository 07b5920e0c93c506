"""The CIFAR-10 networks of the GhostNet paper's Sec. 4.1: VGG-16 and ResNet-56.

Both are plain definitions (random initialisation, no weights), sized so that their parameter
and multiply-add counts match the paper's CIFAR-10 baselines at 32x32 input:

* :func:`vgg16_cifar`: 13 3x3 conv layers (each followed by BatchNorm and ReLU) with the
  64-64-M-128-128-M-256x3-M-512x3-M-512x3 layout, a global average pool (2x2 -> 1x1 at 32x32
  input), and the classifier ``Linear(512, 512) - BatchNorm1d - ReLU - Linear(512, 10)``.
  This is the CIFAR VGG-16 of the filter-pruning papers the GhostNet paper compares against
  (l1-norm pruning, ThiNet, CP, SBP): 15.0M parameters and 313M MACs, the paper's "15M / 313M".
* :func:`resnet56_cifar`: He et al.'s CIFAR ResNet, a 3x3 16-channel stem, three stages of nine
  basic blocks with 16/32/64 channels (strides 1/2/2), global average pooling and
  ``Linear(64, 10)``: 0.85M parameters and 125.5M MACs, the paper's "0.85M / 125M". The
  shortcut that changes shape is option A by default (strided subsampling plus zero padding of
  the new channels, parameter-free, as in He et al.'s CIFAR experiments); option B (1x1 conv +
  BN projection) adds 2.5k parameters and 0.26M MACs, which the paper's rounded numbers cannot
  tell apart, so both are offered.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ghostdet.errors import ArgumentError
from ghostdet.models.arguments import check_builder_args
from ghostdet.models.registry import register_model

__all__ = ["VGG16_CIFAR_CFG", "BasicBlock", "CifarResNet", "CifarVGG", "resnet56_cifar", "vgg16_cifar"]

# Output channels of each 3x3 conv; "M" is a 2x2 max pool. The last pool is an average pool
# (``CifarVGG.pool``) that takes the 2x2 map to 1x1 at 32x32 input.
VGG16_CIFAR_CFG: list[int | str] = [
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, "M"),
    *(512, 512, 512, "M"),
    *(512, 512, 512),
]


class CifarVGG(nn.Module):
    """VGG with BatchNorm for 32x32 inputs.

    Args:
        cfg: conv widths and ``"M"`` (max pool) markers, see :data:`VGG16_CIFAR_CFG`.
        num_classes: classifier outputs.
        hidden: width of the hidden fully connected layer (0: a single ``Linear`` classifier).
    """

    def __init__(
        self, cfg: list[int | str] = VGG16_CIFAR_CFG, num_classes: int = 10, hidden: int = 512
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_chs = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out_chs = int(v)
                layers += [
                    nn.Conv2d(in_chs, out_chs, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(out_chs),
                    nn.ReLU(True),
                ]
                in_chs = out_chs
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden:
            self.classifier = nn.Sequential(
                nn.Linear(in_chs, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(True),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.classifier = nn.Sequential(nn.Linear(in_chs, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (He et al. 2016).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the first conv (1 or 2).
        shortcut: ``"A"`` (subsample + zero-pad channels, no parameters) or ``"B"`` (1x1 conv +
            BN projection) when the shape changes; identity otherwise.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.stride = stride
        self.pad = 0
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            if shortcut == "A":
                if out_chs < in_chs:
                    raise ValueError("option A shortcuts cannot reduce the channel count")
                self.pad = out_chs - in_chs
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs)
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        elif self.stride != 1 or self.pad:
            identity = x[:, :, :: self.stride, :: self.stride]
            # Zero channels split evenly before and after, like the reference implementations.
            identity = F.pad(identity, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            identity = x
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs.

    Args:
        depth: total depth, ``6n + 2`` (56 -> nine blocks per stage).
        num_classes: classifier outputs.
        widths: channels of the three stages.
        shortcut: ``"A"`` or ``"B"``, see :class:`BasicBlock`.
    """

    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ArgumentError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}", argument="depth")
        if shortcut not in ("A", "B"):
            raise ArgumentError(f"shortcut must be 'A' or 'B', got {shortcut!r}", argument="shortcut")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_chs = widths[0]
        stages = []
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_chs, w, stride, shortcut))
                in_chs = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_chs, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


@register_model("vgg16_cifar", kind="classifier")
def vgg16_cifar(num_classes: int = 10) -> CifarVGG:
    """CIFAR VGG-16 of the paper's Sec. 4.1 (15.0M params, 313M MACs at 32x32).

    Args:
        num_classes: classifier outputs.
    """
    check_builder_args("vgg16_cifar", num_classes=num_classes)
    return CifarVGG(VGG16_CIFAR_CFG, num_classes=num_classes, hidden=512)


@register_model("resnet56_cifar", kind="classifier")
def resnet56_cifar(num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """CIFAR ResNet-56 of the paper's Sec. 4.1 (0.85M params, 125.5M MACs at 32x32).

    Args:
        num_classes: classifier outputs.
        shortcut: ``"A"`` (default, parameter-free) or ``"B"`` (1x1 conv projections).
    """
    check_builder_args("resnet56_cifar", num_classes=num_classes)
    return CifarResNet(56, num_classes=num_classes, shortcut=shortcut)
