"""`wrn --help`, `wrn --version` and `wrn fit --help`: every command listed, Lightning imported
only by the commands that train, every model option documented."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, wrn_here
from wrn import __version__
from wrn.cli import COMMAND_HELP, LIGHTNING_COMMANDS, OWN_COMMANDS



def wrn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wrn", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_help_lists_every_command_with_a_line():
    result = wrn("--help")
    assert result.returncode == 0, result.stderr
    for command in (*LIGHTNING_COMMANDS, *OWN_COMMANDS):
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [command])
        assert len(line.split()) > 3, line  # the command and what it does
    assert set(COMMAND_HELP) == {*LIGHTNING_COMMANDS, *OWN_COMMANDS}


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--version"], []])
def test_help_and_version_import_neither_torch_nor_lightning(argv):
    probe = ("import sys\nfrom wrn.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print('IMPORTED', sorted(m for m in ('torch', 'lightning') if m in sys.modules))" % argv)
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_bare_wrn_lists_the_commands_and_exits_2():
    result = wrn()
    assert result.returncode == 2
    assert all(command in result.stderr for command in (*LIGHTNING_COMMANDS, *OWN_COMMANDS))


@pytest.mark.slow
def test_version():
    result = wrn("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wrn {__version__}"


def test_fit_help_documents_the_model_and_lists_the_package_options_first():
    result = wrn_here("fit", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.index("--model.name") < text.index("--data.root") < text.index("--trainer.accelerator")
    usage = text.split("\n\n")[0]
    assert len(usage.splitlines()) <= 2  # not every option in the usage line
    options = text.split("\n  --")
    for name in ("model.name", "model.depth", "model.copies", "model.optim.lr", "model.optim.schedule",
                 "model.optim.warmup_lr", "model.label_smoothing", "model.eval_view"):
        entry = next(o for o in options if o.startswith(name + " ") or o.startswith(name + "\n"))
        assert not entry.split("\n", 1)[-1].strip().startswith("(type:"), f"--{name} has no help:\n{entry}"
    block = next(o for o in options if o.startswith("model.arch.block"))
    assert "B(3,1,3)" in block and "B(3,3,3,3)" in block


def test_an_unknown_block_is_refused_with_the_choices():
    from wrn.train import ConfigError, FitConfigChecker

    checker = FitConfigChecker()
    with pytest.raises(ConfigError, match=r"B\(3,1,3\)"):
        checker.check(["--model.arch.block", "B(3,2)"])
    assert checker.check(["--model.arch.block", "B(3,1,3)"]).model.arch.block == "B(3,1,3)"
