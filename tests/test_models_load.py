"""`wrn.load_model`: a trained run's network as a plain nn.Module, equal to the trained module's."""

import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import wrn
from tests import test_faults
from tests.helpers import make_image_tree
from wrn.data import CIFARData
from wrn.load import network_from_checkpoint
from wrn.models import CifarResNet
from wrn.models.fused import unfuse
from wrn.module import Arch, LitClassifier


def train(tmp_path, copies: int = 1, **module_args) -> tuple[LitClassifier, L.Trainer]:
    data = CIFARData(root=str(make_image_tree(tmp_path / "tree", classes=3, per_class=8)),
                     batch_size=8, val_size=8, num_workers=0, download=False, loader="gpu",
                     copies=copies)
    L.seed_everything(0, verbose=False)
    module = LitClassifier(num_classes=3, copies=copies, **module_args)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    return module, trainer


def outputs(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(images)


IMAGES = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # as users have them


def normalized(trainer: L.Trainer, images: torch.Tensor = IMAGES) -> torch.Tensor:
    """`images` as the trained network takes them, normalised with the training split's statistics."""
    data = trainer.datamodule
    return (images - torch.tensor(data.mean).view(3, 1, 1)) / torch.tensor(data.std).view(3, 1, 1)


def test_a_trained_run_loads_as_its_plain_network(tmp_path):
    module, trainer = train(tmp_path, name="preact-resnet-11", arch=Arch(unit="bottleneck"))
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    trainer.save_checkpoint(best)
    expected = outputs(module.net, normalized(trainer))
    with torch.no_grad():  # last.ckpt holds other weights than best.ckpt
        for p in module.net.parameters():
            p.add_(0.01)
    trainer.save_checkpoint(best.with_name("last.ckpt"))

    net = wrn.load_model(tmp_path / "run")  # a run directory: its best.ckpt
    assert type(net) is CifarResNet and not net.training
    assert net.config == module.net.config
    assert net.config.kernels == (1, 3, 1)
    assert torch.equal(outputs(net, IMAGES), expected)
    assert torch.equal(outputs(wrn.load_model(best), IMAGES), expected)

    best.unlink()  # no best.ckpt: the run's last.ckpt
    assert torch.equal(outputs(wrn.load_model(tmp_path / "run"), IMAGES),
                       outputs(module.net, normalized(trainer)))


def test_a_fused_run_needs_a_copy_and_gives_that_seeds_network(tmp_path):
    module, trainer = train(tmp_path, copies=2, name="wrn-10-1")
    path = tmp_path / "fused.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match=r"fused.ckpt: holds 2 fused networks .*pass copy=0..1"):
        wrn.load_model(path)
    with pytest.raises(ValueError, match=r"not copy=2"):
        wrn.load_model(path, copy=2)
    singles = unfuse(module.net)
    for copy in range(2):
        net = wrn.load_model(path, copy=copy)
        assert net.config.copies == 1
        assert torch.equal(outputs(net, IMAGES), outputs(singles[copy], normalized(trainer)))


def damaged(tmp_path, kind: str):
    path = tmp_path / "run.ckpt"
    if kind == "missing":
        return tmp_path / "nowhere"
    if kind == "empty run directory":
        (tmp_path / "run").mkdir()
        return tmp_path / "run"
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "text file":
        path.write_text("not a checkpoint\n")
    elif kind == "truncated":
        torch.save({"state_dict": {"net.w": torch.zeros(1000)}, "hyper_parameters": {}}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "no hyper_parameters":
        torch.save({"state_dict": {}}, path)
    elif kind == "pickled object":
        torch.save({"state_dict": {}, "hyper_parameters": {"name": "wrn-10-1"},
                    "extra": Arch()}, path)
    elif kind == "other architecture":
        torch.save({"state_dict": {"net.stem.weight": torch.zeros(1)},
                    "hyper_parameters": {"name": "wrn-10-1"}}, path)
    return path


@pytest.mark.parametrize("kind", ["missing", "empty run directory", "empty file", "text file",
                                  "truncated", "no hyper_parameters", "pickled object",
                                  "other architecture"])
def test_a_bad_path_is_one_value_error_naming_it(tmp_path, kind):
    path = damaged(tmp_path, kind)
    with pytest.raises(ValueError) as info:
        wrn.load_model(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    if kind == "other architecture":
        assert "stem.weight is torch.Size([1]) in the checkpoint but torch.Size([16, 3, 3, 3])" \
            in message


def test_the_python_api_is_discoverable():
    assert {"create_model", "list_models", "load_model", "published", "data", "models"} <= set(dir(wrn))
    assert "cifar10" in wrn.data.DATASETS and wrn.models.create_model is wrn.create_model
    assert "wrn-28-10" in wrn.list_models("wrn-28*")
    assert wrn.published("wrn-28-10").params_m == 36.5  # the figure its paper printed
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        wrn.nothing


def test_a_checkpoint_without_its_normalization_loads_as_before_with_a_warning(tmp_path):
    module, trainer = train(tmp_path, name="wrn-10-1")
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint.pop("normalization") == {"mean": list(trainer.datamodule.mean),
                                               "std": list(trainer.datamodule.std)}
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match=r"old.ckpt holds no input normalisation .* takes images normalised"):
        net = wrn.load_model(path)
    assert torch.equal(outputs(net, IMAGES), outputs(module.net, IMAGES))
    # What a fit restores and fuses, and every new network, stays bare: no normalisation, no extra state.
    assert network_from_checkpoint(path)[0].input_mean is None
    assert not {"input_mean", "input_std"} & set(wrn.create_model("wrn-10-1").state_dict())


@pytest.mark.slow
def test_the_loaded_network_scores_on_images_as_users_have_them_what_wrn_test_scores(tmp_path):
    tree = make_image_tree(tmp_path / "tree", classes=10, per_class=8, test_per_class=4)
    run = tmp_path / "run"
    fitted = test_faults.fit(tree, run, "--trainer.max_epochs", 3, "--data.batch_size", 8,
                             "--test_after_fit", "false")
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    tested = test_faults.wrn("test", "--config", run / "config.yaml",
                             "--ckpt_path", run / "checkpoints" / "best.ckpt")
    assert tested.returncode == 0, tested.stderr[-3000:]
    [record] = (run / "eval").glob("test-*/evaluation.json")
    expected = json.loads(record.read_text())["test_acc"]

    files = sorted((tree / "test").glob("*/*.png"))  # class folders in label order
    images = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                          for f in files]).float() / 255  # float in [0, 1], N x 3 x 32 x 32
    labels = torch.tensor([int(f.parent.name.removeprefix("class")) for f in files])
    accuracy = (outputs(wrn.load_model(run), images).argmax(1) == labels).float().mean().item()
    assert expected > 0.3 and abs(accuracy - expected) <= 1 / len(files) + 1e-6, (accuracy, expected)
