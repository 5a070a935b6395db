"""Sweep specs (sweeps/*.yaml, their keys in docs/sweeps.md): checked, then expanded into points
in a fixed order, seed slowest (all configurations of the first seed come first)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from wrn.errors import load_yaml

TOP_LEVEL_KEYS = ("base", "fixed", "grid", "points", "exclude", "seeds", "description")
SEED_KEY = "seed_everything"
OWNED_KEYS = ("trainer.default_root_dir", "ckpt_path")  # the sweep sets these for every run
HASH_HEX_DIGITS = 8  # characters of the point hash in a run id: 4e9 values, collisions negligible
MAX_POINTS = 10_000  # default cap on (configurations x seeds) before anything is expanded
SEED_RANGE = (0, 2**32 - 1)  # what seed_everything accepts


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    base: tuple[Path, ...]  # absolute config paths, in --config order
    fixed: dict[str, Any]
    grid: dict[str, list]
    points: tuple[dict[str, Any], ...]
    exclude: tuple[dict[str, Any], ...]
    seeds: tuple[int, ...] | None  # None: the base config's seed_everything

    @property
    def varied_keys(self) -> list[str]:
        """Keys that tell points apart, in first-mention order: the swept-key result columns."""
        keys = [*self.grid, *(key for point in self.points for key in point)]
        return list(dict.fromkeys(keys + ([SEED_KEY] if self.seeds is not None else [])))


@dataclass(frozen=True)
class Point:
    overrides: dict[str, Any]  # dotted key -> value: fixed, point values, seed_everything
    label: str  # the results' `config` column: the point's own values without fixed and seed
    seed: int | None
    digest: str  # hash of `overrides`: stable while the spec's values for this point stay put

    def nested(self) -> dict:
        """The overrides as the nested mapping a --config file holds."""
        tree: dict = {}
        for key, value in self.overrides.items():
            *parents, leaf = key.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"point {self.label}: {key} is inside a key given a plain value")
            node[leaf] = copy.deepcopy(value)  # a later dotted key may fill in a mapping value
        return tree


def _fail(spec_path: Path, message: str) -> NoReturn:
    raise ValueError(f"{spec_path}: {message}")


def _mapping(path: Path, where: str, value: Any, allow_empty: bool = True) -> dict[str, Any]:
    if value is None and allow_empty:
        return {}
    if not isinstance(value, dict):
        _fail(path, f"{where} must be a mapping of dotted config keys, got {value!r}")
    if not value and not allow_empty:
        _fail(path, f"{where} is empty")
    for key in value:
        if not isinstance(key, str) or not key or " " in key or key.startswith((".", "-")):
            _fail(path, f"{where}: {key!r} is not a dotted config key like model.depth")
        if key in OWNED_KEYS:
            _fail(path, f"{where}: {key} is set by the sweep for every run")
        if key == SEED_KEY:
            _fail(path, f"{where}: set {SEED_KEY} through the top-level seeds: list")
    return value


def _list(path: Path, where: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, f"{where} must be a list, got {value!r}")
    return value


def _base(path: Path, value: Any) -> tuple[Path, ...]:
    names = [value] if isinstance(value, str) else value
    if not names or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        _fail(path, f"base must be a config file or a list of them, got {value!r}")
    files = tuple((path.parent / Path(n).expanduser()).resolve() for n in names)
    for name, file in zip(names, files):
        if not file.is_file():
            _fail(path, f"base config {name!r} not found (looked for {file})")
    return files


def _grid(path: Path, value: Any) -> dict[str, list]:
    grid = _mapping(path, "grid", value)
    for key, values in grid.items():
        if not isinstance(values, list):
            _fail(path, f"grid[{key!r}] must be a list of values, got {values!r}")
        if not values:
            _fail(path, f"grid[{key!r}] is an empty list")
    return grid


def check_seed(seed: Any, where: str) -> None:
    """ValueError unless seed is None or an integer seed_everything accepts."""
    if seed is None:
        return
    if not isinstance(seed, int) or isinstance(seed, bool) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"{where}: seed {seed!r} is invalid; valid: an integer from "
                         f"{SEED_RANGE[0]} to {SEED_RANGE[1]}")


def _seeds(path: Path, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    seeds = _list(path, "seeds", value)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        _fail(path, f"seeds must be a non-empty list of integers, got {value!r}")
    if len(set(seeds)) != len(seeds):
        _fail(path, f"seeds has duplicates: {value!r}")
    for seed in seeds:
        check_seed(seed, f"{path}: seeds")
    return tuple(seeds)


def load_spec(path: str | Path) -> SweepSpec:
    """Parse and check the structure; every error is one line naming the bad key or value."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"sweep spec {path} not found")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        _fail(path, f"a sweep spec must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}")
    unknown = [k for k in raw if k not in TOP_LEVEL_KEYS]
    if unknown:
        _fail(path, f"unknown top-level key {unknown[0]!r}; valid: {', '.join(TOP_LEVEL_KEYS)}")
    if "base" not in raw:
        _fail(path, "base: is required (the config file(s) every run starts from)")
    points = tuple(_mapping(path, f"points[{i}]", p)
                   for i, p in enumerate(_list(path, "points", raw.get("points"))))
    spec = SweepSpec(
        path=path, base=_base(path, raw["base"]), fixed=_mapping(path, "fixed", raw.get("fixed")),
        grid=_grid(path, raw.get("grid")), points=points,
        exclude=tuple(_mapping(path, f"exclude[{i}]", e, allow_empty=False)
                      for i, e in enumerate(_list(path, "exclude", raw.get("exclude")))),
        seeds=_seeds(path, raw.get("seeds")))
    if not spec.grid and not spec.points:
        _fail(path, "empty sweep: grid is empty and there are no points")
    known = set(spec.varied_keys) | set(spec.fixed)
    for i, rule in enumerate(spec.exclude):
        for key in rule:
            if key not in known:
                _fail(path, f"exclude[{i}]: {key!r} is not a key of grid, points or fixed")
    return spec


def point_label(values: dict[str, Any]) -> str:
    """Sorted by key: model.depth=16,model.widen_factor=4; 'base' for {}."""
    text = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in values.items()}
    return ",".join(f"{k}={text[k]}" for k in sorted(text)) or "base"


def point_digest(overrides: dict[str, Any]) -> str:
    canonical = json.dumps(overrides, sort_keys=True, default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:HASH_HEX_DIGITS]


def point_count(spec: SweepSpec) -> int:
    """(grid product + explicit points) x seeds, before excludes: an upper bound on the points,
    computed without expanding anything."""
    product = math.prod(len(values) for values in spec.grid.values()) if spec.grid else 0
    return (product + len(spec.points)) * (len(spec.seeds) if spec.seeds is not None else 1)


def check_point_count(spec: SweepSpec, max_points: int) -> None:
    count = point_count(spec)
    if count > max_points:
        shape = " x ".join([*(str(len(v)) for v in spec.grid.values())] or ["0"])
        _fail(spec.path, f"{count:,} points (grid {shape}, {len(spec.points)} explicit points, "
                         f"{len(spec.seeds or [None])} seed(s)) exceed the cap of {max_points:,}; "
                         "pass --max-points to raise it")


def configurations(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid's product then the explicit points (each without fixed), excludes removed,
    duplicates (a point that repeats a grid point) dropped."""
    grid = itertools.product(*spec.grid.values()) if spec.grid else ()
    kept: dict[str, dict[str, Any]] = {}  # by the digest of the point's overrides
    for values in [*(dict(zip(spec.grid, combo)) for combo in grid), *map(dict, spec.points)]:
        merged = {**spec.fixed, **values}
        if not any(rule.items() <= merged.items() for rule in spec.exclude):
            kept.setdefault(point_digest(merged), values)
    if not kept:
        _fail(spec.path, "every point is excluded")
    return list(kept.values())


def expand(spec: SweepSpec) -> list[Point]:
    """Every (configuration, seed) pair as a Point, seed slowest."""
    points = []
    for seed in spec.seeds if spec.seeds is not None else (None,):
        for values in configurations(spec):
            overrides = {**spec.fixed, **values}
            if seed is not None:
                overrides[SEED_KEY] = seed
            points.append(Point(overrides, point_label(values), seed, point_digest(overrides)))
    return points
