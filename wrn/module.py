"""The one LightningModule: any registry network, the papers' SGD recipes, top-1/top-5, test views."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, make_dataclass
from typing import Literal, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from wrn.data.augment import PadMode, eval_views
from wrn.data import mix_seed
from wrn.models import design_switches, model_spec_from_config
from wrn.models.fused import fuse, fused_loss

Schedule = Literal["wrn", "resnet", "cosine", "onecycle", "constant"]
View = Literal["single", "flip", "multi-crop"]
RUNTIME_OPTIONS = ("eval_view", "channels_last", "compile", "nan_check_every", "crop_size", "pad",
                   "pad_mode")


def _arch_class() -> type:
    switches = design_switches()
    doc = ("Design switches of the named network; None keeps what the name implies.\n\n"
           "Args:\n" + "".join(f"    {name}: {help_}\n" for name, (_, help_) in switches.items()))
    return make_dataclass("Arch", [(name, Optional[kind], None) for name, (kind, _) in switches.items()],
                          namespace={"__doc__": doc, "__module__": __name__})


Arch = _arch_class()


@dataclass
class Optim:
    """SGD and its schedule; the defaults are the WRN paper's recipe.

    Args:
        lr: Initial learning rate (the peak of onecycle), tuned for batch 128.
        momentum: SGD momentum; 0 turns momentum (and Nesterov) off.
        nesterov: Nesterov momentum, as the WRN paper trains.
        weight_decay: L2 coefficient (WRN paper 5e-4; ResNet papers 1e-4).
        decay_norm_and_bias: False = no weight decay on BatchNorm parameters, PReLU slopes and
            biases.
        schedule: Learning-rate schedule, stepped every batch. wrn: x0.2 at 30, 60 and 80% of
            training; resnet: /10 at 50 and 75%; cosine: to zero; onecycle: linear up for 15%,
            then linear down to zero; constant.
        warmup_epochs: Epochs trained at warmup_lr before the schedule starts (ResNet-110: about
            1 epoch = 400 steps); 0 = none.
        warmup_lr: Learning rate during the warm-up.
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True
    schedule: Schedule = "wrn"
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.01


def lr_factor(progress: float, schedule: Schedule) -> float:
    """Multiplier of the initial lr at `progress` in [0, 1] of training."""
    if schedule == "wrn":
        return 0.2 ** sum(progress >= m for m in (0.3, 0.6, 0.8))
    if schedule == "resnet":
        return 0.1 ** sum(progress >= m for m in (0.5, 0.75))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":  # linear up for 15%, linear down to zero
        return progress / 0.15 if progress < 0.15 else max(0.0, (1 - progress) / 0.85)
    return 1.0


class LitClassifier(L.LightningModule):
    """Any registry network, by name plus overrides, with the papers' SGD recipes and test views."""

    def __init__(self, name: str = "wrn-16-4", depth: Optional[int] = None,
                 widen_factor: Optional[int] = None, dropout: Optional[float] = None,
                 arch: Arch = Arch(), num_classes: int = 10, optim: Optim = Optim(),
                 label_smoothing: float = 0.0, eval_view: View = "single",
                 channels_last: Optional[bool] = None, compile: bool = False,
                 nan_check_every: int = 50, copies: int = 1, seed: Optional[int] = None,
                 crop_size: int = 32, pad: int = 4, pad_mode: PadMode = "reflect"):
        """The named network with the given overrides.

        Args:
            name: Registry model name: wrn-<depth>-<k>, resnet-<depth>, plain-<depth>,
                preact-resnet-<depth> (`wrn.models.list_models()` lists the published ones).
            depth: Override of the depth in the name (WRN: 6n+4 for B(3,3); ResNet: 6n+2); None
                keeps the name's. Sweeps over model.depth keep one base name.
            widen_factor: Override of the width k in the name (channels x k); None keeps the name's.
            dropout: Dropout probability between the convolutions of each unit, in [0, 1); None
                keeps the name's (0 for all but the -dropout recipes).
            arch: Design switches of the named network (block, order, shortcut, activation,
                bn_placement, unit); None in each keeps what the name implies.
            num_classes: Output classes; set from data.dataset (10 for CIFAR-10 and SVHN, 100 for
                CIFAR-100).
            optim: SGD, weight decay and the learning-rate schedule.
            label_smoothing: Cross-entropy label smoothing in [0, 1); 0 = none.
            eval_view: Test-time views averaged in softmax: single (the image), flip (plus its
                mirror), multi-crop (4 corners and centre of the padded image, each mirrored:
                10 views).
            channels_last: NHWC memory format; None = on for CUDA, off on the CPU.
            compile: torch.compile the network (slow first epoch, faster later ones on GPU).
            nan_check_every: Training steps between non-blocking looks at the loss's NaN/inf
                count (a NaN stops the run within two such intervals, and at every epoch end).
            copies: S > 1 trains seeds seed..seed+S-1 as one fused network (grouped convolutions),
                each copy initialised and fed as its separate run would be; metrics are reported
                per copy.
            seed: The run seed (linked from seed_everything); None: torch's current seed.
            crop_size: Training crop in pixels, for the evaluation views (linked from data.augment).
            pad: Padding of the training crop, for the evaluation views (linked from data.pad).
            pad_mode: reflect or zero padding, for the evaluation views (linked from data.pad_mode).
        """
        super().__init__()
        arch = Arch(**arch) if isinstance(arch, dict) else (arch or Arch())
        optim = Optim(**optim) if isinstance(optim, dict) else (optim or Optim())
        # Plain dicts in the checkpoint, so it loads with torch.load(weights_only=True); how a run
        # is evaluated or executed is not part of what the checkpoint holds.
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.save_hyperparameters({**given, "arch": asdict(arch), "optim": asdict(optim)})
        for runtime_only in RUNTIME_OPTIONS:  # still in hparams_initial, which the loggers record
            self.hparams.pop(runtime_only)
        self.eval_view, self.channels_last, self.compile_net = eval_view, channels_last, compile
        self.nan_check_every = nan_check_every
        self.spec = model_spec_from_config(dict(name=name, depth=depth, widen_factor=widen_factor,
                                                dropout=dropout, num_classes=num_classes, arch=arch))
        if copies < 1:
            raise ValueError(f"copies={copies} is invalid; valid: an integer >= 1")
        self.seed, self.copies = seed, copies
        self.first_seed = seed if seed is not None else torch.initial_seed()
        self.crop_size, self.pad, self.pad_mode = crop_size, pad, pad_mode
        self.net = self.spec.build() if copies == 1 else fuse(seeded_copies(self.spec, copies, self.first_seed))
        self.optim_cfg = optim
        # Accumulated on the device, logged once per epoch: a self.log call costs the host about a
        # millisecond (benchmarks/loop_overhead.py). A bare "train" key would shadow Module.train.
        self.epoch_metrics = nn.ModuleDict({
            f"{stage}_metrics": EpochMetrics(num_classes, copies, top5=num_classes > 10 and stage != "train")
            for stage in ("train", "val", "test")})
        self.register_buffer("_nonfinite_steps", torch.zeros((), dtype=torch.long), persistent=False)
        self._nonfinite_host = HostMirror()  # the count, on its way to the host
        # For the FLOPs (2 per multiply-add) of Lightning's model summary; none for a compiled
        # network, which would compile a graph for batch size 1.
        self.example_input_array = None if compile else torch.zeros(1, 3 * copies, 32, 32)

    def configure_model(self) -> None:
        if self.channels_last or (self.channels_last is None and self.device.type == "cuda"):
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = torch.compile(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) -> logits (N, classes); with copies, (N, 3S, H, W) -> (N, S, classes)."""
        return self.net(x)

    def _log_epoch_metrics(self, stage: str) -> torch.Tensor:
        """Logs the stage's epoch means, `<stage>_loss`, `<stage>_acc` (`val_top5`), and per copy
        `<stage>_acc_c<i>`, `<stage>_loss_c<i>` when fused; returns the per-copy losses."""
        shown = {"loss": stage != "test", "acc": stage != "train", "top5": False}
        means = self.epoch_metrics[f"{stage}_metrics"].compute_and_reset()
        for key, per_copy in means.items():
            # on_epoch: they reach every logger at the epoch's end, whatever log_every_n_steps.
            self.log(f"{stage}_{key}", per_copy.mean(), prog_bar=shown[key], sync_dist=True,
                     on_step=False, on_epoch=True)
            if self.copies > 1 and key != "top5":
                for i, value in enumerate(per_copy):
                    self.log(f"{stage}_{key}_c{i}", value, sync_dist=True, on_step=False, on_epoch=True)
        return means["loss"]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        smoothing = self.hparams.label_smoothing
        if self.copies == 1:
            loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
            per_copy = loss.detach()
        else:
            loss, per_copy = fused_loss(logits, labels, label_smoothing=smoothing)
        self._watch_for_nonfinite(loss)
        self.epoch_metrics["train_metrics"].update(logits.detach(), labels, per_copy)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # At the epoch's last step, not in on_train_epoch_end: callbacks (the run record) see that
        # hook first. The NaN check syncs here too, so validation and checkpoints never see NaNs.
        trainer = self.trainer
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if last_batch or 0 <= trainer.max_steps <= self.global_step:
            self._raise_if_nonfinite()
            self._log_epoch_metrics("train")

    def _watch_for_nonfinite(self, loss: torch.Tensor) -> None:
        # Counted on the device; every nan_check_every steps the count goes to the host without
        # waiting and the previous copy is read once landed: no host sync between logging points.
        self._nonfinite_steps += (~torch.isfinite(loss.detach())).long()
        if (self.global_step + 1) % self.nan_check_every == 0:
            if self._nonfinite_host.poll():
                raise self._nonfinite("loss")
            if not self._nonfinite_host.pending:
                self._nonfinite_host.start(self._nonfinite_steps)

    def _raise_if_nonfinite(self) -> None:
        if self._nonfinite_steps.item():
            raise self._nonfinite("loss")
        weights = [p.detach() for p in self.net.parameters()]
        if not bool(torch.stack([torch.isfinite(w).all() for w in weights]).all()):
            raise self._nonfinite("weights")

    def _nonfinite(self, what: str, step: bool = True) -> FloatingPointError:
        where = f"epoch {self.current_epoch}" + (f", step <= {self.global_step}" if step else "")
        return FloatingPointError(f"{what} became NaN/inf at {where} (lr {self.optim_cfg.lr}); "
                                  "lower the learning rate or check the data")

    def on_train_epoch_start(self) -> None:
        # Checkpoints hold no RNG state: seeding from (seed, epoch) gives a resumed run the dropout
        # masks the uninterrupted run drew, as the loaders' orders, crops and flips already are.
        torch.manual_seed(mix_seed(self.first_seed, self.current_epoch))

    def on_train_epoch_end(self) -> None:
        self._raise_if_nonfinite()
        if self.epoch_metrics["train_metrics"].images.item():  # a loader without a length
            self._log_epoch_metrics("train")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    def _view_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Mean softmax over the evaluation views (as log-probabilities); every copy of a fused
        network sees the same images."""
        views = [images]
        if self.eval_view != "single" or self.crop_size != images.shape[-1]:
            views = eval_views(images, self.eval_view, self.crop_size, self.pad, self.pad_mode,
                               fill=self._zero_fill())
        if self.copies > 1:
            views = [v.repeat(1, self.copies, 1, 1) for v in views]
        if len(views) == 1:
            return self(views[0])
        probs = torch.stack([self(v).softmax(-1) for v in views]).mean(0)
        return probs.clamp_min(1e-12).log()

    def _zero_fill(self) -> Optional[tuple[float, ...]]:
        """Normalised black, for "zero" padding: it depends on the training set's channel
        statistics, which only the data module knows once set up."""
        if self.pad_mode != "zero" or not self._trainer:
            return None
        return getattr(getattr(self.trainer, "datamodule", None), "zero_fill", None)

    def _evaluate(self, batch, stage: str) -> None:
        images, labels = batch
        logits = self._view_logits(images)
        if self.copies == 1:
            loss = F.cross_entropy(logits, labels)
        else:
            labels = labels[:, None].expand(-1, self.copies)
            loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(0)
        self.epoch_metrics[f"{stage}_metrics"].update(logits, labels, loss)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        loss = self._log_epoch_metrics("val")
        if not self.trainer.sanity_checking and not bool(torch.isfinite(loss).all()):
            raise self._nonfinite("validation loss", step=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The input normalisation goes with the weights: wrn.load_model's network takes images in
        # [0, 1] as they are.
        data = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if getattr(data, "mean", None) is not None:
            checkpoint["normalization"] = {"mean": list(data.mean), "std": list(data.std)}

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class probabilities: (N, classes); (N, copies, classes) for a fused network."""
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self._view_logits(images).softmax(-1)

    def configure_optimizers(self):
        cfg = self.optim_cfg
        decay, no_decay = [], []
        for param in self.net.parameters():  # ndim <= 1: BN weights and biases, PReLU slopes
            (no_decay if param.ndim <= 1 and not cfg.decay_norm_and_bias else decay).append(param)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                    nesterov=cfg.nesterov and cfg.momentum > 0)
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = int(cfg.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (
            cfg.warmup_lr / cfg.lr if step < warmup else lr_factor(step / total, cfg.schedule)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EpochMetrics(nn.Module):
    """One stage's epoch means per copy, accumulated on the device: mean loss, top-1 and
    (optionally) top-5 accuracy. Accuracy is torchmetrics' (synchronised across processes when
    computed); the loss is a running sum of loss x images, whose per-process means self.log
    averages over processes (each process sees as many images)."""

    def __init__(self, num_classes: int, copies: int, top5: bool):
        super().__init__()

        def accuracies(top_k: int) -> nn.ModuleList:
            # validate_args would check label ranges on the host: a device sync every step.
            return nn.ModuleList(MulticlassAccuracy(num_classes, top_k=top_k, average="micro",
                                                    validate_args=False) for _ in range(copies))

        self.acc = accuracies(1)
        self.top5 = accuracies(5) if top5 else None
        self.register_buffer("loss_sum", torch.zeros(copies), persistent=False)  # loss x images
        self.register_buffer("images", torch.zeros(()), persistent=False)  # per copy

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        """logits (N, C), labels (N,), loss () for one network; (N, S, C), (N, S), (S,) fused."""
        logits, labels = logits.reshape(len(logits), -1, logits.shape[-1]), labels.reshape(len(labels), -1)
        for i, metric in enumerate(self.acc):
            metric.update(logits[:, i], labels[:, i])
            if self.top5 is not None:
                self.top5[i].update(logits[:, i], labels[:, i])
        self.loss_sum += loss.float() * len(labels)
        self.images += len(labels)

    def compute_and_reset(self) -> dict[str, torch.Tensor]:
        """{"loss", "acc"(, "top5")}: tensors (S,) of this process's epoch means."""
        means = {"loss": self.loss_sum / self.images.clamp_min(1),
                 "acc": torch.stack([m.compute() for m in self.acc])}
        if self.top5 is not None:
            means["top5"] = torch.stack([m.compute() for m in self.top5])
        for metric in [*self.acc, *(self.top5 or [])]:
            metric.reset()
        self.loss_sum.zero_()
        self.images.zero_()
        return means


class HostMirror:
    """A host copy of a device tensor, refreshed without blocking: `start` queues the copy (into
    one pinned buffer on CUDA, at once on the CPU), `poll` returns the value once it has landed
    and None before, never waiting for the device."""

    def __init__(self):
        self._host: Optional[torch.Tensor] = None
        self._landed: Optional[torch.cuda.Event] = None
        self.pending = False

    def start(self, tensor: torch.Tensor) -> None:
        if tensor.device.type != "cuda":
            self._host, self._landed = tensor.detach().clone(), None
        else:
            if self._host is None:
                self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                self._landed = torch.cuda.Event()
            self._host.copy_(tensor, non_blocking=True)
            self._landed.record()
        self.pending = True

    def poll(self) -> Optional[int]:
        if not self.pending or (self._landed is not None and not self._landed.query()):
            return None
        self.pending = False
        return int(self._host.item())  # a host tensor: no device sync


def seeded_copies(spec, copies: int, first: int) -> list[nn.Module]:
    """Copy i initialised from seed first + i: what a separate run with that seed builds."""
    singles = []
    for i in range(copies):
        torch.manual_seed(first + i)
        singles.append(spec.build())
    torch.manual_seed(first)
    return singles
