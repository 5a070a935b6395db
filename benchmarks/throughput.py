"""Training throughput and MFU: a naive eager step against the step this package trains with.

    python benchmarks/throughput.py --device cuda               # the six models, H100/H200 peak
    python benchmarks/throughput.py --device cpu                # small models, few steps
    python benchmarks/throughput.py --device cuda --compile --data-pipeline --markdown

Measured per model, in one process so the ratios compare like with like:
  reference  eager fp32 NCHW, default SGD, `.item()` on the loss every step (what naive code does)
  ours       bf16 autocast (CUDA), channels_last, cudnn.benchmark, fused SGD, losses summed on
             the device and read once at the end; optionally torch.compile of the model,
             or (--graph) the whole step replayed from one CUDA graph
  fused      small models: one copies=S network on S stacked batches against S separate runs of
             our step one after another (S x batch images per fused step)
  pipeline   (--data-pipeline) our WRN-16-1 step fed by `wrn.data.DeviceLoader` (gather, crop,
             flip, normalise on the device) against a fixed synthetic on-device batch

MFU = 6 x fvcore multiply-adds per image x images/s / peak flop/s: a multiply-add is 2 flops and
the backward pass costs about twice the forward. Every step is measured against one peak (dense
bf16 on CUDA), so the fp32 reference's MFU also shows what it leaves on the table.
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts
from step import EagerStep, make_step  # noqa: E402

from wrn.complexity import count_params, fvcore_macs  # noqa: E402
from wrn.data.augment import normalize  # noqa: E402
from wrn.files import atomic_write_json  # noqa: E402
from wrn.models import create_model  # noqa: E402
from wrn.models.fused import fused_loss  # noqa: E402

ALL_MODELS = ("wrn-16-1", "wrn-16-4", "wrn-16-8", "wrn-28-10", "resnet-110", "resnet-1202")
FUSED_COPIES = (4, 8)  # networks per fused model
PIPELINE_MODEL = "wrn-16-1"  # small enough that a slow loader would show


@dataclass(frozen=True)
class DeviceDefaults:
    models: tuple[str, ...]
    fused_models: tuple[str, ...]
    batch_size: int  # images per step per network
    steps: int  # timed steps per measurement
    warmup: int  # untimed steps first (cudnn autotuning, torch.compile, allocator)


DEFAULTS = {
    "cuda": DeviceDefaults(ALL_MODELS, ("wrn-16-1", "wrn-16-4"), batch_size=128, steps=50,
                           warmup=10),
    # 2 shared cores: the small models at a small batch finish in a couple of minutes.
    "cpu": DeviceDefaults(("wrn-16-1", "wrn-16-4", "resnet-110"), ("wrn-16-1",), batch_size=32,
                          steps=3, warmup=2),
}

# Dense bf16 tensor-core peak from NVIDIA's datasheets, TFLOP/s; H100 SXM and H200 share it.
H100_SXM_H200_BF16_TFLOPS = 989.4
CPU_MATMUL_SIZE = 2048  # square fp32 matmul side for the CPU peak estimate (17 GFLOP per product)
CPU_MATMUL_REPEATS = 5  # timed products per library; the fastest counts (shared CPUs get busy)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per channel, [0, 1] units
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per channel, [0, 1] units
NUM_CLASSES = 10
IMAGE_SIZE = 32  # pixels per side
PIPELINE_IMAGES = 50_000  # uint8 images resident for the loader: CIFAR-10's training set
SGD_SETTINGS = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)  # WRN paper
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    device: torch.device
    batch_size: int  # images per step per network
    steps: int
    warmup: int
    compile: str | None  # torch.compile mode for our step; None = eager
    graph: bool = False  # our step replayed from one CUDA graph (step.CapturedStep)


# ---------------------------------------------------------------- device and peak


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {cpu_name()}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def save_record(result: dict, path: Path, report: str) -> Path:
    """A benchmark's record, written atomically, and its report printed: every script ends so."""
    atomic_write_json(path, result)
    print(report)
    print(f"\nwrote {path}")
    return path


def datasheet_tflops(name: str) -> float | None:
    """Dense bf16 peak for the GPUs we know by name; None asks the user for --peak-tflops.
    H100 PCIe and NVL have lower clocks and peaks, so only the SXM part (and H200) match."""
    name = name.upper()
    if "H200" in name or ("H100" in name and not any(v in name for v in ("PCIE", "NVL"))):
        return H100_SXM_H200_BF16_TFLOPS
    return None


def fastest_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: thread pool, caches, oneDNN primitive creation
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_matmul_tflops(size: int = CPU_MATMUL_SIZE, repeats: int = CPU_MATMUL_REPEATS) -> float:
    """Best fp32 rate of a size^3 matrix product on this CPU: a practical ceiling, below the
    datasheet peak. The product also runs as a 1x1 convolution, i.e. through oneDNN like the
    model's convs: MKL's sgemm can run at half that rate (AVX2 code on AMD CPUs), and a peak
    below what the convs reach would put MFU above 100%."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    image = torch.randn(1, size, size // IMAGE_SIZE, IMAGE_SIZE)  # size channels x size pixels
    kernel = torch.randn(size, size, 1, 1)
    with torch.no_grad():
        seconds = min(fastest_seconds(lambda: a @ b, repeats),
                      fastest_seconds(lambda: F.conv2d(image, kernel), repeats))
    return 2 * size**3 / seconds / 1e12


def peak_tflops(device: torch.device, name: str, override: float | None) -> tuple[float, str]:
    """(peak TFLOP/s, where it comes from)."""
    if override is not None:
        return override, "--peak-tflops"
    if device.type == "cpu":
        return cpu_matmul_tflops(), (f"estimated: fastest fp32 {CPU_MATMUL_SIZE}^3 matmul on "
                                     "this CPU (MKL or oneDNN), not a datasheet peak")
    tflops = datasheet_tflops(name)
    if tflops is None:
        raise SystemExit(f"no known bf16 peak for {name!r}; pass --peak-tflops")
    return tflops, f"dense bf16 datasheet peak of {name}"


# ---------------------------------------------------------------- data sources


Batch = tuple[Tensor, Tensor]  # normalised float images, int64 labels


def synthetic_source(batch_size: int, copies: int, device: torch.device) -> Callable[[], Batch]:
    """A fixed random uint8 batch on the device, normalised every call as a loader would.
    copies > 1: S images stacked along channels, labels (N, S), as the fused model expects."""
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3 * copies, IMAGE_SIZE, IMAGE_SIZE),
                           dtype=torch.uint8, device=device, generator=generator)
    label_shape = (batch_size,) if copies == 1 else (batch_size, copies)
    labels = torch.randint(0, NUM_CLASSES, label_shape, device=device, generator=generator)
    # Device tensors, so normalising never copies from the host inside the timed loop.
    mean = torch.tensor(CIFAR10_MEAN * copies, device=device)
    std = torch.tensor(CIFAR10_STD * copies, device=device)
    return lambda: (normalize(images, mean, std), labels)


def loader_source(batch_size: int, device: torch.device) -> Callable[[], Batch]:
    """Batches from the package's device-resident training loader over random uint8 images."""
    from wrn.data import CropFlip, DeviceLoader, Split  # only this measurement needs wrn.data

    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (PIPELINE_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE),
                           dtype=torch.uint8, device=device, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (PIPELINE_IMAGES,), device=device, generator=generator)
    loader = DeviceLoader(Split(images, labels), batch_size, CIFAR10_MEAN, CIFAR10_STD,
                          CropFlip(IMAGE_SIZE, pad=4, pad_mode="reflect", flip=True),
                          shuffle=True, drop_last=True, device=device)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch
    return lambda: next(batches)


# ---------------------------------------------------------------- the training steps


def make_sgd(model: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    if not fused:
        return torch.optim.SGD(model.parameters(), **SGD_SETTINGS)  # torch's default kernels
    try:
        return torch.optim.SGD(model.parameters(), **SGD_SETTINGS, fused=True)
    except RuntimeError:  # no fused kernel for this device: the multi-tensor one is next best
        return torch.optim.SGD(model.parameters(), **SGD_SETTINGS, foreach=True)


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    return fused_loss(logits, labels)[0] if logits.dim() == 3 else F.cross_entropy(logits, labels)


class TrainStep:
    """One SGD step per call on the next batch of `source`; `fast` picks our step over the
    reference. `finish()` is the one place our step waits for the device. `graph` replays our
    step from one CUDA graph (step.py; eager on CPU); `memory_format` overrides the step's own
    (channels_last for ours, NCHW for the reference)."""

    def __init__(self, model: torch.nn.Module, source: Callable[[], Batch], device: torch.device,
                 fast: bool, compile_mode: str | None = None, graph: bool = False,
                 memory_format: torch.memory_format | None = None):
        self.source, self.fast, self.device, self.graph = source, fast, device, graph
        self.autocast = fast and device.type == "cuda"  # CPU bf16 convs are slow: keep fp32
        default_format = torch.channels_last if fast else torch.contiguous_format
        self.memory_format = memory_format or default_format
        self.model = model.to(device=device, memory_format=self.memory_format).train()
        self.forward = torch.compile(self.model, mode=compile_mode) if compile_mode else self.model
        self.optimizer = make_sgd(self.model, fused=fast)
        self.step: EagerStep | None = None  # made at the first batch: a capture needs one
        self.loss_sum = torch.zeros((), device=device)
        self.host_losses: list[float] = []

    def __call__(self) -> None:
        images, labels = self.source()
        images = images.contiguous(memory_format=self.memory_format)
        if self.step is None:
            self.step = make_step(self.forward, self.optimizer, classification_loss, images, labels,
                                  graph=self.graph,
                                  autocast_dtype=torch.bfloat16 if self.autocast else None)
        loss = self.step(images, labels)
        if self.fast:
            self.loss_sum += loss  # stays on the device: the host runs ahead
        else:
            self.host_losses.append(loss.item())  # waits for the device every step

    def finish(self) -> float:
        """Sum of the losses so far, read with one host sync; non-finite means a broken step."""
        total = self.loss_sum.item() + sum(self.host_losses)
        if not math.isfinite(total):
            warnings.warn("training loss is not finite; the timing may not be representative")
        return total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: TrainStep, settings: Settings) -> float:
    """Mean wall seconds of a timed step after untimed warm-up; the device is synchronised
    before and after the timed loop, so queued work is neither missed nor double counted."""
    for _ in range(settings.warmup):
        step()
    step.finish()
    sync(settings.device)
    start = time.perf_counter()
    for _ in range(settings.steps):
        step()
    step.finish()
    sync(settings.device)
    return (time.perf_counter() - start) / settings.steps


def time_training(name: str, settings: Settings, fast: bool, copies: int = 1, seed: int = 0,
                  source: Callable[[], Batch] | None = None) -> float:
    """Seconds per step of a freshly built `name` (copies networks in one) on its own batches."""
    torch.manual_seed(seed)
    model = create_model(name, copies=copies, num_classes=NUM_CLASSES)
    source = source or synthetic_source(settings.batch_size, copies, settings.device)
    torch.backends.cudnn.benchmark = fast  # a global switch: set for each measurement
    step = TrainStep(model, source, settings.device, fast, settings.compile if fast else None,
                     graph=fast and settings.graph)
    seconds = seconds_per_step(step, settings)
    del step, model
    if settings.device.type == "cuda":
        torch.cuda.empty_cache()  # the next model should not inherit this one's fragmentation
    return seconds


# ---------------------------------------------------------------- measurements


def mfu(macs_per_image: int, images_per_sec: float, peak: float) -> float:
    return 6 * macs_per_image * images_per_sec / (peak * 1e12)


def measure_fused(name: str, settings: Settings, macs: int, peak: float,
                  copies_list: tuple[int, ...]) -> list[dict]:
    """Fused S-copy training against S separate runs of our step one after another (the first
    S of max(S) seeded runs, so S=4 and S=8 share their separate runs)."""
    run_seconds = [time_training(name, settings, fast=True, seed=seed)
                   for seed in range(max(copies_list))]
    results = []
    for copies in copies_list:
        images_per_step = copies * settings.batch_size
        fused_ips = images_per_step / time_training(name, settings, fast=True, copies=copies)
        separate_ips = images_per_step / sum(run_seconds[:copies])
        results.append({"copies": copies, "images_per_sec_separate": separate_ips,
                        "images_per_sec_fused": fused_ips, "speedup": fused_ips / separate_ips,
                        "mfu_separate": mfu(macs, separate_ips, peak),
                        "mfu_fused": mfu(macs, fused_ips, peak)})
    return results


def measure_model(name: str, settings: Settings, peak: float,
                  fused_copies: tuple[int, ...]) -> dict:
    counted = create_model(name, num_classes=NUM_CLASSES)  # counted on CPU, in eval mode
    macs, params = fvcore_macs(counted), count_params(counted)
    ref_ips = settings.batch_size / time_training(name, settings, fast=False)
    ours_ips = settings.batch_size / time_training(name, settings, fast=True)
    fused = measure_fused(name, settings, macs, peak, fused_copies) if fused_copies else []
    return {"model": name, "params": params, "macs": macs, "batch": settings.batch_size,
            "images_per_sec_ref": ref_ips, "images_per_sec_ours": ours_ips,
            "speedup": ours_ips / ref_ips, "mfu_ref": mfu(macs, ref_ips, peak),
            "mfu_ours": mfu(macs, ours_ips, peak), "fused": fused}


def measure_data_pipeline(settings: Settings) -> dict:
    synthetic = time_training(PIPELINE_MODEL, settings, fast=True)
    loader = time_training(PIPELINE_MODEL, settings, fast=True,
                           source=loader_source(settings.batch_size, settings.device))
    return {"model": PIPELINE_MODEL, "batch": settings.batch_size,
            "images_per_sec_synthetic": settings.batch_size / synthetic,
            "images_per_sec_loader": settings.batch_size / loader,
            "ratio": synthetic / loader}  # loader images/s over synthetic images/s


# ---------------------------------------------------------------- reporting


def render(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [headers, ["---"] + ["---:"] * (len(headers) - 1)] + rows  # numbers right-aligned
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
    lines = [headers, ["-" * w for w in widths]] + rows
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))) for cells in lines)


def format_report(result: dict, markdown: bool = False) -> str:
    models = result["models"]
    main_rows = [[m["model"], f"{m['params'] / 1e6:.2f}", f"{m['macs'] / 1e9:.3f}", str(m["batch"]),
                  f"{m['images_per_sec_ref']:.0f}", f"{m['images_per_sec_ours']:.0f}",
                  f"{m['speedup']:.2f}x", f"{m['mfu_ref']:.1%}", f"{m['mfu_ours']:.1%}"]
                 for m in models]
    compiled = f", torch.compile {result['compile']}" if result["compile"] else ""
    compiled += ", one CUDA graph per step" if result.get("graph") else ""
    parts = [f"{result['device']}, torch {result['torch']}, ours: {result['precision_ours']}"
             f"{compiled}; peak {result['peak_tflops']:.3g} TFLOP/s ({result['peak_source']}); "
             f"mean of {result['steps']} steps after {result['warmup']} warm-up",
             render(["model", "params M", "GMACs/img", "batch", "ref img/s", "ours img/s",
                     "ours/ref", "MFU ref", "MFU ours"], main_rows, markdown)]
    fused_rows = [[m["model"], str(f["copies"]), f"{f['images_per_sec_separate']:.0f}",
                   f"{f['images_per_sec_fused']:.0f}", f"{f['speedup']:.2f}x",
                   f"{f['mfu_separate']:.1%}", f"{f['mfu_fused']:.1%}"]
                  for m in models for f in m["fused"]]
    if fused_rows:
        parts.append(render(["model", "S", "S runs img/s", "fused img/s", "fused/runs",
                             "MFU runs", "MFU fused"], fused_rows, markdown))
    pipeline = result.get("data_pipeline")
    if pipeline:
        parts.append(render(["model", "batch", "synthetic img/s", "DeviceLoader img/s",
                             "loader/synthetic"],
                            [[pipeline["model"], str(pipeline["batch"]),
                              f"{pipeline['images_per_sec_synthetic']:.0f}",
                              f"{pipeline['images_per_sec_loader']:.0f}",
                              f"{pipeline['ratio']:.2f}x"]], markdown))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", help=f"default: all of {', '.join(ALL_MODELS)} "
                        "on CUDA, the small ones on CPU")
    parser.add_argument("--fused-models", nargs="*", help="those of --models also timed fused "
                        "(S copies) against S runs; default wrn-16-1 wrn-16-4 on CUDA, wrn-16-1 "
                        "on CPU")
    parser.add_argument("--copies", nargs="+", type=int, default=list(FUSED_COPIES),
                        help="networks per fused model")
    parser.add_argument("--steps", type=int, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, help="untimed steps before each measurement")
    parser.add_argument("--batch-size", type=int, help="images per step per network")
    parser.add_argument("--peak-tflops", type=float, help="device peak, TFLOP/s (required for "
                        "GPUs other than H100 SXM / H200; CPU default: a matmul estimate)")
    parser.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                        choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile the model in our step, in this mode (default: "
                        "default); reduce-overhead adds CUDA graphs, which is what lifts the "
                        "launch-bound small and deep nets; minutes to compile the deepest")
    parser.add_argument("--graph", action="store_true",
                        help="replay our step (forward, backward, SGD, BN buffers) from one CUDA "
                        "graph; the eager step on CPU")
    parser.add_argument("--data-pipeline", action="store_true",
                        help=f"also time {PIPELINE_MODEL} fed by wrn.data.DeviceLoader")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help="folder for <device-name>.json")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    defaults = DEFAULTS[args.device]
    for field in ("models", "fused_models", "steps", "warmup", "batch_size"):
        if getattr(args, field) is None:
            setattr(args, field, getattr(defaults, field))
    if min(args.steps, args.batch_size, *args.copies) < 1 or args.warmup < 0:
        parser.error("--steps, --batch-size and --copies must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    name = device_name(device)
    peak, peak_source = peak_tflops(device, name, args.peak_tflops)
    settings = Settings(device, args.batch_size, args.steps, args.warmup, args.compile, args.graph)
    result = {
        "device": name, "device_type": device.type, "torch": torch.__version__,
        "peak_tflops": peak, "peak_source": peak_source,
        "precision_ours": "bf16 autocast" if device.type == "cuda" else "fp32",
        "compile": args.compile, "graph": args.graph, "steps": args.steps, "warmup": args.warmup,
        "batch_size": args.batch_size,
        "models": [measure_model(m, settings, peak,
                                 tuple(args.copies) if m in args.fused_models else ())
                   for m in args.models],
        "data_pipeline": measure_data_pipeline(settings) if args.data_pipeline else None,
    }
    save_record(result, args.out / f"{slug(name)}.json", format_report(result, args.markdown))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
