"""`RunRecorder`: the callback that keeps a run's metrics.json and epochs.jsonl (see wrn.runs).

A fused multi-seed run (model.copies = S > 1) also keeps, for each copy, `seed-<s>/metrics.json`
and `seed-<s>/epochs.jsonl` exactly as the separate run with seed s would; the top-level record
then holds the mean over copies and names the copies' folders in `copy_dirs`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import SaveConfigCallback

from wrn import complexity
from wrn.runs import (CONFIG_FILE, EPOCHS_FILE, EVALUATION_FILE, METRICS_FILE, RecordError,
                      append_jsonl, atomic_write_json, atomic_write_text, drop_epochs_from,
                      read_jsonl, read_metrics, run_identity)

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5")


def device_name(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{trainer.num_devices * trainer.num_nodes}"
    return f"cpu ({torch.get_num_threads()} threads)"


def failure(exception: BaseException) -> str:
    """What stopped a run, for its record: the exception's type and one-line reason; a signal by
    name (SIGTERM, or SIGINT for Ctrl-C)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from wrn.errors import one_line_error

    if isinstance(exception, SIGTERMException):
        return "interrupted by SIGTERM; resume with --ckpt_path last"
    if isinstance(exception, KeyboardInterrupt):
        return "interrupted by SIGINT (Ctrl-C); resume with --ckpt_path last"
    text = str(exception).strip()
    reason = one_line_error(exception) if isinstance(exception, Exception) else None
    return f"{type(exception).__name__}: {reason or (text.splitlines()[0] if text else '')}"



def _scalar(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


@dataclass(frozen=True)
class RecordView:
    """Where one record goes and which logged keys are its own: '' for a single run, '_c<i>' for
    copy i of a fused run (val_acc_c2 is copy 2's val_acc)."""

    folder: Path
    seed: int | None
    suffix: str

    def metric(self, metrics: dict, key: str) -> float | None:
        return _scalar(metrics, key + self.suffix)


class RunRecorder(L.Callback):
    """Rewrites metrics.json atomically after every epoch and appends one line to epochs.jsonl.

    Best accuracy, wall time and throughput survive a resume through the checkpoint (state_dict).
    A run that raises is recorded as failed, with the error and where it happened.
    """

    def __init__(self):
        self.best_val_acc: dict[str, float] = {}  # per view suffix
        self.wall_seconds = 0.0  # fit time summed over resumed sessions
        self.train_seconds = 0.0  # training-loop time only, for images/s
        self.train_images = 0  # images of all copies together
        self.record: dict = {}
        self.views: list[RecordView] = []

    # -- persistence across resume ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"best_val_acc": self.best_val_acc, "wall_seconds": self._elapsed_wall(),
                "train_seconds": self.train_seconds, "train_images": self.train_images}

    def load_state_dict(self, state: dict) -> None:
        self.best_val_acc = dict(state.get("best_val_acc") or {})
        self.wall_seconds = state.get("wall_seconds", 0.0)
        self.train_seconds = state.get("train_seconds", 0.0)
        self.train_images = state.get("train_images", 0)

    # -- fit ----------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.views:  # the test at the end of a fit: same run, same record
            return
        self.run_dir = Path(trainer.default_root_dir)
        seed, copies = pl_module.seed, pl_module.copies
        self.views = [RecordView(self.run_dir, seed, "")] if copies == 1 else [
            RecordView(self.run_dir / f"seed-{pl_module.first_seed + i}", pl_module.first_seed + i, f"_c{i}")
            for i in range(copies)]
        if trainer.is_global_zero:
            self.record = self._identity(trainer, pl_module, seed)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session_start = time.perf_counter()
        self._session_wall_offset = self.wall_seconds
        if not trainer.is_global_zero:
            return
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({k: self.record[k] for k in ("params", "flops")})
        self._write_all(trainer, trainer.current_epoch, "running", None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run redoes every epoch after its checkpoint's: lines that a killed attempt wrote
        # for those epochs (it died before checkpointing them) would otherwise appear twice.
        if trainer.is_global_zero:
            for view in self.views:
                drop_epochs_from(view.folder / EPOCHS_FILE, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_images += batch[1].numel()  # labels: (N,) or (N, copies)

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
        if trainer.sanity_checking:
            return
        for view in self.views:
            val_acc = view.metric(trainer.callback_metrics, "val_acc")
            if val_acc is not None:
                self.best_val_acc[view.suffix] = max(val_acc, self.best_val_acc.get(view.suffix, 0.0))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_train_timer(trainer)
        if not trainer.is_global_zero:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        identity = {k: self.record[k] for k in ("model", "depth", "widen_factor", "dropout")}
        for view in self.views:
            line = {k: view.metric(trainer.callback_metrics, k) for k in EPOCH_KEYS}
            append_jsonl(view.folder / EPOCHS_FILE, {
                **identity, "seed": view.seed, "epoch": trainer.current_epoch,
                "step": trainer.global_step, "wall_seconds": round(self._elapsed_wall(), 3), "lr": lr,
                **{k: v for k, v in line.items() if v is not None}})
        self._write_all(trainer, trainer.current_epoch + 1, "running", None, trainer.callback_metrics)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._write_all(trainer, trainer.current_epoch, "finished", None)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not trainer.is_global_zero or not self.record or trainer.state.fn != "fit":
            return
        where = f"(epoch {trainer.current_epoch}, step {trainer.global_step})"
        self._write_all(trainer, trainer.current_epoch, "failed", f"{failure(exception)} {where}")

    # -- test ---------------------------------------------------------------------------------------
    def record_test(self, trainer: L.Trainer, pl_module: L.LightningModule, key: str) -> None:
        """After a fit's test: its test_acc (per copy, and their mean) into metrics.json as `key`
        (test_acc for the final weights, test_acc_best for the best-validation checkpoint)."""
        if not trainer.is_global_zero:
            return
        for folder, value in self._per_folder(trainer.callback_metrics, "test_acc"):
            previous = self._previous(folder) or {}
            atomic_write_json(folder / METRICS_FILE, {**previous, key: value,
                                                      "test_view": pl_module.eval_view})

    def record_evaluation(self, trainer: L.Trainer, pl_module: L.LightningModule, folder: Path,
                          stage: str, ckpt_path: str | None) -> None:
        """`wrn validate` / `wrn test`: a record of its own, folder/evaluation.json, beside its
        metrics.csv and config.yaml; the run's own files are never touched."""
        if not trainer.is_global_zero:
            return
        prefix = "val" if stage == "validate" else "test"
        metrics = trainer.callback_metrics
        record = {**self.record, "stage": stage, "ckpt_path": ckpt_path,
                  "eval_view": pl_module.eval_view, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  **{f"{prefix}_{k}": _scalar(metrics, f"{prefix}_{k}") for k in ("acc", "loss", "top5")}}
        if len(self.views) > 1:
            record["copies"] = {str(view.seed): view.metric(metrics, f"{prefix}_acc") for view in self.views}
        atomic_write_json(Path(folder) / EVALUATION_FILE, record)

    def _per_folder(self, metrics: dict, key: str) -> list[tuple[Path, float | None]]:
        """(folder, value of key) for every record of the run: each copy's, then the mean's."""
        folders = [(view.folder, view.metric(metrics, key)) for view in self.views]
        if len(self.views) > 1:
            folders.append((self.run_dir, _scalar(metrics, key)))
        return folders

    # -- the record ---------------------------------------------------------------------------------
    def _identity(self, trainer: L.Trainer, pl_module: L.LightningModule, seed: int | None) -> dict:
        spec = pl_module.spec
        reference = spec.build()  # a fresh single CPU copy: fvcore traces it, the trained one stays
        return {**run_identity(spec, seed, trainer.max_epochs),
                "params": complexity.count_params(reference), "flops": complexity.fvcore_macs(reference),
                "device": device_name(trainer)}

    def _elapsed_wall(self) -> float:
        start = getattr(self, "_session_start", None)
        return self.wall_seconds if start is None else self._session_wall_offset + time.perf_counter() - start

    @staticmethod
    def _previous(folder: Path) -> dict | None:
        try:
            return read_metrics(folder)
        except RecordError as exc:
            # Damaged: said, then rewritten whole from this run's own state (best_val_acc and the
            # times come with the checkpoint) and its last recorded epoch (final_val_acc).
            warnings.warn(f"{exc}; rewriting it from the run's checkpoint and {EPOCHS_FILE}")
            lines, _ = read_jsonl(folder / EPOCHS_FILE)
            return {"final_val_acc": lines[-1].get("val_acc")} if lines else None

    def _write_all(self, trainer: L.Trainer, epochs: int, status: str, error: str | None,
                   metrics: dict | None = None) -> None:
        images_per_sec = self.train_images / self.train_seconds if self.train_seconds else None
        shared = {**self.record, "status": status, "error": error, "epochs": epochs,
                  "global_step": trainer.global_step, "wall_seconds": round(self._elapsed_wall(), 3)}
        copies = len(self.views) if self.views[0].suffix else 1
        per_copy_rate = round(images_per_sec / copies, 1) if images_per_sec else None
        for view in self.views:
            final = view.metric(metrics, "val_acc") if metrics is not None else None
            self._write(view.folder, {**shared, "seed": view.seed, "images_per_sec": per_copy_rate},
                        self.best_val_acc.get(view.suffix), final)
        if copies > 1:
            best = [self.best_val_acc[v.suffix] for v in self.views if v.suffix in self.best_val_acc]
            final = _scalar(metrics, "val_acc") if metrics is not None else None
            self._write(self.run_dir, {
                **shared, "copies": copies, "copy_dirs": [v.folder.name for v in self.views],
                "images_per_sec": round(images_per_sec, 1) if images_per_sec else None},
                sum(best) / len(best) if best else None, final)

    def _write(self, folder: Path, fields: dict, best: float | None, final: float | None) -> None:
        previous = self._previous(folder) or {}
        atomic_write_json(folder / METRICS_FILE, {
            **previous, **fields, "best_val_acc": best,
            "final_val_acc": final if final is not None else previous.get("final_val_acc"),
            # Of the final weights: gone while they change, set again by the test at the end.
            "test_acc": None, "test_acc_best": None})


class ConfigSaver(SaveConfigCallback):
    """Saves the command's config.yaml atomically into its own record folder (the run folder for
    fit, RUN/eval/<command>-<time>/ for evaluations), with the values it was given before
    resolution (`as_given`: loggers and ckpt_path), so the file replays on any machine."""

    def __init__(self, parser, config, folder: Path, as_given: dict, **kwargs):
        super().__init__(parser, config, **kwargs)
        self.folder, self.as_given = Path(folder), as_given

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            config = self.config.clone()
            for key, value in self.as_given.items():
                if key in config:
                    config[key] = value
            atomic_write_text(self.folder / CONFIG_FILE, self.parser.dump(config, skip_none=False))
        self.already_saved = trainer.strategy.broadcast(True)
