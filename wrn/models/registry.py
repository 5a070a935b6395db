"""Model names -> networks, with the sizes and costs the papers print beside each named model.

Names: `wrn-<d>-<k>`, `resnet-<d>`, `plain-<d>`, `preact-resnet-<d>` for any valid d and k.
The named models registered below carry their published figures; any other valid name of a
family is built on demand. `create_model(name, **overrides)` builds; `resolve_model` tells what
would be built (canonical name, family, arguments) without building it.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from torch import nn

from wrn.models.resnet import PreActResNet, ResNetV1
from wrn.models.wide_resnet import WideResNet

Counting = Literal["all", "weights"]


@dataclass(frozen=True)
class Published:
    """A figure as printed: params in millions to the printed digits, FLOPs in G multiply-adds.

    counting="weights": the paper's figure matches conv + linear weights only (no BN affine
    parameters or biases); He et al. 2016 print ResNet-1001 as 10.2M, which is its 10.18M
    weights, while all its parameters come to 10.33M.
    """

    params_m: float
    digits: int  # decimals printed in the paper: 36.5M -> 1, 0.27M -> 2
    source: str
    macs_g: float | None = None  # fvcore multiply-adds at 3x32x32, G
    counting: Counting = "all"


@dataclass(frozen=True)
class Family:
    pattern: str  # full-match regex over the name; groups are builder arguments
    builder: Callable[..., nn.Module]
    defaults: dict = field(default_factory=dict)

    def name(self, args: dict) -> str:
        return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(args[m.group(1)]), self.pattern)


FAMILIES = {
    "wrn": Family(r"wrn-(?P<depth>\d+)-(?P<widen_factor>\d+)", WideResNet),
    "resnet": Family(r"resnet-(?P<depth>\d+)", ResNetV1),
    "plain": Family(r"plain-(?P<depth>\d+)", ResNetV1, {"shortcut": "none"}),
    "preact-resnet": Family(r"preact-resnet-(?P<depth>\d+)", PreActResNet),
}
NAME_FORMS = "wrn-<depth>-<k>, resnet-<depth>, plain-<depth>, preact-resnet-<depth>"


@dataclass(frozen=True)
class ModelSpec:
    """What a name plus overrides resolves to; `build()` makes the network."""

    name: str
    family: str
    args: dict

    def build(self) -> nn.Module:
        return FAMILIES[self.family].builder(**self.args)


_NAMED: dict[str, Published | None] = {}


def register_model(name: str, published: Published | None = None) -> None:
    """Name a model of a family (and what its paper printed). Registering a name twice raises."""
    if name in _NAMED:
        raise ValueError(f"model {name!r} is already registered")
    _parse_name(name)
    _NAMED[name] = published


def _parse_name(name: str) -> tuple[str, dict]:
    for family, spec in FAMILIES.items():
        match = re.fullmatch(spec.pattern, name)
        if match:
            return family, {k: int(v) for k, v in match.groupdict().items()}
    raise ValueError(f"unknown model {name!r}; valid forms: {NAME_FORMS}")


def resolve_model(name: str, **overrides: Any) -> ModelSpec:
    """Canonical name, family and constructor arguments; overrides of None are ignored, and
    depth / widen_factor overrides rename the model (wrn-28-10 with depth=16 is wrn-16-10)."""
    if not isinstance(name, str):
        raise ValueError(f"model name {name!r} is invalid; valid forms: {NAME_FORMS}")
    family, args = _parse_name(name.strip().lower())
    args = {**FAMILIES[family].defaults, **args,
            **{k: v for k, v in overrides.items() if v is not None}}
    accepted = [p for p in inspect.signature(FAMILIES[family].builder).parameters if p != "self"]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r} for {name}; valid: {', '.join(accepted)}")
    return ModelSpec(FAMILIES[family].name(args), family, args)


def create_model(name: str, **overrides: Any) -> nn.Module:
    return resolve_model(name, **overrides).build()


def list_models() -> list[str]:
    return list(_NAMED)


def published(name: str) -> Published | None:
    return _NAMED.get(name)


# The named models: WRN paper Table 4 (CIFAR sizes), Table 6 (WRN-16-4); He et al. 2015 Table 6;
# He et al. 2016 Table 3. Multiply-adds are fvcore's count at 32x32, as commonly quoted.
_WRN = "Zagoruyko & Komodakis 2016, Table 4"
register_model("wrn-40-1", Published(0.6, 1, _WRN))
register_model("wrn-40-2", Published(2.2, 1, _WRN))
register_model("wrn-40-4", Published(8.9, 1, _WRN))
register_model("wrn-40-8", Published(35.7, 1, _WRN))
register_model("wrn-28-10", Published(36.5, 1, _WRN, macs_g=5.25))
register_model("wrn-28-12", Published(52.5, 1, _WRN))
register_model("wrn-22-8", Published(17.2, 1, _WRN))
register_model("wrn-22-10", Published(26.8, 1, _WRN))
register_model("wrn-16-8", Published(11.0, 1, _WRN))
register_model("wrn-16-10", Published(17.1, 1, _WRN))
register_model("wrn-16-4", Published(2.7, 1, "Zagoruyko & Komodakis 2016, Table 6"))
register_model("wrn-16-1")
_HE15 = "He et al. 2015, Table 6"
register_model("resnet-20", Published(0.27, 2, _HE15))
register_model("resnet-32", Published(0.46, 2, _HE15))
register_model("resnet-44", Published(0.66, 2, _HE15))
register_model("resnet-56", Published(0.85, 2, _HE15))
register_model("resnet-110", Published(1.7, 1, _HE15, macs_g=0.256))
register_model("resnet-1202", Published(19.4, 1, _HE15, macs_g=2.86))
register_model("plain-20")
register_model("plain-56")
_HE16 = "He et al. 2016, Table 3"
register_model("preact-resnet-164", Published(1.7, 1, _HE16))
register_model("preact-resnet-1001", Published(10.2, 1, _HE16, counting="weights"))
