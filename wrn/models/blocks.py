"""One `ResidualUnit` for every unit of the WRN and ResNet papers. With copies=S every conv is grouped
and every channel count multiplied by S; BN is per channel, so each copy keeps its own statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wrn.models.config import Activation, NetConfig, Order, Shortcut, StrideOn


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, copies: int = 1) -> nn.Conv2d:
    """Bias-free conv (a BN always follows or precedes it); `copies` groups keep networks apart."""
    return nn.Conv2d(in_ch * copies, out_ch * copies, kernel, stride=stride,
                     padding=kernel // 2, groups=copies, bias=False)


def make_activation(kind: Activation, channels: int) -> nn.Module:
    """ReLU, or PReLU with one slope per channel (He et al. 2015's channel-wise variant)."""
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
