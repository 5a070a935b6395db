"""What the Lightning training loop adds to each step: `wrn fit`'s loop against a bare loop.

    python benchmarks/loop_overhead.py                         # CPU: WRN-10-1, batch 2, S = 1 and 8
    python benchmarks/loop_overhead.py --device cuda --model wrn-16-8 --batch-size 128 --copies 1

Both loops train the same network on the same device-resident batches (DeviceLoader over
synthetic uint8 images, crop and flip on the device) with the same SGD, in one process:
  bare       forward, loss, backward, optimizer step; nothing else
  lightning  Trainer.fit of the LitClassifier that `wrn fit` trains (its metrics, NaN watch and
             lr schedule), progress bar, logger and checkpoints off
A tiny model on the CPU makes the step cheap, so the difference is the loop's host time per
step. On a GPU that host time is hidden while it is shorter than the GPU's step, and is the
epoch time when it is longer; fused networks (--copies S) log S more metrics per step.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from wrn.data import CropFlip, DeviceLoader, Split, StackedLoader
from wrn.models.fused import fused_loss
from wrn.module import LitClassifier

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NUM_CLASSES = 10
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # per channel, [0, 1] units
AUGMENTATION = CropFlip(crop=32, pad=4, pad_mode="reflect", flip=True)  # pad-crop-32 + flip


def load_throughput():
    """benchmarks/ is a folder of scripts: device naming and syncing live in throughput.py."""
    spec = importlib.util.spec_from_file_location("throughput", Path(__file__).with_name("throughput.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


throughput = load_throughput()


def batches(copies: int, batch_size: int, count: int, device: torch.device):
    """`count` batches of (images, labels) for a copies=S network, one epoch of S independently
    seeded DeviceLoaders over synthetic uint8 images resident on the device."""
    generator = torch.Generator().manual_seed(0)
    loaders = []
    for seed in range(copies):
        images = count * batch_size
        split = Split(torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator),
                      torch.randint(0, NUM_CLASSES, (images,), generator=generator))
        loaders.append(DeviceLoader(split, batch_size, MEAN, STD, AUGMENTATION, shuffle=True,
                                    drop_last=True, seed=seed, device=device))
    return loaders[0] if copies == 1 else StackedLoader(loaders)


def bare_seconds_per_step(module: LitClassifier, loader, device: torch.device, warmup: int, steps: int) -> float:
    net = module.net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    data = iter(loader)
    for step in range(warmup + steps):
        if step == warmup:
            throughput.sync(device)
            start = time.perf_counter()
        images, labels = next(data)
        with autocast:
            logits = net(images)
            loss = F.cross_entropy(logits, labels) if labels.dim() == 1 else fused_loss(logits, labels)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    throughput.sync(device)
    return (time.perf_counter() - start) / steps


class StepClock(L.Callback):
    """Wall time from the start of step `warmup` to the end of step warmup + steps."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.seconds_per_step: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            throughput.sync(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup + self.steps:
            throughput.sync(pl_module.device)
            self.seconds_per_step = (time.perf_counter() - self._start) / self.steps


def lightning_seconds_per_step(module: LitClassifier, loader, device: torch.device, warmup: int,
                               steps: int) -> float:
    clock = StepClock(warmup, steps)
    trainer = L.Trainer(accelerator=device.type, devices=1, max_steps=warmup + steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock],
                        precision="bf16-mixed" if device.type == "cuda" else "32-true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no validation loader", "few batches": on purpose here
        trainer.fit(module, train_dataloaders=loader)
    return clock.seconds_per_step


def measure(model: str, copies: int, batch_size: int, device: torch.device, warmup: int, steps: int,
            repeats: int) -> dict:
    """Fastest of `repeats` alternating rounds of each loop: a shared machine's noise only ever
    slows a round down, and alternating keeps drifts (clocks, other load) off the ratio."""
    def fresh() -> LitClassifier:
        L.seed_everything(0, verbose=False)
        return LitClassifier(name=model, num_classes=NUM_CLASSES, copies=copies)

    count = warmup + steps  # one epoch: no epoch-end work inside the timed steps
    bare = loop = float("inf")
    for _ in range(repeats):
        bare = min(bare, bare_seconds_per_step(fresh(), batches(copies, batch_size, count, device),
                                               device, warmup, steps))
        loop = min(loop, lightning_seconds_per_step(fresh(), batches(copies, batch_size, count, device),
                                                    device, warmup, steps))
    return {"model": model, "copies": copies, "batch": batch_size, "ms_per_step_bare": 1e3 * bare,
            "ms_per_step_lightning": 1e3 * loop, "overhead_ms_per_step": 1e3 * (loop - bare),
            "ratio": loop / bare}


def format_report(result: dict) -> str:
    lines = [f"{result['device']}, torch {result['torch']}, lightning {result['lightning']}, "
             f"{result['steps']} timed steps after {result['warmup']}, fastest of {result['repeats']} rounds", "",
             "| model | S | batch | bare ms/step | lightning ms/step | overhead ms/step | lightning/bare |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["runs"]:
        lines.append(f"| {r['model']} | {r['copies']} | {r['batch']} | {r['ms_per_step_bare']:.2f} | "
                     f"{r['ms_per_step_lightning']:.2f} | {r['overhead_ms_per_step']:.2f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", default="wrn-10-1", help="registry name")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 8], help="fused copies S, each measured")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step per copy")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per loop; the fastest counts")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier timings)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON record")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.warmup, args.repeats, *args.copies) < 1:
        parser.error("--steps, --batch-size, --copies, --warmup and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    name = throughput.device_name(device)
    result = {"device": name, "device_type": device.type, "torch": torch.__version__,
              "lightning": L.__version__, "steps": args.steps, "warmup": args.warmup,
              "repeats": args.repeats,
              "runs": [measure(args.model, s, args.batch_size, device, args.warmup, args.steps, args.repeats)
                       for s in args.copies]}
    throughput.save_record(result, args.out / f"loop-overhead-{throughput.slug(name)}.json",
                           format_report(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
