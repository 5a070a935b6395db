"""Model names -> configs -> networks, with the sizes and costs the papers print beside each named model.

Names: `wrn-<d>-<k>`, `resnet-<d>`, `plain-<d>`, `preact-resnet-<d>` for any valid d and k.
The named models registered below carry their published figures; any other valid name of a
family is built on demand. `create_model(name, **overrides)` builds; `resolve_model` tells what
would be built (canonical name, family, arguments, `config()`) without building it;
`model_spec_from_config` does the same for the LightningModule's `model:` section.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

from torch import nn

from wrn.models.config import NetConfig, options, switch_hints
from wrn.models.resnet import CifarResNet, preact_resnet_config, resnet_v1_config
from wrn.models.wide_resnet import wide_resnet_config

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
    pattern: str  # full-match regex over the name; groups are arguments of `configure`
    configure: Callable[..., NetConfig]  # name arguments + overrides -> the network's config
    defaults: dict = field(default_factory=dict)

    def name(self, args: dict) -> str:
        return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(args[m.group(1)]), self.pattern)

    def arguments(self) -> list[str]:
        """Every argument a name of this family accepts as an override, in signature order."""
        named = [p.name for p in inspect.signature(self.configure).parameters.values()
                 if p.kind is not inspect.Parameter.VAR_KEYWORD]
        return named + [o for o in options() if o not in named]


FAMILIES = {
    "wrn": Family(r"wrn-(?P<depth>\d+)-(?P<widen_factor>\d+)", wide_resnet_config),
    "resnet": Family(r"resnet-(?P<depth>\d+)", resnet_v1_config),
    "plain": Family(r"plain-(?P<depth>\d+)", resnet_v1_config, {"shortcut": "none"}),
    "preact-resnet": Family(r"preact-resnet-(?P<depth>\d+)", preact_resnet_config),
}
NAME_FORMS = "wrn-<depth>-<k>, resnet-<depth>, plain-<depth>, preact-resnet-<depth>"
NAME_AXES = ("depth", "widen_factor")  # what a name spells out; everything else is a switch


@dataclass(frozen=True)
class ModelSpec:
    """What a name plus overrides resolves to; `config()` checks it, `build()` makes the network."""

    name: str
    family: str
    args: dict

    def config(self) -> NetConfig:
        return FAMILIES[self.family].configure(**self.args)

    def build(self) -> CifarResNet:
        return build_model(self.config())


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
    """Canonical name, family and config arguments; overrides of None are ignored, and
    depth / widen_factor overrides rename the model (wrn-28-10 with depth=16 is wrn-16-10)."""
    if not isinstance(name, str):
        raise ValueError(f"model name {name!r} is invalid; valid forms: {NAME_FORMS}")
    family, args = _parse_name(name.strip().lower())
    args = {**FAMILIES[family].defaults, **args,
            **{k: v for k, v in overrides.items() if v is not None}}
    accepted = FAMILIES[family].arguments()
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r} for {name}; valid: {', '.join(accepted)}")
    return ModelSpec(FAMILIES[family].name(args), family, args)


def create_model(name: str, **overrides: Any) -> CifarResNet:
    """The network `name` denotes, freshly initialised; `net.config` holds its configuration."""
    return resolve_model(name, **overrides).build()


def build_model(config: NetConfig) -> CifarResNet:
    """A freshly initialised network of `config`: `build_model(model_config(net))` has net's
    architecture."""
    return CifarResNet(config)


def model_config(net: nn.Module) -> NetConfig:
    """The configuration `net` was built from."""
    config = getattr(net, "config", None)
    if not isinstance(config, NetConfig):
        raise ValueError(f"{type(net).__name__} keeps no NetConfig; build it with create_model")
    return config


def list_models(filter: str | Sequence[str] = "") -> list[str]:
    """The named models, in registration order; `filter` keeps the names matching a shell-style
    pattern (or any of several), as timm's list_models does: list_models("wrn-28*")."""
    patterns = [filter] if isinstance(filter, str) else list(filter)
    patterns = [p for p in patterns if p]
    return [n for n in _NAMED if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def published(name: str) -> Published | None:
    return _NAMED.get(name)


def design_switches() -> dict[str, tuple[object, str]]:
    """name -> (type, help) of every design switch: the `NetConfig` switches and the family
    options (WRN's block, pre-act's unit). The LightningModule's `Arch` is made from this."""
    found = dict(switch_hints(NetConfig))
    for family in FAMILIES.values():
        found.update(switch_hints(family.configure))
    return found


def _get(cfg: Any, key: str) -> Any:
    return cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)


def _as_dict(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if is_dataclass(value):
        return asdict(value)
    if hasattr(value, "as_dict"):  # jsonargparse Namespace
        return value.as_dict()
    return dict(vars(value))


def model_spec_from_config(model_cfg: Any) -> ModelSpec:
    """The network a `model:` config section names: name, depth, widen_factor, dropout,
    num_classes and the design switches under `arch` (None keeps what the name implies).

    `model_cfg` is a dict, a jsonargparse Namespace or any object with those attributes; `arch`
    a dict, a Namespace or the `Arch` dataclass.
    """
    arch = {k: v for k, v in _as_dict(_get(model_cfg, "arch")).items() if v is not None}
    return resolve_model(_get(model_cfg, "name"), depth=_get(model_cfg, "depth"),
                         widen_factor=_get(model_cfg, "widen_factor"),
                         dropout=_get(model_cfg, "dropout"),
                         num_classes=_get(model_cfg, "num_classes"), **arch)


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
