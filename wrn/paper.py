"""Published CIFAR test errors to set a reproduction beside.

Numbers were typed in from the papers (no network here), all with standard augmentation
(random crop after 4-pixel padding + horizontal flip). The WRN numbers are the ones in
Table 4 of the first arXiv version of the WRN paper, the version other papers (e.g. DenseNet,
Table 2) quote; later versions of the WRN paper add mean/std input normalisation and report
somewhat lower WRN errors (e.g. WRN-28-10 4.00 / 19.25).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _pair(model: str, dropout: float, c10: float, c100: float, params_m: float, source: str):
    """One model's CIFAR-10 and CIFAR-100 entries: the papers report them side by side."""
    return (
        PublishedResult(model, dropout, "cifar10", c10, params_m * 1e6, source),
        PublishedResult(model, dropout, "cifar100", c100, params_m * 1e6, source),
    )


PUBLISHED: tuple[PublishedResult, ...] = (
    # ResNet CIFAR-10 errors and params from He et al. (Table 6); the CIFAR-100 errors are the
    # ones the WRN paper lists in its Table 4 (He et al. did not report CIFAR-100).
    *_pair("resnet-110", 0.0, 6.43, 25.16, 1.7, f"{HE_2016}; CIFAR-100 via {WRN_PAPER}"),
    *_pair("resnet-1202", 0.0, 7.93, 27.82, 19.4, f"{HE_2016}; CIFAR-100 via {WRN_PAPER}"),
    # Pre-activation ResNets, as listed in WRN Table 4.
    *_pair("preact-resnet-164", 0.0, 5.46, 24.33, 1.7, f"{HE_2016_IDENTITY}; via {WRN_PAPER}"),
    *_pair("preact-resnet-1001", 0.0, 4.92, 22.71, 10.2, f"{HE_2016_IDENTITY}; via {WRN_PAPER}"),
    # Wide ResNets, WRN Table 4; the dropout row uses dropout 0.3 between the block's convs.
    *_pair("wrn-40-4", 0.0, 4.97, 22.89, 8.9, WRN_PAPER),
    *_pair("wrn-16-8", 0.0, 4.81, 22.07, 11.0, WRN_PAPER),
    *_pair("wrn-28-10", 0.0, 4.17, 20.50, 36.5, WRN_PAPER),
    *_pair("wrn-28-10", 0.3, 3.89, 18.85, 36.5, WRN_PAPER),
)


def published_results(dataset: str = "cifar10") -> tuple[PublishedResult, ...]:
    """Every published entry for one dataset, in table order."""
    return tuple(r for r in PUBLISHED if r.dataset == dataset.lower())


def published_entry(model: str, dataset: str = "cifar10", dropout: float = 0.0) -> PublishedResult | None:
    # Dropout is matched exactly: a paper number at dropout 0.3 says nothing about 0.5.
    for result in published_results(dataset):
        if result.model == model.lower() and abs(result.dropout - float(dropout)) < 1e-9:
            return result
    return None


def published_error(model: str, dataset: str = "cifar10", dropout: float = 0.0) -> float | None:
    """The published test error (%) for a model, or None when the papers above lack it."""
    entry = published_entry(model, dataset, dropout)
    return None if entry is None else entry.error
