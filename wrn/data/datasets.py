"""The datasets `wrn` knows: one table that every choice list, figure title and loader reads, so a
new dataset is one `DATASETS` entry (and, optionally, a `configs/data/<name>.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

IMAGE_SIZE = 32  # pixels per side of every supported dataset


class DataError(ValueError):
    """A data problem the user must fix (bad root, layout, image, split size); always one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class DatasetFacts:
    """What differs between datasets: class count, display name, and how torchvision stores them."""

    num_classes: int
    title: str  # display name in figures and tables, e.g. "CIFAR-10"
    torchvision_name: str  # class in torchvision.datasets
    train_images: int  # images in the training split
    test_images: int
    classes: tuple[str, ...] = ()  # names in torchvision's label order; () = class<i>
    split_names: Optional[tuple[str, str]] = None  # torchvision's `split=` for (train, test); None: `train=`
    labels_attribute: str = "targets"  # attribute of the torchvision dataset that holds the labels

    def torchvision_split(self, train: bool) -> dict:
        return {"train": train} if self.split_names is None else {"split": self.split_names[not train]}


DATASETS: dict[str, DatasetFacts] = {
    "cifar10": DatasetFacts(10, "CIFAR-10", "CIFAR10", 50_000, 10_000, (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    "cifar100": DatasetFacts(100, "CIFAR-100", "CIFAR100", 50_000, 10_000),
    "svhn": DatasetFacts(10, "SVHN", "SVHN", 73_257, 26_032, tuple("0123456789"),
                         split_names=("train", "test"), labels_attribute="labels"),
}
DatasetName = Literal[tuple(DATASETS)]  # the `data.dataset` choices, from the table


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DataError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
