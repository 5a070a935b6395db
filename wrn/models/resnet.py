"""Three-stage CIFAR residual networks: the shared body, ResNet v1 (He et al. 2015, incl. plain nets)
and pre-activation ResNet (He et al. 2016, basic and bottleneck units)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wrn.models.blocks import (ACTIVATIONS, BN_PLACEMENTS, ORDERS, SHORTCUTS, Activation,
                               BNPlacement, Order, ResidualUnit, Shortcut, activation,
                               check_choice, conv, conv_macs)

STEM_WIDTH = 16  # channels of the first 3x3 conv in every CIFAR network of both papers
STAGE_STRIDES = (1, 2, 2)  # 32x32 -> 32, 16, 8


def check_common(order: str, shortcut: str, activation_kind: str, bn_placement: str,
                 dropout: float, copies: int) -> None:
    check_choice("order", order, ORDERS)
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_choice("activation", activation_kind, ACTIVATIONS)
    check_choice("bn_placement", bn_placement, BN_PLACEMENTS)
    if order == "pre" and bn_placement != "before_add":
        raise ValueError(f"bn_placement={bn_placement!r} needs order='post': a pre-activation "
                         "unit normalises the next unit's input, not the sum")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} is invalid; valid: 0 <= dropout < 1")
    if copies < 1:
        raise ValueError(f"copies={copies!r} is invalid; valid: an integer >= 1")


class CifarResNet(nn.Module):
    """Stem conv, three stages of residual units at strides 1, 2, 2, global pool, linear.

    Post-activation nets put BN-act after the stem; pre-activation nets put a final BN-act
    before the pool (their units leave the sum un-normalised). With copies=S > 1 the input is
    S images stacked along channels (N, 3S, H, W) and the output is (N, S, num_classes).
    """

    def __init__(self, stage_widths: tuple[int, int, int], units_per_stage: int,
                 kernels: tuple[int, ...] = (3, 3), expansion: int = 1, num_classes: int = 10,
                 order: Order = "pre", shortcut: Shortcut = "B", activation_kind: Activation = "relu",
                 bn_placement: BNPlacement = "before_add", dropout: float = 0.0, copies: int = 1):
        super().__init__()
        check_common(order, shortcut, activation_kind, bn_placement, dropout, copies)
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} is invalid; valid: an integer >= 1")
        self.order, self.copies, self.num_classes = order, copies, num_classes
        self.stem = conv(3, STEM_WIDTH, 3, copies=copies)
        self.stem_bn = nn.BatchNorm2d(STEM_WIDTH * copies) if order == "post" else None
        self.stem_act = activation(activation_kind, STEM_WIDTH * copies) if order == "post" else None
        units, in_ch = [], STEM_WIDTH
        for width, stride in zip(stage_widths, STAGE_STRIDES):
            for i in range(units_per_stage):
                units.append(ResidualUnit(
                    in_ch, width, stride if i == 0 else 1, kernels, expansion, order, shortcut,
                    activation_kind, bn_placement, dropout, copies))
                in_ch = width
        self.units = nn.Sequential(*units)
        self.final_bn = nn.BatchNorm2d(in_ch * copies) if order == "pre" else None
        self.final_act = activation(activation_kind, in_ch * copies) if order == "pre" else None
        self.features = in_ch
        self.fc = (nn.Linear(in_ch, num_classes) if copies == 1
                   else nn.Conv2d(in_ch * copies, num_classes * copies, 1, groups=copies))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015: variance 2 / fan_in for ReLU nets.
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.stem_bn is not None:
            x = self.stem_act(self.stem_bn(x))
        x = self.units(x)
        if self.final_bn is not None:
            x = self.final_act(self.final_bn(x))
        x = F.adaptive_avg_pool2d(x, 1)
        if self.copies == 1:
            return self.fc(torch.flatten(x, 1))
        return self.fc(x).reshape(x.shape[0], self.copies, self.num_classes)

    def analytic_macs(self, image_size: int = 32) -> int:
        """Conv + linear multiply-adds for one image of one copy, from the architecture alone.

        fvcore counts the same convs and linear plus BN and pooling terms, so it reads a little
        higher; torch.utils.flop_counter counts convs and linear only and should match exactly.
        """
        hw = (image_size, image_size)
        total = conv_macs(3, STEM_WIDTH, 3, hw)
        for unit in self.units:
            macs, hw = unit.macs(hw)
            total += macs
        return total + self.features * self.num_classes


def _stage_count(depth: int, layers_per_unit: int, name: str, forms: str) -> int:
    n, rest = divmod(depth - 2, layers_per_unit * 3)
    if rest or n < 1:
        raise ValueError(f"depth={depth} is invalid for {name}; valid: {forms}")
    return n


class ResNetV1(CifarResNet):
    """He et al. 2015 CIFAR ResNet: post-activation basic units, widths 16/32/64, d = 6n+2.

    shortcut="A" (zero-padded identity, the paper's CIFAR choice) adds no parameters;
    shortcut="none" gives the plain net of the degradation experiment.
    """

    def __init__(self, depth: int, num_classes: int = 10, shortcut: Shortcut = "A",
                 order: Order = "post", activation: Activation = "relu",
                 bn_placement: BNPlacement = "before_add", dropout: float = 0.0, copies: int = 1):
        n = _stage_count(depth, 2, "ResNet v1", "depth = 6n+2 (20, 32, 44, 56, 110, 1202)")
        super().__init__((16, 32, 64), n, (3, 3), 1, num_classes, order, shortcut, activation,
                         bn_placement, dropout, copies)


class PreActResNet(CifarResNet):
    """He et al. 2016 pre-activation ResNet.

    unit="bottleneck": 1x1-3x3-1x1 units, inner widths 16/32/64, outputs 4x that, d = 9n+2
    (preact-resnet-164: n=18, 1001: n=111). unit="basic": two 3x3 convs, d = 6n+2.
    unit=None picks what the paper used at that depth: bottleneck from 164 layers up, basic below.
    """

    def __init__(self, depth: int, num_classes: int = 10, unit: str | None = None,
                 shortcut: Shortcut = "B", order: Order = "pre", activation: Activation = "relu",
                 bn_placement: BNPlacement = "before_add", dropout: float = 0.0, copies: int = 1):
        unit = unit or ("bottleneck" if depth >= 164 else "basic")
        check_choice("unit", unit, ("basic", "bottleneck"))
        if unit == "bottleneck":
            n = _stage_count(depth, 3, "pre-act bottleneck ResNet", "depth = 9n+2 (164, 1001)")
            widths, kernels, expansion = (64, 128, 256), (1, 3, 1), 4
        else:
            n = _stage_count(depth, 2, "pre-act basic ResNet", "depth = 6n+2 (20, 56, 110)")
            widths, kernels, expansion = (16, 32, 64), (3, 3), 1
        super().__init__(widths, n, kernels, expansion, num_classes, order, shortcut, activation,
                         bn_placement, dropout, copies)
