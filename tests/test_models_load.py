"""`wrn.load_model`: a trained run's network as a plain nn.Module, equal to the trained module's."""

import lightning as L
import pytest
import torch

import wrn
from tests.helpers import make_image_tree
from wrn.data import CIFARData
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


IMAGES = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_a_trained_run_loads_as_its_plain_network(tmp_path):
    module, trainer = train(tmp_path, name="preact-resnet-11", arch=Arch(unit="bottleneck"))
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    trainer.save_checkpoint(best)
    expected = outputs(module.net, IMAGES)
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
    assert torch.equal(outputs(wrn.load_model(tmp_path / "run"), IMAGES), outputs(module.net, IMAGES))


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
        assert torch.equal(outputs(net, IMAGES), outputs(singles[copy], IMAGES))


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
