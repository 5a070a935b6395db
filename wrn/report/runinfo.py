"""What the runs were (training subset, epochs): a short smoke sweep must not pass for a full result."""

from __future__ import annotations

from typing import Iterable, Sequence

from wrn.report.results import Run, by_config
from wrn.rundir import is_copy_dir, read_config

MAX_CONFIGS_READ = 50  # config.yaml files read: the first run of each configuration, up to this


def _span(values: Iterable[int], unit: str) -> str:
    values = sorted(set(values))
    return f"{values[0]:,} {unit}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,} {unit}"


def describe_runs(runs: Sequence[Run]) -> str:
    """E.g. 'subset: 300 images per class, 500 held out for validation; 6 epochs'."""
    firsts = [members[0] for members in by_config(runs).values()][:MAX_CONFIGS_READ]
    # A fused run's copies keep their records in its folder, beside its one config.yaml.
    configs = [read_config(r.run_dir.parent if is_copy_dir(r.run_dir) else r.run_dir)
               for r in firsts if r.run_dir is not None]
    sections = [c["data"] for c in configs if c and isinstance(c.get("data"), dict)]
    parts = []
    if sections:
        subsets = {s.get("subset") for s in sections}
        held = {int(s.get("val_size") or 0) for s in sections}
        what = ("subset: " + _span(subsets, "images per class") if None not in subsets
                else "full training set" if len(subsets) == 1 else "mixed training subsets")
        parts.append(f"{what}, " + ("validated on the test split" if held == {0}
                                    else _span(held, "held out for validation")))
    epochs = [int(r.epochs) for r in runs if r.epochs is not None]
    if epochs:
        parts.append(_span(epochs, "epochs" if max(epochs) > 1 else "epoch"))
    return "; ".join(parts)
