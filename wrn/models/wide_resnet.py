"""Wide Residual Networks (Zagoruyko & Komodakis 2016), WRN-d-k with the paper's block types.

Depth arithmetic, the one place it is done (`units_per_group`):
  d counts the stem conv, the convs of the units and the classifier, as the paper's tables do,
  with each unit counted as m convs:
    - pure 3x3 units B(3), B(3,3), B(3,3,3), ... (the deepening factor l of Table 3): m = l,
      so WRN-40-2 keeps 36 3x3 convs, and 2.2M parameters, for every l;
    - the mixed units of Table 2 (B(1,3,1), B(3,1), B(1,3), B(3,1,1), B(3,1,3)): m = 2,
      i.e. n = (d - 4) / 6 units per group whatever the unit, which reproduces Table 2's counts.
  Units per group n = (d - 4) / (3 m); for the default B(3,3) that is the familiar d = 6n + 4.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from wrn.models.config import Help, NetConfig
from wrn.models.resnet import CifarResNet

TABLE2_BLOCKS = ((1, 3, 1), (3, 1), (1, 3), (3, 1, 1), (3, 3), (3, 1, 3))
MAX_DEEPENING = 4  # Table 3 goes up to B(3,3,3,3)
DEEPENED_BLOCKS = tuple((3,) * l for l in range(1, MAX_DEEPENING + 1))
BLOCKS = tuple(dict.fromkeys(TABLE2_BLOCKS + DEEPENED_BLOCKS))


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


def convs_counted_per_unit(kernels: tuple[int, ...]) -> int:
    return len(kernels) if set(kernels) == {3} else 2


def units_per_group(depth: int, kernels: tuple[int, ...]) -> int:
    m = convs_counted_per_unit(kernels)
    n, rest = divmod(depth - 4, 3 * m)
    if rest or n < 1:
        examples = ", ".join(str(3 * m * i + 4) for i in (1, 2, 3, 4, 6))
        raise ValueError(f"depth={depth} is invalid for WRN block {block_name(kernels)}; "
                         f"valid: depth = {3 * m}n+4 ({examples}, ...)")
    return n


def wide_resnet_config(depth: int, widen_factor: int,
                       block: Annotated[BlockName, Help(
                           "WRN block type: B(3,3) (default), B(3,1,3), B(1,3,1), B(1,3), B(3,1), "
                           "B(3,1,1) (paper Table 2) or B(3)...B(3,3,3,3) (Table 3)")] = "B(3,3)",
                       **options) -> NetConfig:
    """WRN-d-k: 16-channel stem, groups of width 16k, 32k, 64k at strides 1, 2, 2, n units each.

    Pre-activation units BN-ReLU-conv with dropout between the convs of a unit; a 1x1 projection,
    fed the pre-activated input, only where the shape changes; final BN-ReLU, pool, linear.
    `options`: any other `NetConfig` field (num_classes, dropout, copies, the design switches).
    """
    if not isinstance(widen_factor, int) or widen_factor <= 0:
        raise ValueError(f"widen_factor={widen_factor!r} is invalid; valid: an integer k >= 1")
    kernels = parse_block(block)
    n = units_per_group(depth, kernels)
    widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    return NetConfig(widths, n, kernels, 1, **options)


class WideResNet(CifarResNet):
    """`CifarResNet(wide_resnet_config(depth, widen_factor, **options))`: WRN-d-k."""

    def __init__(self, depth: int, widen_factor: int, **options):
        super().__init__(wide_resnet_config(depth, widen_factor, **options))
