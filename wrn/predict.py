"""`wrn predict`: class probabilities for the test split or a folder of one's own images, as a CSV. Images
of any size are resized (shorter side to 32 pixels), centre-cropped and normalised as the training split."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from wrn import console
from wrn.data.augment import normalize
from wrn.data.datasets import DATASETS
from wrn.data.sources import decode_image
from wrn.files import atomic_write_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_OUT = "predictions.csv"  # in the evaluation's folder, RUN/eval/predict-<time>/


def list_images(folder: str | Path) -> tuple[list[Path], int]:
    """Every image file under `folder` (recursively, sorted), and how many other files it holds
    (skipped); ValueError when there is no image."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"--predictions.images {folder}: not a folder")
    files = [p for p in root.rglob("*") if not p.is_dir()]
    paths = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"--predictions.images {folder}: no {', '.join(IMAGE_SUFFIXES)} files in it")
    return paths, len(files) - len(paths)


def csv_name(path: Path, root: Path) -> str:
    """`path` under `root`, for the CSV; a name that is not UTF-8 is written with backslash escapes."""
    name = str(path.relative_to(root))
    escaped = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if escaped != name:
        console.say(f"warning: {root / escaped}: the file name is not UTF-8; its CSV row names it with "
                    "backslash escapes", sys.stderr)
    return escaped


class FolderPredictData(L.LightningDataModule):
    """Predicts a folder of images with the statistics and class names of the training `CIFARData`."""

    def __init__(self, folder: str | Path, training: L.LightningDataModule):
        super().__init__()
        self.training, (self.paths, self.skipped) = training, list_images(folder)
        self.image_names = [csv_name(p, Path(folder).expanduser()) for p in self.paths]

    # The CSV's class names and the evaluation's "zero" padding are the training data's.
    classes = property(lambda self: self.training.classes)
    dataset = property(lambda self: self.training.dataset)
    zero_fill = property(lambda self: self.training.zero_fill)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.training.mean is None:
            self.training.trainer = self.trainer
            self.training.prepare_data()
            self.training.setup("fit")

    def predict_dataloader(self) -> DataLoader:
        mean, std = self.training.mean, self.training.std
        return DataLoader(self.paths, batch_size=self.training.eval_batch_size, collate_fn=lambda paths:
                          torch.stack([normalize(torch.from_numpy(decode_image(path, resize=True))
                                                 .permute(2, 0, 1), mean, std) for path in paths]))


class PredictionWriter(BasePredictionWriter):
    """Writes `wrn predict`'s class probabilities to a CSV (atomically, when prediction ends).

    Args:
        out: CSV file to write; None = predictions.csv in this evaluation's own folder,
            RUN/eval/predict-<time>/ (the run's own files are never changed).
        images: folder of images to predict (any size; searched recursively): files without an
            image suffix, and FIFOs and the like, are skipped and counted; an unreadable image
            stops the run, naming it. None = the test split of the data config.
    """

    def __init__(self, out: Optional[str] = None, images: Optional[str] = None):
        super().__init__(write_interval="epoch")
        self.out, self.images = out, images
        self.written: Optional[Path] = None
        self.summary = ""

    def path(self, trainer: L.Trainer) -> Path:
        return Path(self.out).expanduser() if self.out else Path(trainer.default_root_dir) / DEFAULT_OUT

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict" and trainer.world_size > 1:  # each process would see only its share
            raise ValueError(f"wrn predict writes its CSV from one process; got {trainer.world_size} "
                             "(pass --trainer.devices 1)")
        if stage == "predict" and (path := self.path(trainer)).is_dir():
            raise ValueError(f"--predictions.out {path} is a folder; name the CSV file to write, "
                             f"e.g. {path / DEFAULT_OUT}")

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions: Sequence, batch_indices: Sequence) -> None:
        if not predictions:
            return
        probs = torch.cat([batch.float().cpu() for batch in predictions])
        if probs.ndim == 3:  # a fused network: (N, copies, classes), the copies' mean
            probs = probs.mean(1)
        data = trainer.datamodule  # a folder's image names, else the test split's indices
        rows = getattr(data, "image_names", None) or [str(i) for i in range(len(probs))]
        path = self.path(trainer)
        atomic_write_text(path, predictions_csv(probs, rows, data.classes or DATASETS[data.dataset].classes))
        self.written = path
        skipped = getattr(data, "skipped", 0)
        self.summary = f"{_count(len(rows), 'image')} predicted" + (
            f"; {_count(skipped, 'other file')} in {self.images} skipped (no image suffix, or not a "
            "regular file)" if skipped else "")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def predictions_csv(probs: torch.Tensor, rows: Sequence[str], classes: Sequence[str]) -> str:
    """image, predicted, p_<class>...: one line per image, probabilities to 6 decimals. Columns past
    `classes` (labels a tree with fewer classes than the network never trains) are named class<i>."""
    classes = [*classes[:probs.shape[1]], *(f"class{i}" for i in range(len(classes), probs.shape[1]))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "predicted", *(f"p_{name}" for name in classes)])
    for name, row in zip(rows, probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        writer.writerow([name, classes[best], *(f"{p:.6f}" for p in row)])
    return buffer.getvalue()
