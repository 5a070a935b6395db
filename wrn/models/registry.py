"""Model names -> configs -> networks. Any valid `wrn-<d>-<k>`, `resnet-<d>`, `plain-<d>` or
`preact-resnet-<d>` builds; the named models below also carry the figures their papers print."""

from __future__ import annotations

import fnmatch
import inspect
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Literal, Mapping, Sequence

from wrn.models.config import NetConfig, switch_hints
from wrn.models.resnet import CifarResNet, preact_resnet_config, resnet_v1_config
from wrn.models.wide_resnet import wide_resnet_config


@dataclass(frozen=True)
class Published:
    """A model's figures as its paper prints them: parameters in millions, G multiply-adds."""

    params_m: float
    digits: int  # decimals printed in the paper: 36.5M -> 1, 0.27M -> 2
    source: str
    macs_g: float | None = None  # fvcore multiply-adds at 3x32x32, G
    counting: Literal["all", "weights"] = "all"  # weights: conv + linear only (ResNet-1001: 10.2M of 10.33M)


@dataclass(frozen=True)
class Family:
    pattern: str  # full-match regex over the name; groups are arguments of `configure`
    configure: Callable[..., NetConfig]  # name arguments + overrides -> the network's config
    defaults: dict = field(default_factory=dict)

    def name(self, args: dict) -> str:
        return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(args[m.group(1)]), self.pattern)

    def arguments(self) -> list[str]:
        """Every argument a name of this family accepts as an override: its own, in signature order,
        then the `NetConfig` fields a name does not fix."""
        named = [p.name for p in inspect.signature(self.configure).parameters.values()
                 if p.kind is not inspect.Parameter.VAR_KEYWORD]
        structural = {"stage_widths", "units_per_stage", "kernels", "expansion"}
        return named + [f.name for f in fields(NetConfig) if f.name not in structural and f.name not in named]


FAMILIES = {
    "wrn": Family(r"wrn-(?P<depth>\d+)-(?P<widen_factor>\d+)", wide_resnet_config),
    "resnet": Family(r"resnet-(?P<depth>\d+)", resnet_v1_config),
    "plain": Family(r"plain-(?P<depth>\d+)", resnet_v1_config, {"shortcut": "none"}),
    "preact-resnet": Family(r"preact-resnet-(?P<depth>\d+)", preact_resnet_config),
}
NAME_FORMS = "wrn-<depth>-<k>, resnet-<depth>, plain-<depth>, preact-resnet-<depth>"


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
        if match := re.fullmatch(spec.pattern, name):
            return family, {k: int(v) for k, v in match.groupdict().items()}
    raise ValueError(f"unknown model {name!r}; valid forms: {NAME_FORMS}")


def resolve_model(name: str, **overrides: Any) -> ModelSpec:
    """Canonical name, family and config arguments; overrides of None are ignored, and
    depth / widen_factor overrides rename the model (wrn-28-10 with depth=16 is wrn-16-10)."""
    if not isinstance(name, str):
        raise ValueError(f"model name {name!r} is invalid; valid forms: {NAME_FORMS}")
    family, args = _parse_name(name.strip().lower())
    args = {**FAMILIES[family].defaults, **args, **{k: v for k, v in overrides.items() if v is not None}}
    accepted = FAMILIES[family].arguments()
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r} for {name}; valid: {', '.join(accepted)}")
    return ModelSpec(FAMILIES[family].name(args), family, args)


def create_model(name: str, **overrides: Any) -> CifarResNet:
    """The network `name` denotes, freshly initialised; `net.config` holds its configuration."""
    return resolve_model(name, **overrides).build()


def build_model(config: NetConfig) -> CifarResNet:
    """A freshly initialised network: `build_model(model_config(net))` has net's architecture."""
    return CifarResNet(config)


def model_config(net: CifarResNet) -> NetConfig:
    config = getattr(net, "config", None)
    if not isinstance(config, NetConfig):
        raise ValueError(f"{type(net).__name__} keeps no NetConfig; build it with create_model")
    return config


def list_models(filter: str | Sequence[str] = "") -> list[str]:
    """The named models in registration order, or those matching a shell-style pattern (or any of several)."""
    patterns = [p for p in ([filter] if isinstance(filter, str) else filter) if p]
    return [n for n in _NAMED if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def published(name: str) -> Published | None:
    return _NAMED.get(name)


def design_switches() -> dict[str, tuple[object, str]]:
    """name -> (type, help) of every design switch, `NetConfig`'s and the families': the module's `Arch`."""
    owners = [NetConfig] + [family.configure for family in FAMILIES.values()]
    return {name: hint for owner in owners for name, hint in switch_hints(owner).items()}


def model_spec_from_config(model_cfg: Any) -> ModelSpec:
    """The network a `model:` config section (dict, Namespace or object) names: name, depth,
    widen_factor, dropout, num_classes and the switches under `arch` (None keeps the name's)."""
    get = model_cfg.get if isinstance(model_cfg, Mapping) else lambda key: getattr(model_cfg, key, None)
    arch = get("arch") or {}
    arch = arch if isinstance(arch, Mapping) else vars(arch)  # a Namespace or the `Arch` dataclass
    fields = {key: get(key) for key in ("depth", "widen_factor", "dropout", "num_classes")}
    return resolve_model(get("name"), **fields, **arch)


_MACS_G = {"wrn-28-10": 5.25, "resnet-110": 0.256, "resnet-1202": 2.86}  # fvcore at 32x32, as quoted


def _register_table(source: str, printed: dict[str, str], **options: Any) -> None:
    for name, params_m in printed.items():
        register_model(name, Published(float(params_m), len(params_m.partition(".")[2]), source,
                                       _MACS_G.get(name), **options))


_register_table("Zagoruyko & Komodakis 2016, Table 4", {
    "wrn-40-1": "0.6", "wrn-40-2": "2.2", "wrn-40-4": "8.9", "wrn-40-8": "35.7", "wrn-28-10": "36.5",
    "wrn-28-12": "52.5", "wrn-22-8": "17.2", "wrn-22-10": "26.8", "wrn-16-8": "11.0", "wrn-16-10": "17.1"})
_register_table("Zagoruyko & Komodakis 2016, Table 6", {"wrn-16-4": "2.7"})
register_model("wrn-16-1")
_register_table("He et al. 2015, Table 6", {"resnet-20": "0.27", "resnet-32": "0.46", "resnet-44": "0.66",
                                            "resnet-56": "0.85", "resnet-110": "1.7", "resnet-1202": "19.4"})
register_model("plain-20")
register_model("plain-56")
_register_table("He et al. 2016, Table 3", {"preact-resnet-164": "1.7"})
_register_table("He et al. 2016, Table 3", {"preact-resnet-1001": "10.2"}, counting="weights")
