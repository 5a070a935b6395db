"""Residual units for CIFAR networks, with the design switches people argue about.

One `ResidualUnit` covers every unit of the WRN and ResNet papers:
  kernels       the conv kernel sizes in order: (3, 3) basic, (1, 3, 1) bottleneck, (3, 1, 3) ...
  order         "pre"  = BN-act-conv (He et al. 2016, WRN)      "post" = conv-BN-act (He et al. 2015)
  shortcut      "A" zero-padded identity, "B" projection where shape changes,
                "C" projection everywhere, "none" no shortcut at all (plain nets)
  activation    "relu" | "prelu"
  bn_placement  post-activation only: "before_add" (conv-BN, add, act) or "after_add" (conv, add, BN, act)
  dropout       between consecutive convs of the unit (WRN paper, Sec. 2.4)
  copies        S independent networks in one: every conv is grouped (groups=S), every channel count
                is multiplied by S; BN is per channel so each copy keeps its own statistics.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Order = Literal["pre", "post"]
Shortcut = Literal["A", "B", "C", "none"]
Activation = Literal["relu", "prelu"]
BNPlacement = Literal["before_add", "after_add"]

ORDERS = ("pre", "post")
SHORTCUTS = ("A", "B", "C", "none")
ACTIVATIONS = ("relu", "prelu")
BN_PLACEMENTS = ("before_add", "after_add")


def check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid; valid: {', '.join(map(str, choices))}")


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, copies: int = 1) -> nn.Conv2d:
    """Bias-free conv (a BN always follows or precedes it); `copies` groups keep networks apart."""
    return nn.Conv2d(in_ch * copies, out_ch * copies, kernel, stride=stride,
                     padding=kernel // 2, groups=copies, bias=False)


def activation(kind: Activation, channels: int) -> nn.Module:
    # PReLU gets one slope per channel (He et al. 2015, "channel-wise" variant).
    return nn.PReLU(channels) if kind == "prelu" else nn.ReLU(inplace=True)


def conv_macs(in_ch: int, out_ch: int, kernel: int, out_hw: tuple[int, int]) -> int:
    """Multiply-adds of one bias-free conv for one image (the analytic cross-check of fvcore)."""
    return kernel * kernel * in_ch * out_ch * out_hw[0] * out_hw[1]


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
    """One residual unit; see the module docstring for the switches.

    Channel widths: the first conv maps in_ch -> inner, the last inner -> out_ch, middle convs
    inner -> inner, with inner = out_ch // expansion (expansion 4 for He's bottleneck, 1 for WRN
    blocks, whose every conv is wide). The stride sits on the first 3x3 conv (or the first conv
    when there is none), so 1x1 convs never discard pixels.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernels: tuple[int, ...] = (3, 3),
                 expansion: int = 1, order: Order = "pre", shortcut: Shortcut = "B",
                 activation_kind: Activation = "relu", bn_placement: BNPlacement = "before_add",
                 dropout: float = 0.0, copies: int = 1):
        super().__init__()
        self.in_ch, self.out_ch, self.stride, self.kernels = in_ch, out_ch, stride, tuple(kernels)
        self.order, self.bn_placement, self.copies = order, bn_placement, copies
        inner = out_ch // expansion
        widths = [in_ch] + [inner] * (len(kernels) - 1) + [out_ch]
        self.widths = widths
        self.stride_index = kernels.index(3) if 3 in kernels else 0
        strides = [stride if i == self.stride_index else 1 for i in range(len(kernels))]
        self.convs = nn.ModuleList(
            conv(widths[i], widths[i + 1], k, strides[i], copies) for i, k in enumerate(kernels))
        # pre: BN/act before every conv (on its input); post: after every conv (on its output).
        bn_widths = widths[:-1] if order == "pre" else widths[1:]
        self.bns = nn.ModuleList(nn.BatchNorm2d(w * copies) for w in bn_widths)
        self.acts = nn.ModuleList(activation(activation_kind, w * copies) for w in bn_widths)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut_kind = shortcut
        self.shortcut = self._make_shortcut(shortcut)

    def _make_shortcut(self, kind: Shortcut) -> nn.Module | None:
        reshapes = self.stride != 1 or self.in_ch != self.out_ch
        if kind == "none":
            return None
        if kind == "A" and reshapes:
            return PadIdentity(self.in_ch, self.out_ch, self.stride, self.copies)
        if kind == "C" or (kind in ("B", "A") and reshapes):
            proj = conv(self.in_ch, self.out_ch, 1, self.stride, self.copies)
            # Post-activation projections get their own BN (He 2015); pre-activation ones are fed
            # the already normalised input (WRN), so a bare conv suffices.
            if self.order == "post":
                return nn.Sequential(proj, nn.BatchNorm2d(self.out_ch * self.copies))
            return proj
        return nn.Identity()

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

    def macs(self, in_hw: tuple[int, int]) -> tuple[int, tuple[int, int]]:
        """Analytic conv multiply-adds of this unit for one image (one copy), and the output size."""
        hw, total = in_hw, 0
        for i, k in enumerate(self.kernels):
            if i == self.stride_index:
                hw = (-(-hw[0] // self.stride), -(-hw[1] // self.stride))
            total += conv_macs(self.widths[i], self.widths[i + 1], k, hw)
        if self.projects:
            total += conv_macs(self.in_ch, self.out_ch, 1, hw)
        return total, hw
