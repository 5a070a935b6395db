"""Wide Residual Networks (Zagoruyko & Komodakis 2016), WRN-d-k with the paper's block types. Depth d
counts the stem conv, the classifier and m convs per unit, as the paper's tables do: m = l for Table 3's
pure 3x3 blocks B(3), B(3,3), ... (so WRN-40-2 keeps 36 3x3 convs and 2.2M parameters for every l), m = 2
for Table 2's mixed blocks; n = (d - 4) / (3m) units per group, 6n + 4 for B(3,3)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from wrn.models.config import Help, NetConfig
from wrn.models.resnet import CifarResNet, units_per_stage

# Table 2's blocks, then Table 3's deepened B(3) ... B(3,3,3,3) (B(3,3) is in both)
BLOCKS = ((1, 3, 1), (3, 1), (1, 3), (3, 1, 1), (3, 3), (3, 1, 3), (3,), (3, 3, 3), (3, 3, 3, 3))


def block_name(kernels: tuple[int, ...]) -> str:
    return "B(" + ",".join(map(str, kernels)) + ")"


BlockName = Literal[tuple(block_name(kernels) for kernels in BLOCKS)]  # "B(3,3)", "B(3,1,3)", ...


def parse_block(block: str | tuple[int, ...]) -> tuple[int, ...]:
    """'B(3,1,3)' -> (3, 1, 3); only the paper's block types are accepted."""
    if isinstance(block, str):
        match = re.fullmatch(r"\s*B\(\s*([13](?:\s*,\s*[13])*)\s*\)\s*", block)
        kernels = tuple(int(k) for k in match.group(1).split(",")) if match else None
    else:
        kernels = tuple(block)
    if kernels not in BLOCKS:
        raise ValueError(f"block={block!r} is invalid; valid: "
                         + ", ".join(block_name(b) for b in BLOCKS))
    return kernels


def wide_resnet_config(depth: int, widen_factor: int,
                       block: Annotated[BlockName, Help(
                           "WRN block type: B(3,3) (default), B(3,1,3), B(1,3,1), B(1,3), B(3,1), "
                           "B(3,1,1) (paper Table 2) or B(3)...B(3,3,3,3) (Table 3)")] = "B(3,3)",
                       **options) -> NetConfig:
    """WRN-d-k: groups of width 16k, 32k, 64k, pre-activation units, 1x1 projections only where the
    shape changes. `options`: any other `NetConfig` field."""
    if not isinstance(widen_factor, int) or widen_factor <= 0:
        raise ValueError(f"widen_factor={widen_factor!r} is invalid; valid: an integer k >= 1")
    kernels = parse_block(block)
    m = len(kernels) if set(kernels) == {3} else 2  # convs counted per unit
    examples = ", ".join(str(3 * m * i + 4) for i in (1, 2, 3, 4, 6))
    n = units_per_stage(depth, m, f"WRN block {block_name(kernels)}",
                        f"depth = {3 * m}n+4 ({examples}, ...)", other_layers=4)
    return NetConfig(tuple(w * widen_factor for w in (16, 32, 64)), n, kernels, 1, **options)


class WideResNet(CifarResNet):
    def __init__(self, depth: int, widen_factor: int, **options):
        super().__init__(wide_resnet_config(depth, widen_factor, **options))
