"""Residual units for CIFAR networks, with the design switches people argue about.

One `ResidualUnit` covers every unit of the WRN and ResNet papers:
  kernels       the conv kernel sizes in order: (3, 3) basic, (1, 3, 1) bottleneck, (3, 1, 3) ...
  order         "pre"  = BN-act-conv (He et al. 2016, WRN)      "post" = conv-BN-act (He et al. 2015)
  shortcut      "A" zero-padded identity, "B" projection where shape changes,
                "C" projection everywhere, "none" no shortcut at all (plain nets)
  activation    "relu" | "prelu"
  bn_placement  post-activation only: "before_add" (conv-BN, add, act) or "after_add" (conv, add, BN, act)
  stride_on     "3x3": a down-sampling unit strides on its first 3x3 conv, so 1x1 convs never
                discard pixels; "first": on its first conv, as He et al.'s released pre-activation
                code does (resnet-pre-act.lua), so a bottleneck's first 1x1 runs on a quarter of the
                pixels
  dropout       between consecutive convs of the unit (WRN paper, Sec. 2.4)
  copies        S independent networks in one: every conv is grouped (groups=S), every channel count
                is multiplied by S; BN is per channel so each copy keeps its own statistics.
The switches' choices are declared once, in `config.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wrn.models.config import Activation, BNPlacement, Order, Shortcut, StrideOn


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, copies: int = 1) -> nn.Conv2d:
    """Bias-free conv (a BN always follows or precedes it); `copies` groups keep networks apart."""
    return nn.Conv2d(in_ch * copies, out_ch * copies, kernel, stride=stride,
                     padding=kernel // 2, groups=copies, bias=False)


def make_activation(kind: Activation, channels: int) -> nn.Module:
    # PReLU gets one slope per channel (He et al. 2015, "channel-wise" variant).
    return nn.PReLU(channels) if kind == "prelu" else nn.ReLU(inplace=True)


def conv_macs(in_ch: int, out_ch: int, kernel: int, out_hw: tuple[int, int]) -> int:
    """Multiply-adds of one bias-free conv for one image (the analytic cross-check of fvcore)."""
    return kernel * kernel * in_ch * out_ch * out_hw[0] * out_hw[1]


def strided(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return (-(-hw[0] // stride), -(-hw[1] // stride))


def conv_plan(in_ch: int, out_ch: int, stride: int, kernels: tuple[int, ...], expansion: int,
              stride_on: StrideOn) -> list[tuple[int, int, int, int]]:
    """(in, out, kernel, stride) of each conv of a unit, in order.

    The first conv maps in_ch -> inner, the last inner -> out_ch, middle convs inner -> inner,
    with inner = out_ch // expansion (4 for He's bottleneck, 1 for WRN blocks, whose every conv is
    wide). The stride sits on the first conv (stride_on="first") or on the first 3x3 conv
    ("3x3"; the first conv when there is none).
    """
    inner = out_ch // expansion
    widths = [in_ch] + [inner] * (len(kernels) - 1) + [out_ch]
    at = kernels.index(3) if stride_on == "3x3" and 3 in kernels else 0
    return [(widths[i], widths[i + 1], k, stride if i == at else 1) for i, k in enumerate(kernels)]


def shortcut_kind(kind: Shortcut, in_ch: int, out_ch: int, stride: int) -> str | None:
    """What the shortcut option makes of this unit: "pad", "projection", "identity" or None."""
    reshapes = stride != 1 or in_ch != out_ch
    if kind == "none":
        return None
    if kind == "C" or (kind == "B" and reshapes):
        return "projection"
    return "pad" if reshapes else "identity"


@dataclass(frozen=True)
class Cost:
    """Analytic cost of a unit or network: parameters (one copy), conv + linear multiply-adds for
    one image, and the largest activation (elements, one copy, one image)."""

    params: int
    macs: int
    activation: int


def unit_cost(in_ch: int, out_ch: int, stride: int, in_hw: tuple[int, int], *,
              kernels: tuple[int, ...], expansion: int, order: Order, shortcut: Shortcut,
              activation: Activation, stride_on: StrideOn, **_) -> tuple[Cost, tuple[int, int]]:
    """What `ResidualUnit` with these arguments holds and computes, without building it."""
    plan = conv_plan(in_ch, out_ch, stride, kernels, expansion, stride_on)
    hw, params, macs, largest = in_hw, 0, 0, 0
    for i, o, k, s in plan:
        hw = strided(hw, s)
        params += k * k * i * o
        macs += conv_macs(i, o, k, hw)
        largest = max(largest, o * hw[0] * hw[1])
    normalised = [i for i, *_ in plan] if order == "pre" else [o for _, o, *_ in plan]
    per_channel = 3 if activation == "prelu" else 2  # BN weight and bias (+ PReLU slope)
    params += per_channel * sum(normalised)
    if shortcut_kind(shortcut, in_ch, out_ch, stride) == "projection":
        params += in_ch * out_ch + (2 * out_ch if order == "post" else 0)
        macs += conv_macs(in_ch, out_ch, 1, hw)
    return Cost(params, macs, largest), hw


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
    """One residual unit; see the module docstring for the switches and `conv_plan` for the
    widths and where the stride sits. Every switch is a keyword argument (see `NetConfig`)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, kernels: tuple[int, ...],
                 expansion: int, order: Order, shortcut: Shortcut, activation: Activation,
                 bn_placement: BNPlacement, stride_on: StrideOn, dropout: float, copies: int):
        super().__init__()
        self.in_ch, self.out_ch, self.stride, self.kernels = in_ch, out_ch, stride, tuple(kernels)
        self.order, self.bn_placement, self.copies = order, bn_placement, copies
        plan = conv_plan(in_ch, out_ch, stride, self.kernels, expansion, stride_on)
        self.convs = nn.ModuleList(conv(i, o, k, s, copies) for i, o, k, s in plan)
        # pre: BN/act before every conv (on its input); post: after every conv (on its output).
        bn_widths = [i for i, *_ in plan] if order == "pre" else [o for _, o, *_ in plan]
        self.bns = nn.ModuleList(nn.BatchNorm2d(w * copies) for w in bn_widths)
        self.acts = nn.ModuleList(make_activation(activation, w * copies) for w in bn_widths)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = self._make_shortcut(shortcut_kind(shortcut, in_ch, out_ch, stride))

    def _make_shortcut(self, kind: str | None) -> nn.Module | None:
        if kind == "pad":
            return PadIdentity(self.in_ch, self.out_ch, self.stride, self.copies)
        if kind == "projection":
            proj = conv(self.in_ch, self.out_ch, 1, self.stride, self.copies)
            # Post-activation projections get their own BN (He 2015); pre-activation ones are fed
            # the already normalised input (WRN), so a bare conv suffices.
            if self.order == "post":
                return nn.Sequential(proj, nn.BatchNorm2d(self.out_ch * self.copies))
            return proj
        return nn.Identity() if kind == "identity" else None

    @property
    def projects(self) -> bool:
        return isinstance(self.shortcut, (nn.Conv2d, nn.Sequential))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_pre(x) if self.order == "pre" else self._forward_post(x)

    def _forward_pre(self, x: torch.Tensor) -> torch.Tensor:
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
        out = x
        last = len(self.convs) - 1
        for i, conv_i in enumerate(self.convs):
            if i > 0:
                out = self.dropout(out)
            out = conv_i(out)
            if i < last:
                out = self.acts[i](self.bns[i](out))
        if self.bn_placement == "before_add":
            out = self.bns[last](out)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        if self.bn_placement == "after_add":
            out = self.bns[last](out)
        return self.acts[last](out)
