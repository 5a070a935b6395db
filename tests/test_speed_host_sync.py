"""Training steps between logging points read nothing back from the device: no `.item()`, no
`bool(tensor)`, no `.cpu()` on the hot path (counted on CPU), and no host-device sync at all under
torch.cuda.set_sync_debug_mode("error") (on CUDA)."""

import traceback

import lightning as L
import pytest
import torch

from tests.helpers import make_image_tree
from wrn.data import CIFARData
from wrn.module import HostMirror, LitClassifier

READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__")
EPOCHS, STEPS = 2, 6  # steps per epoch: 60 images - 12 held out, batch 8


class StepWindow(L.Callback):
    """Opens after each epoch's first step and closes before its last: the steps in between are
    the ones with no logging point."""

    def __init__(self, enter, leave):
        self.enter, self.leave, self.steps = enter, leave, 0
        self.open = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.open = True
            self.enter()
        elif self.open:
            self.steps += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == trainer.num_training_batches - 1 and self.open:
            self.open = False
            self.leave()

    def on_train_epoch_end(self, trainer, pl_module):
        if self.open:
            self.open = False
            self.leave()


def fit(tmp_path, device: str, window: StepWindow) -> LitClassifier:
    tree = make_image_tree(tmp_path / "tree", classes=3, per_class=20)
    data = CIFARData(root=str(tree), batch_size=8, val_size=12, num_workers=0, download=False, loader="gpu")
    L.seed_everything(0, verbose=False)
    model = LitClassifier(name="wrn-10-1", num_classes=3, nan_check_every=2)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator=device, devices=1, enable_model_summary=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0, log_every_n_steps=1000,
                        callbacks=[window])  # progress bar, logger and checkpoints as by default
    trainer.fit(model, datamodule=data)
    assert window.steps == EPOCHS * (STEPS - 2)
    return model


class HostReads:
    """Counts device-to-host reads of tensors, except those of the module's host mirrors."""

    def __init__(self, monkeypatch):
        self.active, self.reads, self.allowed = False, [], set()
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, getattr(torch.Tensor, name)))

    def _counting(self, name, original):
        def read(tensor, *args, **kwargs):
            if self.active and id(tensor) not in self.allowed:
                self.reads.append(f"{name}: {''.join(traceback.format_stack(limit=4)[:-1])}")
            return original(tensor, *args, **kwargs)
        return read


def test_no_tensor_is_read_on_the_host_between_logging_points(tmp_path, monkeypatch):
    counter = HostReads(monkeypatch)
    start = HostMirror.start

    def start_and_allow(mirror, tensor):  # its buffer is host memory by construction
        start(mirror, tensor)
        counter.allowed.add(id(mirror._host))

    monkeypatch.setattr(HostMirror, "start", start_and_allow)
    window = StepWindow(enter=lambda: setattr(counter, "active", True),
                        leave=lambda: setattr(counter, "active", False))
    fit(tmp_path, "cpu", window)
    assert counter.reads == [], f"{len(counter.reads)} host reads, the first:\n{counter.reads[0]}"
    assert counter.allowed  # the NaN watch did look, through its mirror


def test_a_nan_loss_is_still_caught_between_epoch_ends(tmp_path):
    model = LitClassifier(name="wrn-10-1", num_classes=3, nan_check_every=2)
    calls = []

    class Trainer:  # the two attributes the watch reads
        global_step, current_epoch = 0, 0

    model._trainer = Trainer()
    for step in range(6):
        Trainer.global_step = step
        loss = torch.tensor(float("nan") if step == 2 else 1.0)
        try:
            model._watch_for_nonfinite(loss)
        except FloatingPointError as error:
            calls.append((step, str(error)))
            break
    # Copied at step 3 (the first check after the NaN), read at step 5: within 2 x nan_check_every.
    assert calls and calls[0][0] == 5 and "loss became NaN/inf" in calls[0][1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_device_sync_between_logging_points_on_cuda(tmp_path):
    window = StepWindow(enter=lambda: torch.cuda.set_sync_debug_mode("error"),
                        leave=lambda: torch.cuda.set_sync_debug_mode("default"))
    try:
        fit(tmp_path, "cuda", window)  # a sync inside the window raises RuntimeError
    finally:
        torch.cuda.set_sync_debug_mode("default")


class NanAtLastStep(LitClassifier):
    def training_step(self, batch, batch_idx):
        images, labels = batch
        if batch_idx + 1 == self.trainer.num_training_batches:
            images = images * float("nan")
        return super().training_step((images, labels), batch_idx)


def test_a_nan_in_the_last_step_stops_the_run_before_validation_and_checkpoints(tmp_path):
    tree = make_image_tree(tmp_path / "tree", classes=3, per_class=20)
    data = CIFARData(root=str(tree), batch_size=8, val_size=12, num_workers=0, download=False, loader="gpu")
    L.seed_everything(0, verbose=False)
    model = NanAtLastStep(name="wrn-10-1", num_classes=3, nan_check_every=50)
    checkpoints = tmp_path / "checkpoints"
    validated = []

    class Validated(L.Callback):
        def on_validation_start(self, trainer, pl_module):
            validated.append(trainer.current_epoch)

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoints), Validated()])
    with pytest.raises(FloatingPointError, match="loss became NaN/inf at epoch 0"):
        trainer.fit(model, datamodule=data)
    assert validated == [] and not list(checkpoints.glob("*.ckpt"))
