"""Shipped files speak to any user: no tracked text file names a path of one particular machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

# Assembled here so that this file does not contain them itself.
MACHINE_PATHS = tuple("/" + name + "/" for name in ("work", "root", "home")) + (".." + "/shared",)


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in (REPO / name for name in listed.stdout.decode().split("\0") if name) if f.is_file()]


def tracked_text_files() -> list[Path]:
    return [f for f in tracked_files() if b"\0" not in f.read_bytes()[:8192]]


@pytest.mark.slow
def test_no_tracked_file_names_a_machine_path():
    files = tracked_text_files()
    assert len(files) > 20
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}"
             for path in files
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
             if any(machine in line for machine in MACHINE_PATHS)]
    assert not found, "machine paths in tracked files:\n" + "\n".join(found)
    # Binary files too (a coverage database, a pickled checkpoint): named without a line.
    binary = [str(path.relative_to(REPO)) for path in tracked_files() if path not in files
              and any(machine.encode() in path.read_bytes() for machine in MACHINE_PATHS)]
    assert not binary, f"machine paths in tracked binary files: {binary}"
