"""The LightningModule's metrics: accumulated on the device, logged once per epoch, and equal to
what a direct computation over the same images gives."""

from collections import Counter

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import make_image_tree
from wrn.data import CIFARData
from wrn.module import EpochMetrics, LitClassifier


@pytest.mark.parametrize("copies", [1, 3])
def test_epoch_metrics_equal_the_direct_computation(copies):
    generator = torch.Generator().manual_seed(0)
    metrics = EpochMetrics(num_classes=20, copies=copies, top5=True)
    logits, labels, losses = [], [], []
    for size in (7, 16, 5):  # unequal batches: the means must weight by images
        batch_logits = torch.randn(size, copies, 20, generator=generator)
        batch_labels = torch.randint(0, 20, (size, copies), generator=generator)
        loss = F.cross_entropy(batch_logits.transpose(1, 2), batch_labels, reduction="none").mean(0)
        if copies == 1:
            metrics.update(batch_logits[:, 0], batch_labels[:, 0], loss[0])
        else:
            metrics.update(batch_logits, batch_labels, loss)
        logits.append(batch_logits), labels.append(batch_labels), losses.append(loss)
    logits, labels = torch.cat(logits), torch.cat(labels)

    got = metrics.compute_and_reset()
    expected_loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(0)
    top5 = logits.topk(5, dim=-1).indices
    assert torch.allclose(got["loss"], expected_loss, atol=1e-6)
    assert torch.allclose(got["acc"], (logits.argmax(-1) == labels).float().mean(0))
    assert torch.allclose(got["top5"], (top5 == labels[..., None]).any(-1).float().mean(0))
    assert got["acc"].shape == (copies,)
    assert metrics.images.item() == 0 and not metrics.loss_sum.any()  # ready for the next epoch


class LogCounter:
    """Counts LitClassifier.log calls per metric name."""

    def __init__(self, monkeypatch):
        self.calls = Counter()
        original = LitClassifier.log

        def log(module, name, value, *args, **kwargs):
            self.calls[name] += 1
            return original(module, name, value, *args, **kwargs)

        monkeypatch.setattr(LitClassifier, "log", log)


def test_fit_logs_each_metric_once_per_epoch_and_validation_matches_a_direct_pass(tmp_path, monkeypatch):
    counter = LogCounter(monkeypatch)
    data = CIFARData(root=str(make_image_tree(tmp_path / "tree", classes=3, per_class=20)), batch_size=8,
                     val_size=12, num_workers=0, download=False, loader="gpu", copies=2)
    L.seed_everything(0, verbose=False)
    model = LitClassifier(name="wrn-10-1", num_classes=3, copies=2)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    assert trainer.num_training_batches == 6  # 48 images, batch 8: six steps per epoch

    stage_keys = [f"{stage}_{key}{copy}" for stage in ("train", "val") for key in ("loss", "acc")
                  for copy in ("", "_c0", "_c1")]
    assert {key: counter.calls[key] for key in stage_keys} == {key: 2 for key in stage_keys}
    metrics = trainer.callback_metrics
    for stage in ("train", "val"):
        mean = (metrics[f"{stage}_acc_c0"] + metrics[f"{stage}_acc_c1"]) / 2
        assert torch.isclose(metrics[f"{stage}_acc"], mean)

    # The last epoch's validation, recomputed by hand from the same images.
    model.eval()
    with torch.no_grad():
        images, labels = map(torch.cat, zip(*data.val_dataloader()))
        logits = model(images.repeat(1, 2, 1, 1))  # (N, copies, classes)
    for copy in range(2):
        accuracy = (logits[:, copy].argmax(-1) == labels).float().mean()
        loss = F.cross_entropy(logits[:, copy], labels)
        assert torch.isclose(metrics[f"val_acc_c{copy}"], accuracy)
        assert torch.isclose(metrics[f"val_loss_c{copy}"], loss, atol=1e-5)


@pytest.mark.parametrize("decay_norm_and_bias", [True, False])
def test_weight_decay_spares_norms_and_biases_when_asked(decay_norm_and_bias):
    from wrn.module import Optim

    module = LitClassifier("wrn-10-1", optim=Optim(weight_decay=5e-4, decay_norm_and_bias=decay_norm_and_bias))
    module.trainer = L.Trainer(max_steps=10, accelerator="cpu", logger=False)  # 10 stepping batches
    groups = module.configure_optimizers()["optimizer"].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 5e-4 for p in g["params"]}
    spared = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    flat = {id(p) for p in module.net.parameters() if p.ndim <= 1}  # BN weights and biases
    assert flat and decayed | spared == {id(p) for p in module.net.parameters()}
    assert spared == (set() if decay_norm_and_bias else flat)
