"""`RunRecorder`: the callback that keeps a run's metrics.json and epochs.jsonl (see wrn.runs)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import torch

from wrn import complexity
from wrn.runs import (EPOCHS_FILE, METRICS_FILE, RecordError, append_jsonl, atomic_write_json,
                      read_metrics)


def device_name(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{trainer.num_devices * trainer.num_nodes}"
    return f"cpu ({torch.get_num_threads()} threads)"


def _scalar(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


class RunRecorder(L.Callback):
    """Rewrites metrics.json atomically after every epoch and appends one line to epochs.jsonl.

    Best accuracy, wall time and throughput survive a resume through the checkpoint (state_dict).
    A run that raises is recorded as failed, with the error and where it happened.
    """

    def __init__(self):
        self.best_val_acc: float | None = None
        self.wall_seconds = 0.0  # fit time summed over resumed sessions
        self.train_seconds = 0.0  # training-loop time only, for images/s
        self.train_images = 0
        self.record: dict = {}

    # -- persistence across resume ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"best_val_acc": self.best_val_acc, "wall_seconds": self._elapsed_wall(),
                "train_seconds": self.train_seconds, "train_images": self.train_images}

    def load_state_dict(self, state: dict) -> None:
        self.best_val_acc = state.get("best_val_acc")
        self.wall_seconds = state.get("wall_seconds", 0.0)
        self.train_seconds = state.get("train_seconds", 0.0)
        self.train_images = state.get("train_images", 0)

    # -- fit ----------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.run_dir = Path(trainer.default_root_dir)
        if trainer.is_global_zero:
            self.record = self._identity(trainer, pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session_start = time.perf_counter()
        self._session_wall_offset = self.wall_seconds
        if not trainer.is_global_zero:
            return
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({k: self.record[k] for k in ("params", "flops")})
        self._write(trainer, trainer.current_epoch, status="running", error=None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_images += len(batch[1])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_train_timer(trainer)

    def _close_train_timer(self, trainer: L.Trainer) -> None:
        start = getattr(self, "_epoch_start", None)
        if trainer.sanity_checking or start is None:
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.train_seconds += time.perf_counter() - start
        self.train_images += self._epoch_images
        self._epoch_start = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before ModelCheckpoint saves (it runs last), so a resumed run keeps this epoch's best.
        val_acc = _scalar(trainer.callback_metrics, "val_acc")
        if not trainer.sanity_checking and val_acc is not None:
            self.best_val_acc = max(val_acc, self.best_val_acc or 0.0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_train_timer(trainer)
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        line = {key: _scalar(metrics, key) for key in
                ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5")}
        line = {k: v for k, v in line.items() if v is not None}
        line["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        identity = {k: self.record[k] for k in ("model", "seed", "depth", "widen_factor", "dropout")}
        append_jsonl(self.run_dir / EPOCHS_FILE, {
            **identity, "epoch": trainer.current_epoch, "step": trainer.global_step,
            "wall_seconds": round(self._elapsed_wall(), 3), **line})
        self._write(trainer, trainer.current_epoch + 1, status="running", error=None,
                    final_val_acc=line.get("val_acc"))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._write(trainer, trainer.current_epoch, status="finished", error=None)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not trainer.is_global_zero or not self.record or trainer.state.fn != "fit":
            return
        reason = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
        error = f"{type(exception).__name__}: {reason} (epoch {trainer.current_epoch}, step {trainer.global_step})"
        self._write(trainer, trainer.current_epoch, status="failed", error=error)

    # -- test ---------------------------------------------------------------------------------------
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        test_acc = _scalar(trainer.callback_metrics, "test_acc")
        previous = self._previous() or {**self.record, "status": "finished", "error": None}
        atomic_write_json(self.run_dir / METRICS_FILE, {
            **previous, "test_acc": test_acc, "test_view": pl_module.eval_view})

    # -- the record ---------------------------------------------------------------------------------
    def _identity(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        spec = pl_module.spec
        reference = spec.build()  # a fresh CPU copy: fvcore traces it, the trained one stays put
        return {
            "model": spec.name, "family": spec.family, "model_args": spec.args,
            "depth": spec.args.get("depth"), "widen_factor": spec.args.get("widen_factor", 1),
            "dropout": spec.args.get("dropout", 0.0),
            "params": complexity.count_params(reference), "flops": complexity.fvcore_macs(reference),
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
            "device": device_name(trainer), "max_epochs": trainer.max_epochs,
        }

    def _elapsed_wall(self) -> float:
        start = getattr(self, "_session_start", None)
        return self.wall_seconds if start is None else self._session_wall_offset + time.perf_counter() - start

    def _previous(self) -> dict | None:
        try:
            return read_metrics(self.run_dir)
        except RecordError:
            return None  # damaged: rewritten whole from this run's own state below

    def _write(self, trainer: L.Trainer, epochs: int, status: str, error: str | None,
               final_val_acc: float | None = None) -> None:
        previous = self._previous() or {}
        record = {
            **previous, **self.record, "status": status, "error": error,
            "best_val_acc": self.best_val_acc,
            "final_val_acc": final_val_acc if final_val_acc is not None else previous.get("final_val_acc"),
            "test_acc": previous.get("test_acc"),
            "epochs": epochs, "global_step": trainer.global_step,
            "wall_seconds": round(self._elapsed_wall(), 3),
            "images_per_sec": round(self.train_images / self.train_seconds, 1) if self.train_seconds else None,
        }
        atomic_write_json(self.run_dir / METRICS_FILE, record)

