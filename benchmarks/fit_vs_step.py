"""`wrn fit` against its own training step: the same model, batch, precision and data, in one run.

    python benchmarks/fit_vs_step.py --data-root DIR                    # CPU: wrn-10-1, 3 epochs
    python benchmarks/fit_vs_step.py --data-root DIR --device cuda \\
        --models wrn-16-8 wrn-28-10 resnet-110 resnet-1202 preact-resnet-164 --graph \\
        --channels-last auto off

Per model, on the training part (after `subset` and the validation split) of the data under
--data-root, for --epochs epochs of the same steps:
  step  the bare step of benchmarks/throughput.py (forward, loss, backward, SGD; bf16 autocast on
        CUDA, fp32 on CPU) on the device-resident loader's batches; no validation, no checkpoints
  fit   `wrn fit` itself (wrn.train.run_lightning: the run record, both checkpoints, the progress
        bar, validation every epoch) on the same loader, plus a clock callback that only reads
        the time at hooks (and wraps Trainer.save_checkpoint to time it)
The first epoch (cudnn autotuning, allocator, loader start) is excluded from both images/s; fit's
images/s is per steady epoch, validation and checkpoint writes included. On CUDA, host-device
syncs are counted with torch.cuda.set_sync_debug_mode("warn") between the first and last step of
each epoch (the logging points), per step. --graph also times the step replayed from one CUDA
graph (benchmarks/step.py); each --channels-last value after the first times the step in that layout too.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts
from loop_overhead import throughput  # noqa: E402  (throughput.py, loaded once, shared)

from wrn.train import run_lightning  # noqa: E402
from wrn.data import CIFARData, DeviceLoader  # noqa: E402
from wrn.models import create_model  # noqa: E402
from wrn.files import atomic_write_json  # noqa: E402

RESULTS_DIR = throughput.RESULTS_DIR
NUM_CLASSES = 10  # CIFAR-10
SYNC_WARNING = "synchronizing CUDA operation"  # text of set_sync_debug_mode's warnings
# Half CIFAR-10 epochs (22.5k images) for the wide nets; fewer for the deep thin ones, which run
# at hundreds of images/s until fixed, so that the GPU run stays within minutes.
GPU_SUBSETS = "2500 resnet-110=1000 preact-resnet-164=1000 resnet-1202=200"
CHANNELS_LAST = {"auto": None, "on": True, "off": False}  # --channels-last -> model.channels_last


# ---------------------------------------------------------------- the fit's clock


def sync(device: torch.device) -> None:
    throughput.sync(device)


class SyncCounter:
    """Counts host-device syncs on CUDA while open (set_sync_debug_mode("warn") + recorded
    warnings); `count` is None where nothing can be counted (CPU, or warnings not seen)."""

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda" and self._warnings_are_seen(device)
        self._caught: list = []
        self._context = None

    @staticmethod
    def _warnings_are_seen(device: torch.device) -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            torch.zeros((), device=device).item()  # one sync, to check it is counted
            torch.cuda.set_sync_debug_mode("default")
        return any(SYNC_WARNING in str(w.message) for w in caught)

    def open(self) -> None:
        if self.enabled and self._context is None:
            self._context = warnings.catch_warnings(record=True)
            self._caught = self._context.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def close(self) -> None:
        if self._context is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._context.__exit__(None, None, None)
            self._context = None

    @property
    def is_open(self) -> bool:
        return self._context is not None

    @property
    def count(self) -> int | None:
        if not self.enabled:
            return None
        return sum(SYNC_WARNING in str(w.message) for w in self._caught)


class PhaseClock(L.Callback):
    """Per epoch: wall seconds, the seconds spent in validation and in checkpoint writes, images
    trained, and host syncs between its first and last training step. Written to `out` (JSON)
    when the fit ends. The device is synchronised at the edges of what it times, once per phase,
    never inside a step."""

    def __init__(self, out: str):
        self.out = out
        self.epochs: list[dict] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.device = trainer.strategy.root_device
        self.syncs = SyncCounter(self.device)
        save = trainer.save_checkpoint

        def timed_save(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            save(*args, **kwargs)
            sync(self.device)
            if self.epochs:
                self.epochs[-1]["checkpoint_seconds"] += time.perf_counter() - start

        trainer.save_checkpoint = timed_save  # this trainer only; put back at teardown

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.syncs.close()
        trainer.__dict__.pop("save_checkpoint", None)

    def _close_epoch(self) -> None:
        if self.epochs and "seconds" not in self.epochs[-1]:
            sync(self.device)
            epoch = self.epochs[-1]
            epoch["seconds"] = time.perf_counter() - epoch.pop("_start")
            epoch["rest_seconds"] = epoch["seconds"] - epoch["validation_seconds"] - epoch["checkpoint_seconds"]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close_epoch()
        sync(self.device)
        self.epochs.append({"epoch": trainer.current_epoch, "images": 0, "validation_seconds": 0.0,
                            "checkpoint_seconds": 0.0, "steps_between_logging": 0, "syncs": None,
                            "_start": time.perf_counter()})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == trainer.num_training_batches - 1 and batch_idx > 0:
            self._count_syncs_until_now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.epochs[-1]["images"] += len(batch[1])
        if batch_idx == 0 and trainer.num_training_batches > 2:
            self.syncs.open()
        elif self.syncs.is_open:
            self.epochs[-1]["steps_between_logging"] += 1

    def _count_syncs_until_now(self) -> None:
        if self.syncs.is_open:
            self.syncs.close()
            self.epochs[-1]["syncs"] = self.syncs.count

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self.epochs:
            sync(self.device)
            self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self.epochs:
            sync(self.device)
            self.epochs[-1]["validation_seconds"] += time.perf_counter() - self._validation_start

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close_epoch()
        atomic_write_json(self.out, {"epochs": self.epochs})


# ---------------------------------------------------------------- the two measurements


@dataclass(frozen=True)
class DataSize:
    subset: int  # training images per class kept
    val_size: int  # images of those held out for validation


def data_size(args: argparse.Namespace, model: str) -> DataSize:
    """--subset's MODEL=N entry for `model`, else its plain number; validation: --val-size, else
    a tenth of the images."""
    subset = args.subset.get(model, args.subset[None])
    return DataSize(subset, args.val_size if args.val_size is not None else subset)


def fit_args(args: argparse.Namespace, model: str, size: DataSize, run_dir: Path,
             clock_out: Path) -> list[str]:
    """`wrn fit`'s command line for this measurement: the recipe's defaults, the benchmark's data."""
    clock = {"class_path": f"{PhaseClock.__module__}.PhaseClock", "init_args": {"out": str(clock_out)}}
    return ["fit", "--model.name", model, "--model.channels_last", json.dumps(CHANNELS_LAST[args.channels_last[0]]),
            "--data.root", str(args.data_root), "--data.subset", str(size.subset),
            "--data.val_size", str(size.val_size), "--data.batch_size", str(args.batch_size),
            "--data.loader", "gpu", "--data.num_workers", "0",
            "--trainer.accelerator", args.device, "--trainer.devices", "1",
            "--trainer.max_epochs", str(args.epochs), "--trainer.default_root_dir", str(run_dir),
            "--trainer.enable_model_summary", "false", f"--trainer.callbacks+={json.dumps(clock)}",
            *shlex.split(args.fit_args)]


def measure_fit(args: argparse.Namespace, model: str, size: DataSize, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    clock_out = workdir / f"{model}-clock.json"
    run_lightning(fit_args(args, model, size, workdir / model, clock_out))
    epochs = json.loads(clock_out.read_text())["epochs"]
    steady = epochs[1:]
    images, seconds = sum(e["images"] for e in steady), sum(e["seconds"] for e in steady)
    train_seconds = sum(e["rest_seconds"] for e in steady)
    steps = sum(e["steps_between_logging"] for e in steady)
    syncs = [e["syncs"] for e in steady]
    return {"fit_images_per_sec": images / seconds, "fit_train_images_per_sec": images / train_seconds,
            "syncs_per_step": None if None in syncs or not steps else sum(syncs) / steps,
            "steps_per_epoch": epochs[0]["images"] // args.batch_size,
            "epoch_seconds": [e["seconds"] for e in epochs],
            "validation_seconds": [e["validation_seconds"] for e in epochs],
            "checkpoint_seconds": [e["checkpoint_seconds"] for e in epochs],
            "rest_seconds": [e["rest_seconds"] for e in epochs]}


def training_loader(args: argparse.Namespace, size: DataSize, device: torch.device) -> DeviceLoader:
    """The batches `wrn fit` trains on: the same split, augmentation and loader, seeded alike."""
    data = CIFARData(root=str(args.data_root), subset=size.subset, val_size=size.val_size,
                     batch_size=args.batch_size, loader="gpu", num_workers=0)
    data.prepare_data()
    data.setup("fit")
    return DeviceLoader(data.train_set, args.batch_size, data.mean, data.std, data.train_augmentation,
                        shuffle=True, drop_last=True, seed=0, device=device)


def memory_format(choice: str, device: torch.device) -> torch.memory_format:
    """--channels-last auto follows the module: channels_last on CUDA, NCHW on the CPU."""
    on = CHANNELS_LAST[choice] if choice != "auto" else device.type == "cuda"
    return torch.channels_last if on else torch.contiguous_format


def step_images_per_sec(args: argparse.Namespace, model: str, loader: DeviceLoader, graph: bool,
                        layout: str) -> float:
    """The bare step over as many steps as the fit trains, its first epoch untimed."""
    device = torch.device(args.device)
    steps_per_epoch = len(loader)
    batches = (batch for _ in range(args.epochs + 1) for batch in loader)  # one spare epoch: capture
    settings = throughput.Settings(device, args.batch_size, steps=(args.epochs - 1) * steps_per_epoch,
                                   warmup=steps_per_epoch, compile=None, graph=graph)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # as `wrn fit` on CUDA
    step = throughput.TrainStep(create_model(model, num_classes=NUM_CLASSES), lambda: next(batches),
                                device, fast=True, graph=graph, memory_format=memory_format(layout, device))
    seconds = throughput.seconds_per_step(step, settings)
    del step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return args.batch_size / seconds


def measure_model(args: argparse.Namespace, model: str, workdir: Path) -> dict:
    """--repeats alternating rounds of step and fit, the fastest of each kept: a shared machine's
    noise only ever slows a round down."""
    device = torch.device(args.device)
    size = data_size(args, model)
    loader = training_loader(args, size, device)
    by_format: dict[str, float] = {}
    fit: dict = {}
    for round_ in range(args.repeats):
        for layout in args.channels_last:
            ips = step_images_per_sec(args, model, loader, graph=False, layout=layout)
            by_format[layout] = max(ips, by_format.get(layout, 0.0))
        candidate = measure_fit(args, model, size, workdir / f"round{round_}")
        if candidate["fit_images_per_sec"] > fit.get("fit_images_per_sec", 0.0):
            fit = candidate
    step_ips = by_format[args.channels_last[0]]
    row = {"name": model, "batch_size": args.batch_size, "subset": size.subset,
           "val_size": size.val_size, "train_images_per_epoch": len(loader) * args.batch_size,
           "step_images_per_sec": step_ips,
           **fit, "ratio": fit["fit_images_per_sec"] / step_ips,
           "channels_last": args.channels_last[0], "step_images_per_sec_by_channels_last": by_format}
    if args.graph:
        row["graph_step_images_per_sec"] = max(
            step_images_per_sec(args, model, loader, graph=True, layout=args.channels_last[0])
            for _ in range(args.repeats))
    return row


# ---------------------------------------------------------------- report and entry point


def format_report(result: dict) -> str:
    lines = [f"{result['device']}, torch {result['torch']}, {result['epochs']} epochs, the first "
             "excluded; fit = `wrn fit` with validation every epoch, two checkpoints, run record, "
             "progress bar", "",
             "| model | batch | images/epoch | step img/s | fit img/s | fit/step | syncs/step | graph step img/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in result["models"]:
        syncs = "n/a" if m["syncs_per_step"] is None else f"{m['syncs_per_step']:.2f}"
        graph = f"{m['graph_step_images_per_sec']:.0f}" if "graph_step_images_per_sec" in m else "-"
        lines.append(f"| {m['name']} | {m['batch_size']} | {m['train_images_per_epoch']} | "
                     f"{m['step_images_per_sec']:.0f} | "
                     f"{m['fit_images_per_sec']:.0f} | {m['ratio']:.2f} | {syncs} | {graph} |")
    lines += ["", "| model | epoch | seconds | validation s | checkpoint s | rest s |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in result["models"]:
        for e, parts in enumerate(zip(m["epoch_seconds"], m["validation_seconds"],
                                      m["checkpoint_seconds"], m["rest_seconds"])):
            lines.append(f"| {m['name']} | {e} | " + " | ".join(f"{p:.2f}" for p in parts) + " |")
    formats = [m for m in result["models"] if len(m["step_images_per_sec_by_channels_last"]) > 1]
    if formats:
        layouts = formats[0]["step_images_per_sec_by_channels_last"]
        lines += ["", "| model | " + " | ".join(f"step img/s, channels_last {c}" for c in layouts) + " |",
                  "| --- |" + " ---: |" * len(layouts)]
        for m in formats:
            lines.append(f"| {m['name']} | " + " | ".join(
                f"{v:.0f}" for v in m["step_images_per_sec_by_channels_last"].values()) + " |")
    return "\n".join(lines)


def parse_subsets(parser: argparse.ArgumentParser, values: list[str] | None, default: str) -> dict:
    """["N", "MODEL=N", ...] -> {None: N, "MODEL": N}."""
    subsets: dict = {}
    for value in values or default.split():
        model, _, number = value.rpartition("=")
        if not number.isdigit():
            parser.error(f"--subset {value}: expected N or MODEL=N with N an integer")
        subsets[model or None] = int(number)
    if None not in subsets:
        parser.error("--subset needs a plain N for the models not named")
    return subsets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data-root", type=Path, default=os.environ.get("WRN_DATA"),
                        help="CIFAR-10 folder with train/<class>/ images (default: $WRN_DATA)")
    parser.add_argument("--models", nargs="+", help="registry names (default: wrn-10-1 on CPU; "
                        "wrn-16-8 wrn-28-10 resnet-110 resnet-1202 preact-resnet-164 on CUDA)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: 32 CPU, 128 CUDA)")
    parser.add_argument("--subset", nargs="+", help="training images per class kept: N for "
                        f"every model, MODEL=N for one (default: 100 on CPU; {GPU_SUBSETS} on CUDA)")
    parser.add_argument("--val-size", type=int, help="images held out for validation "
                        "(default: a tenth of the model's images)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (>= 2; the first is excluded)")
    parser.add_argument("--graph", action="store_true", help="also time the step replayed from "
                        "one CUDA graph (the eager step on CPU)")
    parser.add_argument("--channels-last", nargs="+", choices=tuple(CHANNELS_LAST), default=["auto"],
                        help="memory format of the fit and the step (the first value); each further "
                        "value times the step in that format too. auto: channels_last on CUDA only")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds of step and "
                        "fit per model; the fastest of each counts")
    parser.add_argument("--fit-args", default="", help="more `wrn fit` arguments, one string, "
                        "e.g. \"--trainer.enable_progress_bar false\" to see what the bar costs")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier timings "
                        "on a shared machine); 0 keeps torch's choice")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON record")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    if args.data_root is None or not (args.data_root / "train").is_dir():
        parser.error(f"--data-root {args.data_root} has no train/ folder (or set WRN_DATA)")
    args.models = args.models or (["wrn-16-8", "wrn-28-10", "resnet-110", "resnet-1202",
                                   "preact-resnet-164"] if cuda else ["wrn-10-1"])
    args.batch_size = args.batch_size or (128 if cuda else 32)
    args.subset = parse_subsets(parser, args.subset, default=GPU_SUBSETS if cuda else "100")
    if args.epochs < 2 or min(args.batch_size, *args.subset.values(), args.val_size or 1, args.repeats) < 1:
        parser.error("--epochs must be >= 2; --batch-size, --subset, --val-size, --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads and args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = throughput.device_name(device)
    with tempfile.TemporaryDirectory(prefix="fit-vs-step-") as workdir:
        models = [measure_model(args, model, Path(workdir)) for model in args.models]
    result = {"device": name, "torch": torch.__version__, "lightning": L.__version__,
              "threads": torch.get_num_threads(), "repeats": args.repeats, "fit_args": args.fit_args, "epochs": args.epochs, "models": models}
    throughput.save_record(result, args.out / f"fit-vs-step-{throughput.slug(name)}.json",
                           format_report(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
