"""Display names of models and datasets (no plotting library needed: tables use them too)."""

from __future__ import annotations

from wrn.data import DATASETS  # the table alone: importing it loads neither torch nor Lightning

DATASET_NAMES = {name: facts.title for name, facts in DATASETS.items()}
_MODEL_PREFIXES = (  # longest first: "preact-resnet-" also ends in "resnet-"
    ("preact-resnet-", "preact-resnet", "pre-act ResNet-"),
    ("resnet-", "resnet", "ResNet-"),
    ("wrn-", "wrn", "WRN-"),
    ("plain-", "plain", "plain-"),
)


def family_of_model(model: str) -> str:
    matches = (family for prefix, family, _ in _MODEL_PREFIXES if model.lower().startswith(prefix))
    return next(matches, "")


def display_name(model: str, dropout: float = 0.0) -> str:
    """`wrn-28-10` -> `WRN-28-10`, `preact-resnet-164` -> `pre-act ResNet-164`; '+drop' if dropout."""
    name = next((shown + model[len(prefix):] for prefix, _, shown in _MODEL_PREFIXES
                 if model.lower().startswith(prefix)), model)
    return name + ("+drop" if dropout > 0 else "")
