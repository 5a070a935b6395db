"""Data: the `DATASETS` table, sources (image trees, torchvision files), the decoded-image cache,
splits, epoch-seeded loaders (CPU DataLoader, device-resident) and the `CIFARData` DataModule."""

from wrn.data.augment import CropFlip, eval_views, normalize
from wrn.data.datamodule import CIFARData
from wrn.data.datasets import DATASETS, DataError, DatasetFacts
from wrn.data.loaders import AugmentedImages, DeviceLoader, StackedLoader
from wrn.data.sampling import mix_seed
from wrn.data.splits import Split

__all__ = ["AugmentedImages", "CIFARData", "CropFlip", "DATASETS", "DataError", "DatasetFacts", "DeviceLoader",
           "Split", "StackedLoader", "eval_views", "mix_seed", "normalize"]
