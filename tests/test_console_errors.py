"""One line on stderr, the right exit code, and never a flood: OS errors with their path, damaged
checkpoints, lost connections, Ctrl-C, alias bombs and binary files given as configs."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from tests.helpers import warm, wrn_here
from wrn.cli import _guarded, debugging
from wrn.errors import MAX_MESSAGE, MAX_YAML_NODES, cap, check_config_args, one_line_error, yaml_node_count

ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def wrn(*args, env_extra: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WRN_DEBUG"}
    return warm().run(args, env={**env, **(env_extra or {})}, timeout=timeout)


def assert_one_line(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == code, result.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


# -- the mapping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("exc,expected", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.ckpt"), "permission denied: /data/x.ckpt"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/best.ckpt"),
     "no space left on device: /out/best.ckpt"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "runs/x"), "is a directory: runs/x"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b"), "not a directory: a/b"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "loop.jpg"),
     "too many levels of symbolic links: loop.jpg"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/run"), "read-only file system: /mnt/ro/run"),
    (EOFError(), "checkpoint is empty or truncated"),
    (RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory"),
     "checkpoint is truncated or damaged"),
    (RuntimeError("Invalid magic number; corrupt file?"), "checkpoint is truncated or damaged"),
    (ConnectionError("Could not connect to 10.0.0.1:6379: token authentication failed"),
     "connection failed (ConnectionError): Could not connect to 10.0.0.1:6379"),
])
def test_input_and_environment_errors_become_one_line(exc, expected):
    message = one_line_error(exc)
    assert message is not None and message.startswith(expected), message
    assert "\n" not in message


def test_a_bug_keeps_its_traceback():
    assert one_line_error(ZeroDivisionError("division by zero")) is None
    assert one_line_error(RuntimeError("some internal invariant broke")) is None


def test_huge_messages_are_cut():
    message = one_line_error(ValueError("bad value " + "x" * 10_000_000))
    assert len(message) <= MAX_MESSAGE and message.endswith("…")
    assert cap("short\n  message") == "short message"


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("YES", True), ("0", False),
                                      ("false", False), ("no", False), ("", False)])
def test_only_1_true_or_yes_turn_debugging_on(monkeypatch, value, on):
    monkeypatch.setenv("WRN_DEBUG", value)
    assert debugging() is on


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    monkeypatch.delenv("WRN_DEBUG", raising=False)

    def interrupted(argv):
        raise KeyboardInterrupt

    def lightning_style(argv):  # Lightning's fit ends a Ctrl-C in sys.exit(1)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)

    assert _guarded(interrupted, []) == 130
    assert _guarded(lightning_style, []) == 130
    assert capsys.readouterr().err.count("error: interrupted") == 2


# -- config files ---------------------------------------------------------------------------------
def test_alias_bombs_are_counted_without_expanding():
    assert yaml_node_count("a: 1\nb: [1, 2]") == 7
    assert yaml_node_count(ALIAS_BOMB) > 100 * MAX_YAML_NODES


def test_yaml_nested_past_the_recursion_limit_is_one_value_error():
    with pytest.raises(ValueError, match="deep.yaml: YAML nested too deeply"):
        yaml_node_count("[" * 100_000 + "]" * 100_000, "deep.yaml")


def test_an_alias_bomb_config_is_refused_in_one_short_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    for env in ({}, {"WRN_DEBUG": "0"}):
        result = wrn_here("fit", "--config", bomb, env=env)
        assert_one_line(result, str(bomb), "aliases expand")
        assert len(result.stderr) < 2 * MAX_MESSAGE


def test_a_binary_config_is_named(tmp_path):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x80\x81\xfe" + bytes(range(256)))
    assert_one_line(wrn_here("fit", "--config", binary), str(binary), "not a UTF-8 text file")
    with pytest.raises(ValueError, match="not a UTF-8"):
        check_config_args(["fit", f"--model={binary}"])


# -- checkpoints and Ctrl-C in a real fit --------------------------------------------------------
def test_a_binary_or_alias_bomb_sweep_spec_is_named(tmp_path):
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\xff\xfe\x00grid")
    assert_one_line(wrn_here("sweep", "run", binary, "--out", tmp_path / "out", "--dry-run"),
                    str(binary), "not a UTF-8 text file")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert_one_line(wrn_here("sweep", "run", bomb, "--out", tmp_path / "out"), str(bomb), "aliases expand")
    assert not (tmp_path / "out").exists()
