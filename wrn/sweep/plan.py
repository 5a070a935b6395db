"""Check every point of a spec exactly as `wrn fit` would parse it, before anything runs.

A config error (unknown key, wrong type) in any point or in the pass-through arguments stops the
whole sweep; a model the registry rejects (depth 28 with block B(3,3,3)) skips that point, with
the reason, and the rest of the sweep goes on.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wrn.sweep.spec import OWNED_KEYS, Point, SweepSpec, expand


@dataclass(frozen=True)
class PlannedRun:
    run_id: str  # <model>-s<seed>-<point hash>, e.g. wrn-16-4-s0-1f3a9c02
    point: Point
    swept: dict[str, Any]  # varied key -> the value the run's parsed config holds
    identity: dict[str, Any]  # model, family, depth, ...: what a failure record needs to be read


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
    import warnings

    from wrn.cli import FitConfigChecker

    with warnings.catch_warnings():  # about sys.argv beside args=[]: the checker parses no argv
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        return FitConfigChecker()


def _check_owned(passthrough: list[str]) -> None:
    for arg in passthrough:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in OWNED_KEYS:
            raise ValueError(f"--{name} is set by the sweep for every run; do not pass it")


def make_plan(spec: SweepSpec, passthrough: list[str], checker=None) -> Plan:
    """Expand the spec and parse every point with the `wrn fit` parser."""
    from wrn.cli import ConfigError

    checker = checker or fit_checker()
    _check_owned(passthrough)
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
                runs.append(_planned(point, config, spec.varied_keys))
    _check_unique(spec, runs)
    return Plan(spec, tuple(passthrough), tuple(runs), tuple(skipped))


def _planned(point: Point, config, varied_keys: list[str]) -> PlannedRun:
    from wrn.models import model_spec_from_config

    resolved = model_spec_from_config(config.model)
    seed = config.seed_everything
    seed_tag = seed if isinstance(seed, int) and not isinstance(seed, bool) else "none"
    identity = {
        "model": resolved.name, "family": resolved.family, "model_args": resolved.args,
        "depth": resolved.args.get("depth"), "widen_factor": resolved.args.get("widen_factor", 1),
        "dropout": resolved.args.get("dropout", 0.0), "seed": seed if seed_tag != "none" else None,
        "max_epochs": config.trainer.max_epochs,
    }
    swept = {key: _plain(config.get(key)) for key in varied_keys}
    return PlannedRun(f"{resolved.name}-s{seed_tag}-{point.digest}", point, swept, identity)


def _plain(value: Any) -> Any:
    """A parsed value as plain data (nested namespaces become dicts), for JSON and CSV."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)


def _check_unique(spec: SweepSpec, runs: list[PlannedRun]) -> None:
    seen: dict[str, Point] = {}
    for run in runs:
        if run.run_id in seen:
            raise ValueError(f"{spec.path}: points {seen[run.run_id].label} and {run.point.label} "
                             f"share run id {run.run_id}")
        seen[run.run_id] = run.point
