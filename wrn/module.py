"""The one LightningModule: any registry network, the papers' SGD recipes, top-1/top-5, test views."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from wrn.augment import eval_views
from wrn.models import resolve_model

Schedule = Literal["wrn", "resnet", "cosine", "onecycle", "constant"]
View = Literal["single", "flip", "multi-crop"]
RUNTIME_OPTIONS = ("eval_view", "channels_last", "compile", "nan_check_every")


@dataclass
class Arch:
    """Design switches of the named network; None keeps what the name implies."""

    block: Optional[str] = None  # WRN block type, e.g. "B(3,3)", "B(3,1,3)" (paper Table 2)
    order: Optional[Literal["pre", "post"]] = None  # BN-ReLU-conv vs conv-BN-ReLU
    shortcut: Optional[Literal["A", "B", "C", "none"]] = None  # He et al. 2015 options
    activation: Optional[Literal["relu", "prelu"]] = None
    bn_placement: Optional[Literal["before_add", "after_add"]] = None  # post-activation only
    unit: Optional[Literal["basic", "bottleneck"]] = None  # pre-act ResNet only


@dataclass
class Optim:
    """SGD and its schedule; the defaults are the WRN paper's recipe."""

    lr: float = 0.1  # initial learning rate, for batch 128
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # L2 coefficient (ResNet papers: 1e-4)
    decay_norm_and_bias: bool = True  # False: no weight decay on BN parameters and biases
    schedule: Schedule = "wrn"  # wrn: x0.2 at 30/60/80%; resnet: /10 at 50/75%
    warmup_epochs: float = 0.0  # epochs at warmup_lr first (ResNet-110: ~1 epoch = 400 steps)
    warmup_lr: float = 0.01  # learning rate during warm-up


def lr_factor(progress: float, schedule: Schedule) -> float:
    """Multiplier of the initial lr at `progress` in [0, 1] of training (step-wise)."""
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
    """Wraps a registry network: `name` (e.g. wrn-28-10) plus the paper axes and design switches.

    depth / widen_factor override the name (a sweep over `model.depth` keeps one base name).
    """

    def __init__(self, name: str = "wrn-16-4", depth: Optional[int] = None,
                 widen_factor: Optional[int] = None, dropout: Optional[float] = None,
                 arch: Arch = Arch(), num_classes: int = 10, optim: Optim = Optim(),
                 label_smoothing: float = 0.0, eval_view: View = "single",
                 channels_last: Optional[bool] = None, compile: bool = False,
                 nan_check_every: int = 50):
        """channels_last: None = on for CUDA. compile: torch.compile the network.
        nan_check_every: steps between checks of the loss for NaN/inf (each check syncs the host)."""
        super().__init__()
        arch = Arch(**arch) if isinstance(arch, dict) else (arch or Arch())
        optim = Optim(**optim) if isinstance(optim, dict) else (optim or Optim())
        # Plain dicts in the checkpoint, so it loads with torch.load(weights_only=True); how a run
        # is evaluated or executed is not part of what the checkpoint holds.
        self.save_hyperparameters({**locals_without_self(locals()), "arch": asdict(arch),
                                   "optim": asdict(optim)})
        for runtime_only in RUNTIME_OPTIONS:
            self.hparams.pop(runtime_only)
        self.eval_view, self.channels_last, self.compile_net = eval_view, channels_last, compile
        self.nan_check_every = nan_check_every
        arch_args = {k: v for k, v in asdict(arch).items() if v is not None}
        self.spec = resolve_model(name, depth=depth, widen_factor=widen_factor, dropout=dropout,
                                  num_classes=num_classes, **arch_args)
        self.net = self.spec.build()
        self.optim_cfg = optim
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.top5 = nn.ModuleDict({stage: MulticlassAccuracy(num_classes, top_k=5, average="micro")
                                   for stage in ("val", "test")}) if num_classes > 10 else None
        self.register_buffer("_nonfinite_steps", torch.zeros((), dtype=torch.long), persistent=False)

    def configure_model(self) -> None:
        if self.channels_last or (self.channels_last is None
                                          and self.device.type == "cuda"):
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = torch.compile(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- training ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self._watch_for_nonfinite(loss)
        self.train_acc(logits.detach(), labels)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _watch_for_nonfinite(self, loss: torch.Tensor) -> None:
        # Accumulate on the device; look at the host only every nan_check_every steps.
        self._nonfinite_steps += (~torch.isfinite(loss.detach())).long()
        if (self.global_step + 1) % self.nan_check_every == 0:
            self._raise_if_nonfinite()

    def _raise_if_nonfinite(self) -> None:
        if self._nonfinite_steps.item():
            raise FloatingPointError(
                f"loss became NaN/inf at epoch {self.current_epoch}, step <= {self.global_step} "
                f"(lr {self.optim_cfg.lr}); lower the learning rate or check the data")

    def on_train_epoch_end(self) -> None:
        self._raise_if_nonfinite()
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    # -- evaluation -------------------------------------------------------------------------------
    def _view_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Mean softmax over the evaluation views (returned as log-probabilities)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if self.eval_view == "single" and getattr(datamodule, "crop_size", 32) == images.shape[-1]:
            return self(images)
        views = eval_views(images, self.eval_view, datamodule.crop_size, datamodule.pad,
                           datamodule.pad_mode, fill=getattr(datamodule, "zero_fill", None))
        probs = torch.stack([self(v).softmax(-1) for v in views]).mean(0)
        return probs.clamp_min(1e-12).log()

    def _evaluate(self, batch, stage: str, accuracy: MulticlassAccuracy) -> None:
        images, labels = batch
        logits = self._view_logits(images)
        self.log(f"{stage}_loss", F.cross_entropy(logits, labels), prog_bar=stage == "val",
                 sync_dist=True)
        accuracy(logits, labels)
        self.log(f"{stage}_acc", accuracy, prog_bar=True)
        if self.top5 is not None:
            self.top5[stage](logits, labels)
            self.log(f"{stage}_top5", self.top5[stage])

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self._view_logits(images).argmax(-1)

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        decay, no_decay = [], []
        for name, param in self.net.named_parameters():
            is_norm_or_bias = param.ndim <= 1  # BN weights/biases, PReLU slopes, linear bias
            (no_decay if is_norm_or_bias and not cfg.decay_norm_and_bias else decay).append(param)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                    nesterov=cfg.nesterov and cfg.momentum > 0)
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = int(cfg.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))

        def factor(step: int) -> float:
            if step < warmup:
                return cfg.warmup_lr / cfg.lr
            return lr_factor(step / total, cfg.schedule)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def locals_without_self(frame_locals: dict) -> dict:
    return {k: v for k, v in frame_locals.items() if k not in ("self", "__class__")}
