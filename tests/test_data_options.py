"""CIFARData's arguments: the run seed and the progress wish arrive as arguments (linked from
seed_everything and trainer.enable_progress_bar), the DATASETS table feeds the choices, every
argument is documented in `wrn fit --help`, and bad image files are one line."""

import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import docstring_parser
import pytest
import torch

from tests.test_data import make_tree, raises_one_line, small_data
from wrn.cli import main
from wrn.train import FitConfigChecker
from wrn.data import DATASETS, CIFARData
from wrn.data import datamodule, sources
from wrn.errors import one_line_error


def first_batch_labels(data: CIFARData) -> list:
    loader = data.train_dataloader()
    return next(iter(loader))[1].tolist()


@pytest.mark.parametrize("loader", ["dataloader", "gpu"])
def test_the_seed_argument_alone_fixes_the_data_order(tmp_path, loader):
    root = make_tree(tmp_path)
    orders = {}
    for seed, global_seed in ((3, 0), (3, 1), (4, 0)):
        torch.manual_seed(global_seed)  # the process's seed must not matter
        data = small_data(root, loader=loader, seed=seed, progress=False)
        data.setup("fit")
        orders[seed, global_seed] = first_batch_labels(data)
    assert orders[3, 0] == orders[3, 1]
    assert orders[3, 0] != orders[4, 0]


def test_seed_and_progress_are_linked_from_the_run_settings():
    checker = FitConfigChecker()
    config = checker.check(["--seed_everything", "7", "--trainer.enable_progress_bar", "false"])
    assert config.data.seed == 7 and config.data.progress is False
    config = checker.check([])
    assert config.data.seed == 0 and config.data.progress is True  # Lightning's default shows bars
    assert checker.check(["--seed_everything", "true"]).data.seed is None  # unseeded: the process's seed


@pytest.mark.parametrize("progress", [True, False])
def test_decoding_bar_follows_the_progress_argument(tmp_path, monkeypatch, capfd, progress):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws bars only on terminals, or when forced
    small_data(make_tree(tmp_path), progress=progress).setup("fit")
    assert ("decoding images" in capfd.readouterr().err) is progress


def test_the_datasets_table_feeds_the_choices_and_the_torchvision_arguments():
    hints = typing.get_type_hints(CIFARData.__init__)
    assert typing.get_args(hints["dataset"]) == tuple(DATASETS)
    assert {name: facts.title for name, facts in DATASETS.items()} == {
        "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}
    assert DATASETS["svhn"].torchvision_split(False) == {"split": "test"}
    assert DATASETS["cifar100"].torchvision_split(True) == {"train": True}
    for module in (sources, datamodule):  # special cases live in the table, not in branches
        branches = [line.strip() for line in inspect.getsource(module).splitlines()
                    if any(f'"{name}"' in line for name in DATASETS) and re.search(r"==|!=|\bif\b", line)]
        assert not branches, (module.__name__, branches)


@pytest.mark.slow
def test_the_datasets_table_loads_without_torch():
    # Figures, tables and help read DATASETS; they must not pay for importing torch and Lightning.
    code = "import sys; from wrn.data import DATASETS; print(sorted(DATASETS), 'torch' in sys.modules)"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["['cifar10',", "'cifar100',", "'svhn']", "False"]


def normalised(text: str) -> str:
    return " ".join(text.split())


def test_fit_help_documents_every_data_argument(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    help_text = normalised(capsys.readouterr().out)
    documented = {p.arg_name: p.description for p in docstring_parser.parse(CIFARData.__doc__).params}
    arguments = [name for name in inspect.signature(CIFARData.__init__).parameters if name != "self"]
    assert sorted(documented) == sorted(arguments)
    for name in arguments:
        assert normalised(documented[name])[:40] in help_text, name


def test_symlink_loop_image_is_one_line_naming_it(tmp_path):
    root = make_tree(tmp_path)
    folder = root / "train" / "class1"
    (folder / "loop-a.jpg").symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(folder / "loop-a.jpg")
    with raises_one_line(r"cannot read image .*class1/loop-a\.jpg") as info:
        small_data(root).setup("fit")
    assert one_line_error(info.value) == str(info.value)  # what `wrn` prints, exit code 2

