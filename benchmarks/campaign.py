"""Every GPU figure of the package from one call, within a fixed time (a short slot on a GPU):

    python benchmarks/campaign.py --data-root DIR --out DIR [--seconds 540]
    python benchmarks/campaign.py --rehearse --data-root DIR --out DIR    # the same steps on a CPU

Steps, in order of value; each writes its records as they come, so a timeout or a crash keeps
everything before it, and campaign.json says what each step did and how long it took:
  tests     the CUDA-only tests: the captured step equals the eager step; no host sync in a fit
  speed     `wrn fit` against its bare step (WRN-16-8, WRN-28-10) and the WRN paper's headline:
            images/s and seconds per 45,000-image epoch of WRN-40-4 against ResNet-1202 and
            ResNet-110 (benchmarks/fit_vs_step.py, on subsets sized to take seconds)
  sweep     WRN paper Table 4 and ResNet-110 on the training split, each run ending on the test
            split (sweeps/campaign.yaml), with --time-budget what is left: the runs that fit
  report    figures, `wrn table` and `wrn table --paper` from the sweep's records
Everything under --out is laid out as the repository is, to be committed as it is (records and
figures only: no checkpoints, no paths of the machine): benchmarks/results/<gpu>/,
sweeps/results/<gpu>-campaign/, plots/<gpu>-campaign/. The sweep itself trains in --work.

--rehearse runs the same steps at toy scale on the CPU (a few images per class of the real data,
WRN-10-1-sized models, one epoch), so that the script is tested where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT_SECONDS = 45  # kept for the figures and tables after the sweep
SPEC = REPO / "sweeps" / "campaign.yaml"
SPEED_MODELS = {  # model -> training images per class for the speed step (CUDA)
    "wrn-16-8": 2250, "wrn-28-10": 2250, "wrn-40-4": 900, "resnet-110": 900, "resnet-1202": 200}
HEADLINE = ("wrn-40-4", "resnet-1202", "resnet-110")  # wide against thin deep
REHEARSAL_MODELS = {"wrn-16-8": "wrn-10-1", "wrn-28-10": "resnet-8", "wrn-40-4": "wrn-10-1",
                    "resnet-110": "resnet-8", "resnet-1202": "resnet-8"}  # stand-ins on a CPU
REHEARSAL_PER_CLASS = (60, 20)  # training and test images per class of the rehearsal's data
CUDA_TESTS = ("tests/test_speed_step.py", "tests/test_speed_host_sync.py", "-k", "on_cuda")
EXPORTED = ("metrics.json", "epochs.jsonl", "config.yaml", "sweep.json")  # of each run folder
EPOCH_IMAGES = 45_000  # CIFAR-10 training images after the 5,000 held out


@dataclass
class Step:
    name: str
    outcome: str = "not run"  # ok | failed (exit N) | timed out | skipped: why
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Campaign:
    out: Path
    work: Path
    data_root: Path
    rehearse: bool
    deadline: float
    gpu: str = ""
    data: Path | None = None  # what the steps train on: data_root, or the rehearsal's few images
    steps: list[Step] = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def results(self) -> Path:
        return self.out / "benchmarks" / "results" / self.gpu

    @property
    def sweep_out(self) -> Path:
        return self.out / "sweeps" / "results" / f"{self.gpu}-campaign"

    @property
    def plots(self) -> Path:
        return self.out / "plots" / f"{self.gpu}-campaign"

    def clean(self, text: str) -> str:
        """`text` without this machine's paths: what is committed names places, not folders."""
        places = {str(self.work): "WORK", str(self.out): "OUT", str(self.data_root): "path/to/cifar10",
                  str(REPO): ".", sys.executable: "python"}
        for place, placeholder in sorted(places.items(), key=lambda item: -len(item[0])):
            text = text.replace(place, placeholder)
        return text

    def log(self, text: str) -> None:
        text = self.clean(text)
        with open(self.out / "campaign.log", "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        print(text.rstrip("\n"), flush=True)

    def save(self) -> None:
        from wrn.files import atomic_write_json

        atomic_write_json(self.out / "campaign.json", {
            "gpu": self.gpu, "rehearsal": self.rehearse, "steps": [asdict(s) for s in self.steps]})

    def command(self, step: Step, argv: list[str], seconds: float) -> str:
        """One process of the step, stopped at `seconds`; its output goes into the log and is
        returned. A failure or a timeout is the step's outcome."""
        self.log(f"$ {' '.join(argv)}")
        try:
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=max(1, seconds),
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired as exc:
            step.outcome = "timed out"
            output = _text(exc.stdout) + _text(exc.stderr)
        else:
            output = done.stdout + done.stderr
            if done.returncode not in (0, 3):  # 3: a sweep with runs left for another slot
                step.outcome = f"failed (exit {done.returncode})"
        self.log(output)
        return output


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def run_step(campaign: Campaign, name: str, body, reserve: float = 0.0) -> None:
    step = Step(name)
    campaign.steps.append(step)
    started = time.monotonic()
    if campaign.left() - reserve <= 5:
        step.outcome = "skipped: no time left"
    else:
        try:
            step.detail = body(campaign, step, campaign.left() - reserve) or ""
            step.outcome = "ok" if step.outcome == "not run" else step.outcome
        except Exception as exc:  # noqa: BLE001 - a broken step must not lose the others
            step.outcome = f"failed ({type(exc).__name__}: {exc})"
    step.seconds = round(time.monotonic() - started, 1)
    campaign.log(f"== {name}: {step.outcome} in {step.seconds} s {step.detail}")
    campaign.save()


def tests_step(campaign: Campaign, step: Step, seconds: float) -> str:
    report = campaign.results / "cuda-tests.txt"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CUDA_TESTS]
    output = campaign.command(step, argv, min(seconds, 180))
    report.write_text(campaign.clean(output))
    return f"{output.strip().splitlines()[-1] if output.strip() else ''} ({report.name})"


def speed_step(campaign: Campaign, step: Step, seconds: float) -> str:
    if campaign.rehearse:
        models = [REHEARSAL_MODELS[m] for m in SPEED_MODELS]
        models = list(dict.fromkeys(models))
        sizes = ["6", "--val-size", "10", "--batch-size", "10", "--threads", "0"]
        args = ["--device", "cpu", "--models", *models, "--subset", *sizes]
    else:
        args = ["--device", "cuda", "--models", *SPEED_MODELS, "--subset",
                *(f"{m}={n}" for m, n in SPEED_MODELS.items())]
    argv = [sys.executable, "benchmarks/fit_vs_step.py", "--data-root", str(campaign.data),
            "--epochs", "2", "--out", str(campaign.results), *args]
    campaign.command(step, argv, min(seconds, 300))
    records = sorted(campaign.results.glob("fit-vs-step-*.json"))
    if not records:
        return "no record"
    record = records[0]
    rows = {row["name"]: row for row in json.loads(record.read_text())["models"]}
    names = [REHEARSAL_MODELS[m] if campaign.rehearse else m for m in HEADLINE]
    headline = {"device": json.loads(record.read_text())["device"], "rehearsal": campaign.rehearse,
                "models": {}}
    for paper_name, name in zip(HEADLINE, names):
        if name in rows:
            rate = rows[name]["fit_images_per_sec"]
            headline["models"][paper_name] = {
                "measured_as": name, "fit_images_per_sec": rate,
                "seconds_per_cifar_epoch": EPOCH_IMAGES / rate if rate else None}
    wide, thin = (headline["models"].get(m) for m in HEADLINE[:2])
    if wide and thin and thin["seconds_per_cifar_epoch"]:
        headline["thin_over_wide_seconds_per_epoch"] = \
            thin["seconds_per_cifar_epoch"] / wide["seconds_per_cifar_epoch"]
    from wrn.files import atomic_write_json

    atomic_write_json(campaign.results / "headline.json", headline)
    return f"{record.name}: {len(rows)} rows; headline.json"


def rehearsal_data(campaign: Campaign) -> Path:
    """A few real images per class, linked from --data-root (train and test)."""
    root = campaign.work / "data"
    if root.is_dir():
        return root
    for split, count in zip(("train", "test"), REHEARSAL_PER_CLASS):
        for folder in sorted((campaign.data_root / split).iterdir()):
            if not folder.is_dir():
                continue
            (root / split / folder.name).mkdir(parents=True, exist_ok=True)
            for image in sorted(folder.iterdir())[:count]:
                target = root / split / folder.name / image.name
                if not target.exists():
                    target.symlink_to(image.resolve())
    return root


def rehearsal_spec(campaign: Campaign) -> Path:
    import yaml

    spec = campaign.work / "campaign-rehearsal.yaml"
    base = {"seed_everything": 0,
            "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                        "enable_model_summary": False},
            "model": {"name": "wrn-10-1", "optim": {"schedule": "onecycle"}},
            "data": {"val_size": 100, "batch_size": 32, "num_workers": 0, "download": False}}
    (campaign.work / "base.yaml").write_text(yaml.safe_dump(base))
    points = [{"model.name": name} for name in ("wrn-10-1", "wrn-10-2", "resnet-8")]
    spec.write_text(yaml.safe_dump({"base": "base.yaml", "points": points}, sort_keys=False))
    return spec


def sweep_step(campaign: Campaign, step: Step, seconds: float) -> str:
    data, spec = campaign.data, rehearsal_spec(campaign) if campaign.rehearse else SPEC
    work = campaign.work / "sweep"
    budget = max(10, int(seconds) - 15)
    argv = [sys.executable, "-m", "wrn", "sweep", "run", str(spec), "--out", str(work),
            "--data.root", str(data), "--time-budget", f"{budget}s", "--speeds", str(campaign.results),
            "--speeds", str(REPO / "benchmarks" / "results"), "--max-retries", "0"]
    campaign.command(step, argv, seconds)
    return export_sweep(campaign, work)


def export_sweep(campaign: Campaign, work: Path) -> str:
    """The sweep's records without checkpoints, logs or this machine's paths."""
    from wrn.report.results import RESULTS_FILE

    if not (work / RESULTS_FILE).is_file():
        return "no results.csv"
    out = campaign.sweep_out
    for path in [work / RESULTS_FILE, *sorted(work.rglob("*"))]:
        if path.is_file() and (path == work / RESULTS_FILE or path.name in EXPORTED):
            text = campaign.clean(path.read_text(encoding="utf-8"))
            target = out / path.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    rows = (out / RESULTS_FILE).read_text().count("\n") - 1
    return f"{rows} result rows in {out.relative_to(campaign.out)}"


def report_step(campaign: Campaign, step: Step, seconds: float) -> str:
    from wrn.report import plot, tables
    from wrn.report.results import RESULTS_FILE

    results = campaign.sweep_out / RESULTS_FILE
    if not results.is_file():
        step.outcome = "skipped: no results.csv"
        return ""
    campaign.plots.mkdir(parents=True, exist_ok=True)
    written = []
    for name, argv in (("table.md", []), ("paper.md", ["--paper"])):
        with open(campaign.plots / name, "w", encoding="utf-8") as f:
            code = _captured(f, tables.main, [str(results), "--format", "markdown", *argv])
        written.append(f"{name} (exit {code})")
    code = plot.main([str(results), "--out", str(campaign.plots), "--formats", "png,svg", "--paper"])
    return f"figures (exit {code}), {', '.join(written)} in {campaign.plots.relative_to(campaign.out)}"


def _captured(stream, function, argv) -> int:
    import contextlib

    with contextlib.redirect_stdout(stream):
        return function(argv)


def gpu_name(rehearse: bool) -> str:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from throughput import slug

    if rehearse:
        return "cpu-rehearsal"
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device; run with --rehearse on a CPU")
    return slug(torch.cuda.get_device_name(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="CIFAR-10: train/ and test/ trees")
    parser.add_argument("--out", type=Path, required=True, help="where the records go, laid out as the repository")
    parser.add_argument("--work", type=Path, help="where the sweep trains (default: a temporary folder)")
    parser.add_argument("--seconds", type=float, help="the whole campaign's time (default: 540; "
                        "rehearsal 300)")
    parser.add_argument("--rehearse", action="store_true", help="the same steps at toy scale on a CPU")
    args = parser.parse_args(argv)
    if not (args.data_root / "train").is_dir() or not (args.data_root / "test").is_dir():
        parser.error(f"--data-root {args.data_root}: no train/ and test/ folders")
    started = time.monotonic()
    args.seconds = args.seconds or (300 if args.rehearse else 540)
    with tempfile.TemporaryDirectory(prefix="wrn-campaign-") as scratch:
        campaign = Campaign(args.out.resolve(), (args.work or Path(scratch)).resolve(),
                            args.data_root.resolve(), args.rehearse, started + args.seconds)
        campaign.gpu = gpu_name(args.rehearse)
        for folder in (campaign.results, campaign.work):
            folder.mkdir(parents=True, exist_ok=True)
        campaign.data = rehearsal_data(campaign) if args.rehearse else campaign.data_root
        campaign.log(f"campaign on {campaign.gpu}: {args.seconds:.0f} s, records in {campaign.out}")
        run_step(campaign, "tests", tests_step, reserve=REPORT_SECONDS)
        run_step(campaign, "speed", speed_step, reserve=REPORT_SECONDS)
        run_step(campaign, "sweep", sweep_step, reserve=REPORT_SECONDS)
        run_step(campaign, "report", report_step)
    failed = [s.name for s in campaign.steps if s.outcome != "ok"]
    campaign.log(f"campaign done in {time.monotonic() - started:.0f} s"
                 + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
