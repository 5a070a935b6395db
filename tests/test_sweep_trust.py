"""wrn sweep: what a sweep refuses before it runs anything, and one line for each refusal.

A changed run (other settings in the same --out) is refused with the difference named; a
pass-through override of a swept key, negative seeds, all-invalid specs, runaway grids, YAML alias
bombs, bad --out folders and --gpus ids are errors; status never writes; Ctrl-C while the points
are checked exits 130. One tiny WRN-10-1 run (a few seconds on 2 CPU cores) backs the tests that
need a finished sweep.
"""

from __future__ import annotations

import builtins
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import REPO, make_image_tree, wait_for, wrn_here
from tests.test_sweep import TINY_RUN, sweep
from wrn.errors import one_line_error
from wrn.rundir import read_metrics
from wrn.sweep.executors import join_error, probe_address
from wrn.sweep.state import RUNS_DIR



@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=3, per_class=20)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tree) -> tuple[Path, Path]:
    """(spec, out) of a one-run sweep that has finished: 1 epoch of WRN-10-1."""
    folder = tmp_path_factory.mktemp("finished")
    spec = helpers.write_spec(folder, TINY_RUN, tree, seeds=[0], points=[{}])
    out = folder / "out"
    with helpers.warm_sweep_runs():
        assert sweep("run", spec, "--out", out) == 0
    return spec, out


def write_spec(folder: Path, data_root: Path, **spec) -> Path:
    return helpers.write_spec(folder, TINY_RUN, data_root, **spec)


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def one_line(exc: BaseException) -> str:
    message = one_line_error(exc)
    assert message is not None and "\n" not in message
    return message


# ----------------------------------------------------------------------------- run identity


@pytest.mark.slow
def test_a_changed_pass_through_setting_is_refused_with_the_difference_named(finished, capsys):
    spec, out = finished
    before = snapshot(out)
    for command in (["run"], ["run", "--dry-run"], ["status"]):
        with pytest.raises(ValueError) as info:
            sweep(*command, spec, "--out", out, "--trainer.max_epochs", 3)
        message = one_line(info.value)
        assert "trainer.max_epochs: 1 -> 3" in message and "another --out" in message, message
    with pytest.raises(ValueError, match=r"model.optim.lr: 0.1 -> 0.05"):
        sweep("run", spec, "--out", out, "--model.optim.lr", 0.05)
    assert snapshot(out) == before  # nothing ran, nothing was rewritten
    capsys.readouterr()
    assert sweep("run", spec, "--out", out) == 0  # the same arguments: nothing to run
    printed = capsys.readouterr().out
    assert "nothing to run (1 finished" in printed
    assert "sweep ended: 1 finished, 0 failed" in printed and str(out / "results.csv") in printed
    # A place, not a setting: the same data at another path is the same run.
    assert sweep("run", spec, "--out", out, "--data.num_workers", 0) == 0
    assert snapshot(out) == before


@pytest.mark.slow
def test_the_settings_of_a_run_are_recorded_and_the_identity_shared(finished):
    _, out = finished
    run_dir = next((out / RUNS_DIR).iterdir())
    import json

    record = json.loads((run_dir / "sweep.json").read_text())
    assert record["settings"]["trainer.max_epochs"] == 1
    assert record["settings"]["model.name"] == "wrn-10-1" and "data.root" not in record["settings"]
    metrics = read_metrics(run_dir)
    assert {k: metrics[k] for k in record["identity"]} == record["identity"]  # one run_identity()
    assert metrics["settings"] == record["settings"]  # the fit's own record: the same settings


@pytest.mark.slow
def test_status_never_writes_and_reads_a_read_only_sweep(finished, capsys, monkeypatch):
    spec, out = finished
    before = snapshot(out)
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    inside = str(out)

    def refuse(path) -> None:
        if str(path).startswith(inside):
            raise PermissionError(13, "Permission denied (read-only sweep)", str(path))

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    capsys.readouterr()
    assert sweep("status", spec, "--out", out) == 0
    assert sweep("run", spec, "--out", out, "--dry-run") == 0
    assert "finished" in capsys.readouterr().out
    monkeypatch.undo()
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- planning errors


def test_a_pass_through_override_of_a_swept_key_is_an_error_naming_it(tmp_path, tree):
    spec = write_spec(tmp_path, tree, seeds=[0, 1], grid={"model.depth": [10, 16]},
                      points=[{"model.arch.block": "B(3,3)"}])
    cases = {("--model.depth", "10"): "model.depth", ("--model.depth=16",): "model.depth",
             ("--seed_everything", "3"): "seed_everything", ("--model.arch", "{}"): "model.arch.block"}
    for argv, swept in cases.items():
        with pytest.raises(ValueError) as info:
            sweep("run", spec, "--out", tmp_path / "out", "--dry-run", *argv)
        message = one_line(info.value)
        assert f"varies {swept}" in message and argv[0].split("=")[0] in message, message
    assert not (tmp_path / "out").exists()


def test_a_spec_whose_points_are_all_invalid_exits_2_with_every_reason(tmp_path, tree):
    spec = write_spec(tmp_path, tree, grid={"model.depth": [11, 13]})
    done = wrn_here("sweep", "run", spec, "--out", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert any("model.depth=11" in line and "depth=11 is invalid" in line for line in lines), lines
    assert any("model.depth=13" in line and "depth=13 is invalid" in line for line in lines), lines
    assert lines[-1].startswith("error: ") and "every point is invalid (2 skipped" in lines[-1]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["seeds", "base"])
def test_negative_seeds_are_rejected_when_planning(tmp_path, tree, where):
    if where == "seeds":
        spec = write_spec(tmp_path, tree, seeds=[0, -1], points=[{}])
    else:
        spec = helpers.write_spec(tmp_path, {**TINY_RUN, "seed_everything": -5}, tree, points=[{}])
    with pytest.raises(ValueError, match=r"seed -(1|5) is invalid") as info:
        sweep("run", spec, "--out", tmp_path / "out", "--dry-run")
    one_line(info.value)


def test_a_huge_grid_is_refused_before_it_is_expanded_and_the_cap_can_be_raised(tmp_path, tree):
    spec = write_spec(tmp_path, tree, grid={"model.optim.lr": [i / 1e4 for i in range(1, 1001)],
                                            "model.optim.momentum": [i / 1e4 for i in range(1, 1001)]})
    with pytest.raises(ValueError, match=r"1,000,000 points .* exceed the cap of 10,000; pass "
                                         r"--max-points") as info:
        sweep("run", spec, "--out", tmp_path / "out", "--dry-run")  # returns at once: no expansion
    one_line(info.value)
    small = write_spec(tmp_path / "small", tree, grid={"model.depth": [10, 16, 22]})
    with pytest.raises(ValueError, match="3 points"):
        sweep("run", small, "--out", tmp_path / "out", "--dry-run", "--max-points", 2)
    assert sweep("run", small, "--out", tmp_path / "out", "--dry-run", "--max-points", 3) == 0


def test_a_yaml_alias_bomb_is_refused_in_one_line(tmp_path, tree):
    spec = write_spec(tmp_path, tree, points=[{}])
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]")
    bomb = "\n".join(levels)
    spec.write_text(f"{bomb}\nbase: base.yaml\npoints:\n  - {{}}\n")
    with pytest.raises(ValueError, match="YAML aliases expand past 100,000 nodes") as info:
        sweep("run", spec, "--out", tmp_path / "out", "--dry-run")
    assert len(one_line(info.value)) < 500


@pytest.mark.slow
def test_ctrl_c_while_the_points_are_checked_exits_130_in_one_line(tmp_path, tree):
    spec = write_spec(tmp_path, tree, grid={"model.optim.lr": [i / 1e4 for i in range(1, 5001)]})
    # Ctrl-C as a terminal delivers it, even where this test runs with SIGINT ignored (a
    # background job of a script): an ignored SIGINT would be inherited, and the sweep never told.
    process = subprocess.Popen([sys.executable, "-m", "wrn", "sweep", "run", str(spec), "--out",
                                str(tmp_path / "out"), "--dry-run"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: process.stderr.readline().startswith("checking 5,000 points"),
                 "the sweep to start checking", process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- bad places


def test_out_that_is_a_file_under_a_file_or_read_only_is_one_line(tmp_path, tree, monkeypatch):
    spec = write_spec(tmp_path, tree, points=[{}])
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, message in ((a_file, "is a file, not a folder"),
                         (a_file / "sub" / "out", f"{a_file} is a file, not a folder")):
        for command in ("run", "status"):
            with pytest.raises(ValueError, match=message) as info:
                sweep(command, spec, "--out", out)
            one_line(info.value)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(read_only)
                        else real_access(path, mode))
    with pytest.raises(ValueError, match=r"read-only is not writable \(permission denied\)"):
        sweep("run", spec, "--out", read_only / "out")
    assert sweep("run", spec, "--out", read_only / "out", "--dry-run") == 0  # reads only
    assert not (read_only / "out").exists()


@pytest.mark.parametrize("gpus,message", [("3,3,3", "device 3 named twice"),
                                          ("0", "no device 0"), ("1,7", "no device")])
def test_gpu_ids_must_be_distinct_visible_devices(tmp_path, tree, gpus, message):
    import torch

    if torch.cuda.is_available() and gpus != "3,3,3" and torch.cuda.device_count() > 7:
        pytest.skip("these ids exist here")
    spec = write_spec(tmp_path, tree, points=[{}])
    with pytest.raises(ValueError, match=message) as info:
        sweep("run", spec, "--out", tmp_path / "out", "--gpus", gpus, "--dry-run")
    assert f"--gpus {gpus}" in one_line(info.value)


def test_a_ray_address_that_cannot_be_joined_is_named_with_the_reason(tmp_path, tree):
    import socket

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ValueError, match=rf"--address 127.0.0.1:{port}: cannot join the Ray cluster: "
                                         r"nothing answers at .*Connection refused"):
        probe_address(f"127.0.0.1:{port}")
    # Ray itself raises a bare ConnectionError; a refused token shows only in what its core logs.
    refused = join_error("10.0.0.1:6379", ConnectionError("Failed to connect to Ray cluster"),
                         "gcs_client.cc:210: Failed to get cluster ID from GCS server: "
                         "Unauthenticated: RPC error: InvalidAuthToken: Authentication token is "
                         "missing or incorrect")
    assert refused.startswith("--address 10.0.0.1:6379: cannot join the Ray cluster: it refused")
    assert "RAY_AUTH_MODE=token" in refused and "RAY_AUTH_TOKEN" in refused
    other = join_error("10.0.0.1:6379", ConnectionError("Failed to connect to Ray cluster"))
    assert "ConnectionError: Failed to connect" in other and "GCS port" in other


@pytest.mark.slow
def test_a_damaged_sweep_json_is_named_and_the_next_run_repairs_it(finished, tmp_path, capsys):
    import shutil

    spec, original = finished
    out = tmp_path / "out"
    shutil.copytree(original, out)
    run_dir = next((out / RUNS_DIR).iterdir())
    whole = (out / "results.csv").read_text()
    (run_dir / "sweep.json").write_text('{"run_id": "cut sho')
    capsys.readouterr()
    with pytest.raises(ValueError, match="no run records"):  # its only run is left out, and said so
        sweep("summarize", out)
    assert f"{run_dir}: sweep.json is missing or damaged" in capsys.readouterr().err
    assert sweep("run", spec, "--out", out) == 0  # nothing to run; the record is rewritten
    assert (out / "results.csv").read_text().replace(str(out), str(original)) == whole
    capsys.readouterr()
    assert sweep("summarize", out) == 0
    assert "damaged" not in capsys.readouterr().err
