"""The throughput benchmark runs end to end on CPU and writes a complete, positive JSON record."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    # benchmarks/ is a folder of scripts, not a package: load the file as a module.
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def throughput():
    yield load_script("throughput")
    sys.modules.pop("throughput", None)


MODEL_KEYS = {"model", "params", "macs", "batch", "images_per_sec_ref", "images_per_sec_ours",
              "speedup", "mfu_ref", "mfu_ours", "fused"}
FUSED_KEYS = {"copies", "images_per_sec_separate", "images_per_sec_fused", "speedup",
              "mfu_separate", "mfu_fused"}
PIPELINE_KEYS = {"model", "batch", "images_per_sec_synthetic", "images_per_sec_loader", "ratio"}


def test_cpu_run_writes_the_expected_record(throughput, tmp_path, capsys):
    throughput.main(["--device", "cpu", "--models", "wrn-10-1", "--fused-models", "wrn-10-1",
                     "--copies", "2", "--steps", "2", "--warmup", "1", "--batch-size", "4",
                     "--data-pipeline", "--out", str(tmp_path), "--markdown"])
    [path] = tmp_path.glob("cpu*.json")
    record = json.loads(path.read_text())
    assert record["device_type"] == "cpu" and record["torch"] and record["peak_tflops"] > 0
    assert "estimated" in record["peak_source"]
    [model] = record["models"]
    assert MODEL_KEYS <= model.keys() and model["model"] == "wrn-10-1"
    assert all(model[k] > 0 for k in MODEL_KEYS - {"model", "fused"})
    [fused] = model["fused"]
    assert FUSED_KEYS <= fused.keys() and fused["copies"] == 2
    assert all(fused[k] > 0 for k in FUSED_KEYS)
    pipeline = record["data_pipeline"]
    assert PIPELINE_KEYS <= pipeline.keys()
    assert all(pipeline[k] > 0 for k in PIPELINE_KEYS - {"model"})
    printed = capsys.readouterr().out
    assert "| wrn-10-1 |" in printed and str(path) in printed


@pytest.mark.parametrize("name,tflops", [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H200", 989.4),
    ("NVIDIA H100 PCIe", None), ("NVIDIA A100-SXM4-80GB", None)])
def test_only_known_gpus_get_a_default_peak(throughput, name, tflops):
    assert throughput.datasheet_tflops(name) == tflops


LOOP_KEYS = {"model", "copies", "batch", "ms_per_step_bare", "ms_per_step_lightning",
             "overhead_ms_per_step", "ratio"}


def test_loop_overhead_cpu_run_writes_the_expected_record(tmp_path, capsys):
    loop_overhead = load_script("loop_overhead")
    try:
        loop_overhead.main(["--copies", "1", "2", "--steps", "3", "--warmup", "1", "--repeats", "1",
                            "--out", str(tmp_path)])
    finally:
        sys.modules.pop("loop_overhead", None), sys.modules.pop("throughput", None)
    [path] = tmp_path.glob("loop-overhead-cpu*.json")
    record = json.loads(path.read_text())
    assert record["device_type"] == "cpu" and record["lightning"] and record["steps"] == 3
    assert [run["copies"] for run in record["runs"]] == [1, 2]
    for run in record["runs"]:
        assert LOOP_KEYS <= run.keys() and run["model"] == "wrn-10-1" and run["batch"] == 2
        assert run["ms_per_step_bare"] > 0 and run["ms_per_step_lightning"] > 0 and run["ratio"] > 0
        assert run["overhead_ms_per_step"] == pytest.approx(
            run["ms_per_step_lightning"] - run["ms_per_step_bare"])
    printed = capsys.readouterr().out
    assert "| wrn-10-1 | 2 | 2 |" in printed and str(path) in printed
