"""Every point of a spec parsed exactly as `wrn fit` would parse it, before anything runs: a
config error stops the sweep, a model the registry rejects skips its point (with the reason)."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wrn.rundir import run_identity, run_settings
from wrn.sweep.spec import (MAX_POINTS, OWNED_KEYS, SEED_KEY, Point, SweepSpec, check_point_count,
                            check_seed, expand)


@dataclass(frozen=True)
class PlannedRun:
    run_id: str  # <model>-s<seed>-<point hash>, e.g. wrn-16-4-s0-1f3a9c02
    point: Point
    swept: dict[str, Any]  # varied key -> the value the run's parsed config holds
    identity: dict[str, Any]  # model, family, depth, ...: what a failure record needs to be read
    settings: dict[str, Any]  # dotted key -> value: everything that changes what the run computes
    data_root: str | None = None  # where its data is (a place, not a setting)


@dataclass(frozen=True)
class SkippedPoint:
    point: Point
    reason: str


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    passthrough: tuple[str, ...]  # extra `wrn fit` arguments, after the point's config
    runs: tuple[PlannedRun, ...]
    skipped: tuple[SkippedPoint, ...]

    def base_args(self) -> list[str]:
        return [arg for base in self.spec.base for arg in ("--config", str(base))]

    def fit_args(self, point_file: Path, run_dir: Path, checkpoint: Path | None) -> list[str]:
        """Arguments after `python -m wrn fit`: base configs, the point, pass-through, run dir."""
        resume = ["--ckpt_path", str(checkpoint)] if checkpoint else []
        return [*self.base_args(), "--config", str(point_file), *self.passthrough,
                "--trainer.default_root_dir", str(run_dir), *resume]


@functools.lru_cache(maxsize=1)
def fit_checker():
    """Building the parser costs seconds; one per process serves every sweep it checks."""
    from wrn.train import FitConfigChecker

    return FitConfigChecker()


def _check_passthrough(spec: SweepSpec, passthrough: list[str]) -> None:
    """No owned key; no key the spec varies (nor a parent or child of one: --model.arch would
    replace a swept model.arch.block)."""
    for name in (arg[2:].split("=", 1)[0] for arg in passthrough if arg.startswith("--")):
        if name in OWNED_KEYS:
            raise ValueError(f"--{name} is set by the sweep for every run; do not pass it")
        for swept in spec.varied_keys:
            if name == swept or swept.startswith(name + ".") or name.startswith(swept + "."):
                where = "seeds:" if swept == SEED_KEY else f"its points or grid ({swept})"
                raise ValueError(f"--{name}: {spec.path} varies {swept} in {where}; a pass-through "
                                 "value would replace every point's. Change the spec instead")


def make_plan(spec: SweepSpec, passthrough: list[str], checker=None,
              max_points: int = MAX_POINTS) -> Plan:
    from wrn.train import ConfigError

    _check_passthrough(spec, passthrough)
    check_point_count(spec, max_points)
    checker = checker or fit_checker()
    plan = Plan(spec, tuple(passthrough), (), ())
    try:
        checker.check(plan.base_args() + passthrough)
    except ConfigError as exc:
        raise ValueError(f"pass-through arguments {' '.join(passthrough)}: {exc}") from None
    except ValueError:
        pass  # an invalid model here may be fixed by every point; each point is checked below
    runs, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="wrn-sweep-check-") as scratch:
        for index, point in enumerate(expand(spec)):
            point_file = Path(scratch) / f"{index}.yaml"
            point_file.write_text(yaml.safe_dump(point.nested(), sort_keys=False))
            try:
                config = checker.check(plan.base_args() + ["--config", str(point_file)] + passthrough)
            except ConfigError as exc:
                raise ValueError(f"{spec.path}: point {point.label}: {exc}") from None
            except ValueError as exc:
                skipped.append(SkippedPoint(point, " ".join(str(exc).split())))
            else:
                runs.append(_planned(spec, point, config))
    seen: dict[str, Point] = {}
    for run in runs:
        if run.run_id in seen:
            raise ValueError(f"{spec.path}: points {seen[run.run_id].label} and {run.point.label} "
                             f"share run id {run.run_id}")
        seen[run.run_id] = run.point
    return Plan(spec, tuple(passthrough), tuple(runs), tuple(skipped))


def _planned(spec: SweepSpec, point: Point, config) -> PlannedRun:
    from wrn.models import model_spec_from_config

    resolved = model_spec_from_config(config.model)  # as the run's module resolves it
    seed = config.seed_everything
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    check_seed(seed, f"{spec.path}: point {point.label}")
    identity = run_identity(resolved, seed, config.trainer.max_epochs)
    swept = {key: _plain(config.get(key)) for key in spec.varied_keys}
    run_id = f"{resolved.name}-s{'none' if seed is None else seed}-{point.digest}"
    root = config.data.root
    return PlannedRun(run_id, point, swept, identity, run_settings(config.as_dict()),
                      str(root) if root is not None else None)


def _plain(value: Any) -> Any:
    """A parsed value as plain data (nested namespaces become dicts), for JSON and CSV."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)
