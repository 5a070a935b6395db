"""`RunRecorder`: the callback that keeps a run's record (metrics.json, epochs.jsonl) every epoch.

A fused run (model.copies = S > 1) also keeps each copy's record in its seed folder, as the
separate run with that seed would; the run's own record holds the mean over copies.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from wrn import complexity, rundir

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5")


def device_name(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{trainer.num_devices * trainer.num_nodes}"
    return f"cpu ({torch.get_num_threads()} threads)"


def ending(exception: BaseException) -> tuple[str, str]:
    """(status, reason) of a run that raised: a signal interrupts it (resumable), anything else
    fails it."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from wrn.errors import one_line_error

    if isinstance(exception, SIGTERMException):
        return rundir.INTERRUPTED, "interrupted by SIGTERM; resume with --ckpt_path last"
    if isinstance(exception, KeyboardInterrupt):
        return rundir.INTERRUPTED, "interrupted by SIGINT (Ctrl-C); resume with --ckpt_path last"
    text = str(exception).strip()
    reason = one_line_error(exception) if isinstance(exception, Exception) else None
    return rundir.FAILED, f"{type(exception).__name__}: {reason or (text.splitlines()[0] if text else '')}"


def _scalar(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


@dataclass(frozen=True)
class RecordView:
    """One record and its logged keys: suffix '' for a single run, '_c<i>' for copy i of a fused
    run (val_acc_c2 is copy 2's val_acc)."""

    folder: Path
    seed: int | None
    suffix: str

    def metric(self, metrics: dict, key: str) -> float | None:
        return _scalar(metrics, key + self.suffix)


class RunRecorder(L.Callback):
    """Best accuracy, wall time and throughput survive a resume through the checkpoint."""

    STATE = ("best_val_acc", "best_epoch", "wall_seconds", "train_seconds", "train_images")

    def __init__(self):
        self.best_val_acc: dict[str, float] = {}  # per view suffix
        self.best_epoch: dict[str, int] = {}  # per view suffix: the epoch of best_val_acc
        self.wall_seconds = 0.0  # fit time summed over resumed sessions
        self.train_seconds = 0.0  # training-loop time only, for images/s
        self.train_images = 0  # images of all copies together
        self.record: dict = {}
        self.views: list[RecordView] = []
        self.settings: dict = {}  # the command's settings (wrn.rundir.run_settings), set by the CLI
        self.test_follows = False  # the fit ends on the test split: finished once that is recorded
        self._open = False  # between the fit's start and its record's last word
        self.lock = None  # this process's hold on the run folder (wrn.rundir.hold_lock)

    def state_dict(self) -> dict:
        return {**{key: getattr(self, key) for key in self.STATE},
                "wall_seconds": self._elapsed_wall()}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update({key: state[key] for key in self.STATE})

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.views:  # the test at the end of a fit: same run, same record
            return
        self.run_dir = Path(trainer.default_root_dir)
        seed, copies = pl_module.seed, pl_module.copies
        self.views = [RecordView(self.run_dir, seed, "")] if copies == 1 else [
            RecordView(rundir.copy_dir(self.run_dir, pl_module.first_seed + i), pl_module.first_seed + i, f"_c{i}")
            for i in range(copies)]
        if trainer.is_global_zero:
            self.record = self._identity(trainer, pl_module, seed)
        self._open = stage == "fit"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session_start = time.perf_counter()
        self._session_wall_offset = self.wall_seconds
        if not trainer.is_global_zero:
            return
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({k: self.record[k] for k in ("params", "macs")})
        self._open = True
        self._write_all(trainer, trainer.current_epoch, rundir.RUNNING, None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run redoes every epoch after its checkpoint's: lines a killed attempt wrote
        # for those epochs would otherwise appear twice.
        if trainer.is_global_zero:
            for view in self.views:
                rundir.drop_epochs_from(view.folder, trainer.current_epoch)

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
        self.train_images += self._epoch_images * trainer.world_size  # every process, as many
        self._epoch_start = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before ModelCheckpoint saves (it runs last), so a resumed run keeps this epoch's best.
        if trainer.sanity_checking:
            return
        for view in self.views:
            val_acc = view.metric(trainer.callback_metrics, "val_acc")
            if val_acc is not None and val_acc > self.best_val_acc.get(view.suffix, -1.0):
                self.best_val_acc[view.suffix] = val_acc
                self.best_epoch[view.suffix] = trainer.current_epoch
                if view.suffix and trainer.is_global_zero:  # a fused copy: its own best weights
                    self._save_copy(trainer, pl_module, view)

    def _save_copy(self, trainer: L.Trainer, pl_module: L.LightningModule, view: RecordView) -> None:
        """Copy i's network as the checkpoint its separate run would have as its best.ckpt."""
        from wrn.models.fused import unfuse

        single = unfuse(getattr(pl_module.net, "_orig_mod", pl_module.net))[int(view.suffix[2:])]
        checkpoint = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                      "state_dict": {f"net.{k}": v for k, v in single.state_dict().items()},
                      "hyper_parameters": {**pl_module.hparams, "copies": 1, "seed": view.seed}}
        pl_module.on_save_checkpoint(checkpoint)
        rundir.save_checkpoint(checkpoint, rundir.best_checkpoint(view.folder))

    def best_is_final(self, trainer: L.Trainer) -> bool:
        return all(self.best_epoch.get(v.suffix) == trainer.current_epoch - 1 for v in self.views)

    def restore_copy_bests(self, pl_module: L.LightningModule) -> None:
        """A fused network whose copy i holds copy i's own best weights (each copy's best epoch)."""
        from wrn.load import network_from_checkpoint
        from wrn.models.fused import fuse

        singles = [network_from_checkpoint(rundir.best_checkpoint(v.folder))[0] for v in self.views]
        net = getattr(pl_module.net, "_orig_mod", pl_module.net)
        net.load_state_dict(fuse(singles).state_dict())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_train_timer(trainer)
        if not trainer.is_global_zero:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        identity = {k: self.record[k] for k in ("model", "depth", "widen_factor", "dropout")}
        for view in self.views:
            line = {k: view.metric(trainer.callback_metrics, k) for k in EPOCH_KEYS}
            rundir.append_epoch(view.folder, {
                **identity, "seed": view.seed, "epoch": trainer.current_epoch,
                "step": trainer.global_step, "wall_seconds": round(self._elapsed_wall(), 3), "lr": lr,
                **{k: v for k, v in line.items() if v is not None}})
        self._write_all(trainer, trainer.current_epoch + 1, rundir.RUNNING, None, trainer.callback_metrics)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._write_all(trainer, trainer.current_epoch,
                            rundir.RUNNING if self.test_follows else rundir.FINISHED, None)
        self._open = self.test_follows

    def on_test_batch_end(self, trainer: L.Trainer, *args) -> None:
        # Lightning's evaluation loops note a SIGTERM but go on; the test that ends a fit stops.
        if self._open and trainer.received_sigterm:
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException()

    def finish(self, trainer: L.Trainer) -> None:
        """The record is whole (the test split evaluated): the run is finished."""
        self._open = False
        if trainer.is_global_zero:
            for view in self._records():
                rundir.write_metrics(view.folder, {**(self._previous(view.folder) or {}),
                                                   "status": rundir.FINISHED})

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not trainer.is_global_zero or not self._open:
            return
        self._open = False
        status, reason = ending(exception)
        where = f"(epoch {trainer.current_epoch}, step {trainer.global_step})"
        self._write_all(trainer, trainer.current_epoch, status, f"{reason} {where}")

    def record_test(self, trainer: L.Trainer, pl_module: L.LightningModule, key: str) -> None:
        """After a fit's test: test_acc (per copy, and their mean) into the records as `key`
        (test_acc: the final weights, test_acc_best: the best-validation checkpoint)."""
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        for view in self._records():
            previous = self._previous(view.folder) or {}
            rundir.write_metrics(view.folder, {**previous, key: view.metric(metrics, "test_acc"),
                                               "test_view": pl_module.eval_view})

    def record_evaluation(self, trainer: L.Trainer, pl_module: L.LightningModule, folder: Path,
                          stage: str, ckpt_path: str | None) -> None:
        """`wrn validate` / `wrn test`: a record of its own in `folder`, never the run's files."""
        if not trainer.is_global_zero:
            return
        prefix = "val" if stage == "validate" else "test"
        metrics = trainer.callback_metrics
        record = {**self.record, "stage": stage, "ckpt_path": ckpt_path,
                  "eval_view": pl_module.eval_view, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  **{f"{prefix}_{k}": _scalar(metrics, f"{prefix}_{k}") for k in ("acc", "loss", "top5")}}
        if len(self.views) > 1:
            record["copies"] = {str(view.seed): view.metric(metrics, f"{prefix}_acc") for view in self.views}
        rundir.write_evaluation(folder, record)

    def _records(self) -> list[RecordView]:
        """Every record of the run: each copy's, then (fused) the mean's, under the plain keys."""
        return self.views + ([RecordView(self.run_dir, None, "")] if len(self.views) > 1 else [])

    def _identity(self, trainer: L.Trainer, pl_module: L.LightningModule, seed: int | None) -> dict:
        # Counted on the module's own network (still untrained and on the CPU here): a fused one
        # holds `copies` equal networks side by side, each costing a copies-th of the whole.
        net, copies = pl_module.net, pl_module.copies
        training = net.training
        macs = complexity.fvcore_macs(net) // copies
        net.train(training)
        return {**rundir.run_identity(pl_module.spec, seed, trainer.max_epochs),
                "params": complexity.count_params(net) // copies, "macs": macs,
                "device": device_name(trainer), "settings": self.settings}

    def _elapsed_wall(self) -> float:
        start = getattr(self, "_session_start", None)
        return self.wall_seconds if start is None else self._session_wall_offset + time.perf_counter() - start

    @staticmethod
    def _previous(folder: Path) -> dict | None:
        try:
            record = rundir.read_metrics(folder)
        except rundir.RecordError as exc:
            warnings.warn(f"{exc}; rewriting it from the run's checkpoint and epochs")
            record = None
        if record is not None:
            return record
        # Damaged or deleted: rewritten whole from the run's own state (best_val_acc and the
        # times come with the checkpoint) and its last recorded epoch (final_val_acc).
        lines, _ = rundir.read_epochs(folder)
        return {"final_val_acc": lines[-1].get("val_acc")} if lines else None

    def _write_all(self, trainer: L.Trainer, epochs: int, status: str, error: str | None,
                   metrics: dict | None = None) -> None:
        rate = self.train_images / self.train_seconds if self.train_seconds else None
        copies = len(self.views)
        shared = {**self.record, "status": status, "error": error, "epochs": epochs,
                  "global_step": trainer.global_step, "wall_seconds": round(self._elapsed_wall(), 3)}
        for view in self.views:
            self._write(view, metrics, self.best_val_acc.get(view.suffix), {
                **shared, "seed": view.seed, "train_images": self.train_images // copies,
                "images_per_sec": round(rate / copies, 1) if rate else None})
        if copies > 1:
            best = [self.best_val_acc[v.suffix] for v in self.views if v.suffix in self.best_val_acc]
            self._write(self._records()[-1], metrics, sum(best) / len(best) if best else None, {
                **shared, "copies": copies, "copy_dirs": [v.folder.name for v in self.views],
                "train_images": self.train_images,
                "images_per_sec": round(rate, 1) if rate else None})

    def _write(self, view: RecordView, metrics: dict | None, best: float | None, fields: dict
               ) -> None:
        previous = self._previous(view.folder) or {}
        final = view.metric(metrics or {}, "val_acc")
        rundir.write_metrics(view.folder, {
            **previous, **fields, "best_val_acc": best,
            "final_val_acc": final if final is not None else previous.get("final_val_acc"),
            # Of the final weights: gone while they change, set again by the test at the end.
            "test_acc": None, "test_acc_best": None})
