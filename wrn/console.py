"""What `wrn fit | validate | test | predict` print: no known third-party noise, a progress bar
counting epochs from 1, a warning before a CPU run of days, a summary at the end."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from wrn import rundir
from wrn.data.datasets import DataError
from wrn.data.sources import train_images, tree_count
from wrn.report.text import duration

# (message regex, module regex, category): each one exact third-party warning, nothing broader.
KNOWN_WARNINGS = (
    # Lightning's pytree helper builds a LeafSpec, which torch >= 2.10 deprecates.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree",
     FutureWarning),
    # fvcore scripts its focal-loss helpers with torch.jit when imported (wrn never scripts).
    (r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script", FutureWarning),
    # Epoch metrics reach every logger whatever log_every_n_steps (LitClassifier logs on_epoch).
    (r"The number of training batches \(\d+\) is smaller than the logging interval",
     r"lightning\.pytorch\.loops\.fit_loop", Warning),
    # The run folder holds its record, lock and config before the CSV logger starts; on a resume
    # the CSV log restarts at the resumed epoch, and epochs.jsonl keeps every epoch.
    (r"Experiment logs directory .* exists and is not empty", r"lightning\.fabric\.loggers\.csv_logs",
     Warning),
)
# Where Lightning's rank-zero messages are logged (the one of whichever package imported last),
# and those of its messages that the end-of-run summary says better, or that say nothing.
LIGHTNING_INFO_LOGGERS = ("lightning.fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                          "lightning.pytorch.trainer.connectors.signal_connector")
QUIET_PREFIXES = ("💡 Tip: For seamless cloud logging", "GPU available:", "TPU available:",
                  "Received SIGTERM", "[rank: 0] Received SIGTERM", "Detected KeyboardInterrupt",
                  "HPU available:", "Loading `train_dataloader` to estimate",
                  "Restoring states from the checkpoint path", "Loaded model weights from the checkpoint",
                  "`Trainer.fit` stopped:")

SLOW_RUN_HOURS = 12.0  # a CPU run estimated longer than this is announced before it starts
ESTIMATE_FROM_IMAGES = 1_000_000  # epochs x images below this never pay for the speed probe
PROBE_BATCH = 4  # images per timed training step of the speed probe (a few seconds for WRN-28-10)


def _not_known_noise(record: logging.LogRecord) -> bool:
    return not str(record.msg).lstrip().startswith(QUIET_PREFIXES)


def quiet_known_noise() -> None:
    """Hide the few messages a `wrn` run prints that say nothing about the run: each matched by
    its text and the module it comes from, so every other warning still shows."""
    for message, module, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in LIGHTNING_INFO_LOGGERS:
        logging.getLogger(name).addFilter(_not_known_noise)  # added once, however often called


def _one_based(epoch: int, max_epochs: int | None) -> str:
    """'Epoch 2/2' for the second of two epochs (Lightning shows 'Epoch 1/1': 0-based index over
    the last index)."""
    return f"Epoch {epoch + 1}" + (f"/{max_epochs}" if max_epochs is not None and max_epochs >= 0 else "")


class RichEpochBar(RichProgressBar):
    """Lightning's rich bar, epochs counted from 1 up to max_epochs, without the logger's version."""

    def configure_columns(self, trainer: L.Trainer) -> list:
        columns = super().configure_columns(trainer)  # its speed column reads 0.00it/s on a batch
        return columns[:-1] if trainer.state.fn == "predict" else columns

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        if self.progress is not None and self.train_progress_bar_id is not None:
            description = _one_based(trainer.current_epoch, trainer.max_epochs)
            self.progress.update(self.train_progress_bar_id,
                                 description=f"{description:{len(self.validation_description)}}")
            self.refresh()


def has_progress_bar(callbacks: list) -> bool:
    return any(isinstance(c, ProgressBar) for c in callbacks)


def progress_bar() -> L.Callback:
    return RichEpochBar()


def put_package_options_first(parser) -> None:
    """`wrn fit --help` lists the model's and the data's options before Lightning's Trainer's,
    under a usage line of one line rather than every option."""
    parser.usage = ("%(prog)s [-h] [-c CONFIG] [--print_config] [--model.* ...] [--data.* ...] "
                    "[--trainer.* ...]")
    trainer = parser.groups.get("trainer") if hasattr(parser, "groups") else None
    if trainer is not None and trainer in parser._action_groups:
        parser._action_groups.remove(trainer)
        parser._action_groups.append(trainer)


def planned_train_images(datamodule) -> int:
    """Training images per epoch the data config asks for, before decoding any; 0 where the root
    cannot hold the data, so that the data step names the root, not an estimate of a run that
    cannot start."""
    root, subset = getattr(datamodule, "root_path", None), getattr(datamodule, "subset", None)
    if root is not None:
        try:
            datamodule.check_root()  # what the data step would name first
        except DataError:
            return 0
        if (root / "train").is_dir():
            if tree_count(root / "train", subset) is None:  # a tree without images
                return 0
        elif not getattr(datamodule, "download", True) and (not root.is_dir() or not any(root.iterdir())):
            return 0  # nothing to read and nothing to fetch
    total = train_images(getattr(datamodule, "dataset", "cifar10"), root, subset,
                         getattr(datamodule, "num_classes", 10))
    return max(0, total - getattr(datamodule, "val_size", 0))


def cpu_images_per_second(model: L.LightningModule, batch: int = PROBE_BATCH) -> float:
    """Training images/s of a fresh copy of the model's network on this CPU: one warm-up step and
    one timed step. The copy, its gradients and the RNG draws stay out of the run."""
    with torch.random.fork_rng(devices=[]):
        net = model.spec.build()
        images = torch.randn(batch, 3, 32, 32)
        labels = torch.zeros(batch, dtype=torch.long)
        for _ in range(2):
            start = time.perf_counter()
            torch.nn.functional.cross_entropy(net(images), labels).backward()
            elapsed = time.perf_counter() - start
    return batch / max(elapsed, 1e-9)


def slow_cpu_warning(trainer: L.Trainer, model: L.LightningModule, datamodule) -> str | None:
    """A warning with the estimated duration when a CPU fit would run longer than
    SLOW_RUN_HOURS; None for GPU runs and for anything short."""
    if trainer.strategy.root_device.type != "cpu" or not hasattr(model, "spec"):
        return None
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
    images = epochs * planned_train_images(datamodule) * getattr(model, "copies", 1)
    if images < ESTIMATE_FROM_IMAGES:
        return None
    rate = cpu_images_per_second(model)
    hours = images / rate / 3600
    if hours < SLOW_RUN_HOURS:
        return None
    how_long = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.0f} hours"
    return (f"no GPU: {model.spec.name} for {epochs} epochs of {images // epochs:,} images would "
            f"take about {how_long} on this CPU ({rate:.3g} training images/s measured just now)")


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _log_lines(trainer: L.Trainer) -> list[str]:
    return [f"  logs:         {type(lg).__name__} {lg.log_dir}" for lg in trainer.loggers
            if getattr(lg, "log_dir", None)]


def fit_summary(trainer: L.Trainer) -> str:
    """What the fit achieved and where it left everything, from its run record (metrics.json)."""
    run_dir = Path(trainer.default_root_dir)
    record = rundir.read_record(run_dir)
    rate = record.get("images_per_sec")
    lines = [f"{record.get('model', 'model')} {record.get('status', 'finished')}: "
             f"{record.get('epochs', trainer.current_epoch)} epochs in {duration(record.get('wall_seconds'))}"
             + (f", {rate:,.0f} training images/s" if rate else "")
             + (f" ({record['device']})" if record.get("device") else ""),
             f"  validation accuracy: best {_percent(record.get('best_val_acc'))}, "
             f"final {_percent(record.get('final_val_acc'))}"]
    tests = [f"{label} {_percent(record[key])}"
             for key, label in (("test_acc", "final weights"), ("test_acc_best", "best checkpoint"))
             if record.get(key) is not None]
    if tests:
        lines.append(f"  test accuracy: {', '.join(tests)}")
    lines.append(f"  record:       {rundir.record_path(run_dir)}")
    checkpoints = sorted({Path(cb.dirpath) for cb in trainer.checkpoint_callbacks
                          if getattr(cb, "dirpath", None)})
    lines += [f"  checkpoints:  {folder}" for folder in checkpoints]
    return "\n".join(lines + _log_lines(trainer))


def evaluation_summary(trainer: L.Trainer, seconds: float, images: int | None) -> str:
    """The test accuracy just measured, its speed, and which checkpoint and run it belongs to."""
    test_acc = trainer.callback_metrics.get("test_acc")
    value = None if test_acc is None else float(test_acc)
    speed = f", {images / seconds:,.0f} images/s" if images and seconds > 0 else ""
    count = f" of {images:,} images" if images else ""
    lines = [f"test accuracy {_percent(value)}{count} in {duration(seconds)}{speed}"]
    if trainer.ckpt_path:
        lines.append(f"  checkpoint:   {trainer.ckpt_path}")
    lines.append(f"  run:          {trainer.default_root_dir}")
    return "\n".join(lines + _log_lines(trainer))


def count_test_images(datamodule) -> int | None:
    split = getattr(datamodule, "test_set", None)
    return len(split.labels) if split is not None else None


def say(text: str | None, stream=None) -> None:
    if text:
        print(text, file=stream or sys.stdout, flush=True)
