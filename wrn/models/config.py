"""`NetConfig`, what every network is built from. A design switch is a field annotated
`Annotated[<Literal of choices>, Help(...)]`: the checks, the units, the registry's overrides and the
LightningModule's `Arch` read it from here, so a new switch is one field, its use in resnet.py and a
test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union, get_args, get_origin, get_type_hints

Order = Literal["pre", "post"]
Shortcut = Literal["A", "B", "C", "none"]
Activation = Literal["relu", "prelu"]
BNPlacement = Literal["before_add", "after_add"]
StrideOn = Literal["first", "3x3"]
Unit = Literal["basic", "bottleneck"]


@dataclass(frozen=True)
class Help:
    """Marks an annotated field or parameter as a design switch, with its one-line help."""

    text: str


def check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid; valid: {', '.join(map(str, choices))}")


def switch_hints(obj) -> dict[str, tuple[object, str]]:
    """name -> (type, help) of the switches of a dataclass or function, in declaration order."""
    found = {}
    for name, hint in get_type_hints(obj, include_extras=True).items():
        helps = [e.text for e in getattr(hint, "__metadata__", ()) if isinstance(e, Help)]
        if helps:
            found[name] = (get_args(hint)[0], helps[0])
    return found


def choices(kind: object) -> tuple:
    """The values a Literal (or Optional[Literal]) allows; () for an open type such as str."""
    if get_origin(kind) is Literal:
        return get_args(kind)
    if get_origin(kind) is Union:
        return tuple(v for arg in get_args(kind) for v in choices(arg))
    return ()


@dataclass(frozen=True)
class NetConfig:
    """A three-stage `CifarResNet`, complete: building from it twice gives the same architecture
    (`net.config`; `replace(net.config, copies=S)` builds S copies of it)."""

    stage_widths: tuple[int, int, int]  # output channels of the units of stages 1, 2, 3
    units_per_stage: int
    kernels: tuple[int, ...] = (3, 3)  # conv kernel sizes of a unit, in order
    expansion: int = 1  # unit output width / inner width (4 for He's bottleneck)
    num_classes: int = 10
    dropout: float = 0.0  # between consecutive convs of a unit (WRN paper, Sec. 2.4)
    copies: int = 1  # S independent networks in one (grouped convs, see fused.py)
    order: Annotated[Order, Help("pre = BN-ReLU-conv (He et al. 2016, WRN), post = conv-BN-ReLU "
                                 "(He et al. 2015)")] = "pre"
    shortcut: Annotated[Shortcut, Help("A zero-padded identity, B projection where the shape "
                                       "changes, C projection everywhere, none: no shortcut")] = "B"
    activation: Annotated[Activation, Help("relu, or prelu with one slope per channel")] = "relu"
    bn_placement: Annotated[BNPlacement, Help("post-activation only: BN before or after the "
                                              "addition")] = "before_add"
    stride_on: Annotated[StrideOn, Help("where a down-sampling unit strides: its first conv (He et al.'s "
                                        "released pre-act code) or its first 3x3 conv")] = "3x3"

    def __post_init__(self) -> None:
        # Plain tuples, whatever sequence came in (a config read back from YAML or JSON).
        object.__setattr__(self, "stage_widths", tuple(self.stage_widths))
        object.__setattr__(self, "kernels", tuple(self.kernels))
        for name, (kind, _) in switch_hints(type(self)).items():
            check_choice(name, getattr(self, name), choices(kind))
        if self.order == "pre" and self.bn_placement != "before_add":
            raise ValueError(f"bn_placement={self.bn_placement!r} needs order='post': a "
                             "pre-activation unit normalises the next unit's input, not the sum")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} is invalid; valid: 0 <= dropout < 1")
        for name in ("copies", "num_classes", "units_per_stage", "expansion"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid; valid: an integer >= 1")
        if len(self.stage_widths) != 3 or min(self.stage_widths) < 1:
            raise ValueError(f"stage_widths={self.stage_widths!r} is invalid; valid: three "
                             "positive channel counts")
        if not self.kernels or set(self.kernels) - {1, 3}:
            raise ValueError(f"kernels={self.kernels!r} is invalid; valid: sizes 1 and 3")

    def switches(self) -> dict:
        return {name: getattr(self, name) for name in switch_hints(type(self))}
