"""`CifarResNet`, the network every `NetConfig` builds from one `ResidualUnit` for every unit of
the WRN and ResNet papers, its analytic cost, and the configs of ResNet v1 (He et al. 2015, and
plain nets) and pre-activation ResNet (He et al. 2016). With copies=S every conv is grouped and
every channel count multiplied by S; BN is per channel, so each copy keeps its own statistics."""

from __future__ import annotations

from typing import Annotated, Iterator, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wrn.models.config import (Activation, Help, NetConfig, Order, Shortcut, StrideOn, Unit,
                               check_choice, choices)

STEM_WIDTH = 16  # channels of the first 3x3 conv in every CIFAR network of both papers


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, copies: int = 1) -> nn.Conv2d:
    """Bias-free conv (a BN always follows or precedes it); `copies` groups keep networks apart."""
    return nn.Conv2d(in_ch * copies, out_ch * copies, kernel, stride=stride,
                     padding=kernel // 2, groups=copies, bias=False)


def make_activation(kind: Activation, channels: int) -> nn.Module:
    return nn.PReLU(channels) if kind == "prelu" else nn.ReLU(inplace=True)


def conv_plan(in_ch: int, out_ch: int, stride: int, kernels: tuple[int, ...], expansion: int,
              stride_on: StrideOn) -> list[tuple[int, int, int, int]]:
    """(in, out, kernel, stride) of each conv of a unit, in_ch -> out_ch // expansion -> ... -> out_ch,
    striding on the first 3x3 conv (stride_on="3x3": 1x1 convs never discard pixels) or the first conv."""
    inner = out_ch // expansion
    widths = [in_ch] + [inner] * (len(kernels) - 1) + [out_ch]
    at = kernels.index(3) if stride_on == "3x3" and 3 in kernels else 0
    return [(widths[i], widths[i + 1], k, stride if i == at else 1) for i, k in enumerate(kernels)]


def shortcut_kind(kind: Shortcut, in_ch: int, out_ch: int, stride: int) -> str | None:
    reshapes = stride != 1 or in_ch != out_ch
    if kind == "none":
        return None
    if kind == "C" or (kind == "B" and reshapes):
        return "projection"
    return "pad" if reshapes else "identity"


def norm_widths(plan: list[tuple[int, int, int, int]], order: Order) -> list[int]:
    """Channels of each BN-act of a unit: before every conv (pre), or after it (post)."""
    return [i for i, *_ in plan] if order == "pre" else [o for _, o, *_ in plan]


class PadIdentity(nn.Module):
    """Shortcut option A: subsample spatially, zero-pad the new channels; no parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, copies: int = 1):
        super().__init__()
        self.in_ch, self.out_ch, self.stride, self.copies = in_ch, out_ch, stride, copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.out_ch == self.in_ch:
            return x
        n, _, h, w = x.shape
        x = x.reshape(n, self.copies, self.in_ch, h, w)  # pad each copy's channels, not the stack's
        x = F.pad(x, (0, 0, 0, 0, 0, self.out_ch - self.in_ch))
        return x.reshape(n, self.copies * self.out_ch, h, w)


class ResidualUnit(nn.Module):
    """`conv_plan`'s convs with BN-act around them, and a shortcut, as `config`'s switches say."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, config: NetConfig):
        super().__init__()
        order, copies = config.order, config.copies
        self.order, self.bn_placement = order, config.bn_placement
        plan = conv_plan(in_ch, out_ch, stride, config.kernels, config.expansion, config.stride_on)
        self.convs = nn.ModuleList(conv(i, o, k, s, copies) for i, o, k, s in plan)
        bn_widths = norm_widths(plan, order)
        self.bns = nn.ModuleList(nn.BatchNorm2d(w * copies) for w in bn_widths)
        self.acts = nn.ModuleList(make_activation(config.activation, w * copies) for w in bn_widths)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        kind = shortcut_kind(config.shortcut, in_ch, out_ch, stride)
        self.projects = kind == "projection"
        self.shortcut = PadIdentity(in_ch, out_ch, stride, copies) if kind == "pad" else None
        if kind == "identity":
            self.shortcut = nn.Identity()
        elif self.projects:
            # Post-activation projections get their own BN (He 2015); WRN's pre-activation ones need none.
            proj = conv(in_ch, out_ch, 1, stride, copies)
            self.shortcut = nn.Sequential(proj, nn.BatchNorm2d(out_ch * copies)) if order == "post" else proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "post":
            return self._forward_post(x)
        out = self.acts[0](self.bns[0](x))
        # WRN feeds the projection the pre-activated input; an identity keeps the raw input.
        residual_input = out if self.projects else x
        out = self.convs[0](out)
        for i in range(1, len(self.convs)):
            out = self.convs[i](self.dropout(self.acts[i](self.bns[i](out))))
        if self.shortcut is not None:
            out = out + self.shortcut(residual_input)
        return out

    def _forward_post(self, x: torch.Tensor) -> torch.Tensor:
        out, last = x, len(self.convs) - 1
        for i, conv_i in enumerate(self.convs):
            out = conv_i(self.dropout(out) if i > 0 else out)
            if i < last:
                out = self.acts[i](self.bns[i](out))
        if self.bn_placement == "before_add":
            out = self.bns[last](out)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        if self.bn_placement == "after_add":
            out = self.bns[last](out)
        return self.acts[last](out)


def unit_plan(config: NetConfig) -> Iterator[tuple[int, int, int]]:
    """(in_ch, out_ch, stride) of every unit, stage by stage."""
    in_ch = STEM_WIDTH
    for width, stride in zip(config.stage_widths, (1, 2, 2)):
        for i in range(config.units_per_stage):
            yield in_ch, width, stride if i == 0 else 1
            in_ch = width


class CifarResNet(nn.Module):
    """Stem conv, three stages of residual units, global pool, linear; BN-act after the stem
    (post-activation) or before the pool (pre-activation units leave the sum un-normalised).
    With copies=S > 1 the input is (N, 3S, H, W), S stacked images, and the output (N, S, classes)."""

    def __init__(self, config: NetConfig):
        super().__init__()
        if not isinstance(config, NetConfig):
            raise TypeError(f"CifarResNet takes a NetConfig, not {type(config).__name__}")
        self.config = config
        order, copies, act = config.order, config.copies, config.activation
        self.order, self.copies, self.num_classes = order, copies, config.num_classes
        self.stem = conv(3, STEM_WIDTH, 3, copies=copies)
        self.stem_bn = nn.BatchNorm2d(STEM_WIDTH * copies) if order == "post" else None
        self.stem_act = make_activation(act, STEM_WIDTH * copies) if order == "post" else None
        self.units = nn.Sequential(*(ResidualUnit(i, o, s, config) for i, o, s in unit_plan(config)))
        width = config.stage_widths[-1]
        self.final_bn = nn.BatchNorm2d(width * copies) if order == "pre" else None
        self.final_act = make_activation(act, width * copies) if order == "pre" else None
        self.fc = (nn.Linear(width, config.num_classes) if copies == 1
                   else nn.Conv2d(width * copies, config.num_classes * copies, 1, groups=copies))
        self.register_buffer("input_mean", None)  # None, and out of the state_dict, until normalize_inputs
        self.register_buffer("input_std", None)
        for m in self.modules():  # BN starts as the identity, PyTorch's default
            if isinstance(m, nn.Conv2d):  # He et al. 2015: variance 2 / fan_in for ReLU nets
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def normalize_inputs(self, mean: Sequence[float], std: Sequence[float]) -> CifarResNet:
        """Take images in [0, 1] and normalise them with the training split's per-channel `mean` and
        `std` first (buffers then saved with the weights); without it, inputs come normalised."""
        self.input_mean, self.input_std = (
            torch.as_tensor(v, dtype=torch.float32, device=self.stem.weight.device).view(3, 1, 1)
            .repeat(self.copies, 1, 1) for v in (mean, std))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_mean is not None:
            x = (x - self.input_mean) / self.input_std
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
        """Conv + linear multiply-adds for one image of one copy."""
        return analytic_cost(self.config, image_size).macs


class Cost(NamedTuple):
    params: int
    macs: int
    activation: int


def analytic_cost(config: NetConfig, image_size: int = 32) -> Cost:
    """Parameters (all copies), conv + linear multiply-adds and the largest activation for one
    image of one copy, without building anything (torch.utils.flop_counter's count exactly)."""
    side = image_size  # of the square feature maps, after each conv's stride
    per_channel = 3 if config.activation == "prelu" else 2  # BN weight and bias (+ PReLU slope)
    params = 27 * STEM_WIDTH + (per_channel * STEM_WIDTH if config.order == "post" else 0)
    macs, largest = 27 * STEM_WIDTH * side * side, STEM_WIDTH * side * side
    for in_ch, out_ch, stride in unit_plan(config):
        plan = conv_plan(in_ch, out_ch, stride, config.kernels, config.expansion, config.stride_on)
        for i, o, k, s in plan:
            side = -(-side // s)
            params += k * k * i * o
            macs += k * k * i * o * side * side
            largest = max(largest, o * side * side)
        params += per_channel * sum(norm_widths(plan, config.order))
        if shortcut_kind(config.shortcut, in_ch, out_ch, stride) == "projection":
            params += in_ch * out_ch + (2 * out_ch if config.order == "post" else 0)
            macs += in_ch * out_ch * side * side
    width = config.stage_widths[-1]
    params += (per_channel * width if config.order == "pre" else 0) + (width + 1) * config.num_classes
    return Cost(params * config.copies, macs + width * config.num_classes, largest)


def units_per_stage(depth: int, layers_per_unit: int, name: str, forms: str,
                    other_layers: int = 2) -> int:
    """n for depth = 3 * n * layers_per_unit + other_layers; ValueError naming `forms` otherwise."""
    n, rest = divmod(depth - other_layers, layers_per_unit * 3)
    if rest or n < 1:
        raise ValueError(f"depth={depth} is invalid for {name}; valid: {forms}")
    return n


def resnet_v1_config(depth: int, shortcut: Shortcut = "A", order: Order = "post", **options) -> NetConfig:
    """He et al. 2015 CIFAR ResNet: post-activation basic units, widths 16/32/64, d = 6n+2, zero-padded
    identity shortcuts (A); shortcut="none" gives the plain net. `options`: other `NetConfig` fields."""
    n = units_per_stage(depth, 2, "ResNet v1", "depth = 6n+2 (20, 32, 44, 56, 110, 1202)")
    return NetConfig((16, 32, 64), n, (3, 3), 1, shortcut=shortcut, order=order, **options)


def preact_resnet_config(depth: int,
                         unit: Annotated[Optional[Unit], Help(
                             "pre-act ResNet only: basic (two 3x3) or bottleneck (1x1-3x3-1x1) "
                             "units; default: bottleneck from 164 layers up")] = None,
                         stride_on: StrideOn = "first", **options) -> NetConfig:
    """He et al. 2016 pre-activation ResNet: bottleneck units (inner widths 16/32/64, outputs 4x that)
    or basic ones, striding on their first conv as the paper's released code does."""
    unit = unit or ("bottleneck" if depth >= 164 else "basic")
    check_choice("unit", unit, choices(Unit))
    if unit == "bottleneck":
        n = units_per_stage(depth, 3, "pre-act bottleneck ResNet", "depth = 9n+2 (164, 1001)")
        widths, kernels, expansion = (64, 128, 256), (1, 3, 1), 4
    else:
        n = units_per_stage(depth, 2, "pre-act basic ResNet", "depth = 6n+2 (20, 56, 110)")
        widths, kernels, expansion = (16, 32, 64), (3, 3), 1
    return NetConfig(widths, n, kernels, expansion, stride_on=stride_on, **options)


class ResNetV1(CifarResNet):
    def __init__(self, depth: int, **options):
        super().__init__(resnet_v1_config(depth, **options))


class PreActResNet(CifarResNet):
    def __init__(self, depth: int, **options):
        super().__init__(preact_resnet_config(depth, **options))
