"""Published CIFAR test errors (augmentation: 4-pixel padding, random crop, flip) and the rank
correlation with them. WRN numbers: Table 4 of the first arXiv version, the one others (e.g. DenseNet,
Table 2) quote; later versions add input normalisation and report lower errors (WRN-28-10 4.00 / 19.25)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

WRN_PAPER = "Zagoruyko & Komodakis 2016, Wide Residual Networks, arXiv:1605.07146v1, Table 4"
HE_2016 = "He et al. 2016, Deep Residual Learning for Image Recognition, CVPR, Table 6"
HE_2016_IDENTITY = "He et al. 2016, Identity Mappings in Deep Residual Networks, ECCV"


@dataclass(frozen=True)
class PublishedResult:
    model: str  # the package's model name, e.g. "wrn-28-10", "preact-resnet-164"
    dropout: float
    dataset: str  # "cifar10" or "cifar100"
    error: float  # test error, %
    params: float  # parameter count as published (rounded to 0.1M in the papers)
    source: str


def _entries(model: str, dropout: float, c10: float, c100: float | None, params_m: float,
             source: str = WRN_PAPER) -> tuple[PublishedResult, ...]:
    return tuple(PublishedResult(model, dropout, dataset, error, params_m * 1e6, source)
                 for dataset, error in (("cifar10", c10), ("cifar100", c100)) if error is not None)


PUBLISHED: tuple[PublishedResult, ...] = (
    # ResNet CIFAR-10 errors and params from He et al. (Table 6); the CIFAR-100 errors are the
    # ones the WRN paper lists in its Table 4 (He et al. did not report CIFAR-100).
    *_entries("resnet-110", 0.0, 6.43, 25.16, 1.7, f"{HE_2016}; CIFAR-100 via {WRN_PAPER}"),
    *_entries("resnet-1202", 0.0, 7.93, 27.82, 19.4, f"{HE_2016}; CIFAR-100 via {WRN_PAPER}"),
    # Pre-activation ResNets, as listed in WRN Table 4.
    *_entries("preact-resnet-164", 0.0, 5.46, 24.33, 1.7, f"{HE_2016_IDENTITY}; via {WRN_PAPER}"),
    *_entries("preact-resnet-1001", 0.0, 4.92, 22.71, 10.2, f"{HE_2016_IDENTITY}; via {WRN_PAPER}"),
    # Wide ResNets, the whole of WRN Table 4 in its order (depth 40, 28, 22, 16); the dropout
    # row uses dropout 0.3 between the block's convs.
    *_entries("wrn-40-1", 0.0, 6.85, None, 0.6),
    *_entries("wrn-40-2", 0.0, 5.33, None, 2.2),
    *_entries("wrn-40-4", 0.0, 4.97, 22.89, 8.9),
    *_entries("wrn-40-8", 0.0, 4.66, None, 35.7),
    *_entries("wrn-28-10", 0.0, 4.17, 20.50, 36.5),
    *_entries("wrn-28-12", 0.0, 4.33, None, 52.5),
    *_entries("wrn-22-8", 0.0, 4.38, None, 17.2),
    *_entries("wrn-22-10", 0.0, 4.44, None, 26.8),
    *_entries("wrn-16-8", 0.0, 4.81, 22.07, 11.0),
    *_entries("wrn-16-10", 0.0, 4.56, None, 17.1),
    *_entries("wrn-28-10", 0.3, 3.89, 18.85, 36.5),
)


def published_results(dataset: str = "cifar10") -> tuple[PublishedResult, ...]:
    return tuple(r for r in PUBLISHED if r.dataset == dataset.lower())


def published_error(model: str, dataset: str = "cifar10", dropout: float = 0.0) -> float | None:
    # Dropout is matched exactly: a paper number at dropout 0.3 says nothing about 0.5.
    return next((r.error for r in published_results(dataset)
                 if r.model == model.lower() and abs(r.dropout - float(dropout)) < 1e-9), None)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span: [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]."""
    ordered = np.sort(np.asarray(values, dtype=float))
    below = np.searchsorted(ordered, values, side="left")  # how many are smaller
    at_most = np.searchsorted(ordered, values, side="right")  # how many are not larger
    return (below + at_most + 1) / 2  # the mean of ranks below + 1 .. at_most


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation of the average ranks; NaN (undefined) for < 2 pairs or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs pairs: {len(x)} values against {len(y)}")
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x) - (len(x) + 1) / 2, average_ranks(y) - (len(y) + 1) / 2
    scale = float(np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / scale) if scale > 0 else float("nan")


@dataclass(frozen=True)
class RankCorrelation:
    rho: float  # NaN when undefined (fewer than two shared models, or no spread)
    models: tuple[tuple[str, float], ...]  # (model, dropout) of the rows compared
    n: int


def paper_rank_correlation(ours: Mapping[str | tuple[str, float], float],
                           dataset: str = "cifar10") -> RankCorrelation:
    """Spearman's correlation with the paper over the Wide ResNet rows both have; `ours` maps a
    model name (dropout 0) or (model, dropout) to our mean error (%)."""
    keyed = {(k, 0.0) if isinstance(k, str) else (k[0], float(k[1])): v for k, v in ours.items()}
    keyed = {(model.lower(), round(dropout, 9)): v for (model, dropout), v in keyed.items()}
    pairs = [((r.model, r.dropout), keyed[key], r.error) for r in published_results(dataset)
             if r.model.startswith("wrn-") and (key := (r.model, round(r.dropout, 9))) in keyed]
    return RankCorrelation(spearman([p[1] for p in pairs], [p[2] for p in pairs]),
                           tuple(p[0] for p in pairs), len(pairs))
