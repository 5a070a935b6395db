"""The `wrn` command: LightningCLI subcommands (fit, validate, test, predict) and the package's own
(count, sweep, plot, table), each of which owns its argument parser."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
DEBUG_ENV = "WRN_DEBUG"  # set to 1 for full tracebacks instead of one-line errors


OWN_COMMANDS = {"count": "wrn.complexity", "sweep": "wrn.sweep.cli", "plot": "wrn.plots",
                "table": "wrn.tables"}  # command -> module with main(argv) -> exit code


def default_run_dir(model_cfg, seed) -> str:
    """runs/<model>-seed<seed>: stable, so `--ckpt_path last` finds the run again."""
    name = _model_spec(model_cfg).name
    return str(Path("runs") / f"{name}-seed{seed if seed is not None else 'none'}")


def _make_cli_class():
    import torch
    from lightning.pytorch.cli import LightningCLI

    from wrn.data import DATASETS

    class WRNCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.dataset", "model.num_classes",
                                  compute_fn=lambda dataset: DATASETS[dataset].num_classes)
            parser.link_arguments("model.copies", "data.copies")

        def _parse_ckpt_path(self) -> None:
            # Lightning would silently replace the configured model with the checkpoint's; a
            # mismatch is far more often a wrong path than a wish, so it is an error instead.
            subcommand = self.config.get("subcommand")
            cfg = self.config[subcommand] if subcommand else None
            if cfg is not None and cfg.get("ckpt_path") and Path(cfg.ckpt_path).is_file():
                check_checkpoint_matches(cfg.ckpt_path, cfg.model)

        def before_instantiate_classes(self) -> None:
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            if self.subcommand and cfg.get("weights_only") is None:
                cfg.weights_only = True  # checkpoints hold tensors and plain data only
            trainer = cfg.trainer
            if not trainer.default_root_dir:
                trainer.default_root_dir = default_run_dir(cfg.model, cfg.seed_everything)
            root = trainer.default_root_dir
            if trainer.logger in (None, True):
                trainer.logger = _default_loggers(root)
            if torch.cuda.is_available() and trainer.accelerator in ("auto", "gpu", "cuda"):
                # Fast defaults on GPU unless the config chose otherwise.
                trainer.precision = trainer.precision or "bf16-mixed"
                trainer.benchmark = True if trainer.benchmark is None else trainer.benchmark

    return WRNCLI


def _model_spec(model_cfg):
    from wrn.models import model_spec_from_config

    return model_spec_from_config(model_cfg)


def check_checkpoint_matches(ckpt_path: str, model_cfg) -> None:
    """ValueError naming both networks when the checkpoint was trained as another architecture."""
    import torch
    from jsonargparse import Namespace

    from wrn.errors import checkpoint_load_error

    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - refused or unreadable: one line naming the file
        message = checkpoint_load_error(exc)
        if message is None:
            raise
        raise ValueError(f"{ckpt_path}: {message}") from None
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if "name" not in hparams:
        return
    saved = _model_spec(Namespace(**{**hparams, "arch": hparams.get("arch") or {}}))
    wanted = _model_spec(model_cfg)
    if saved != wanted:
        differs = sorted(k for k in set(saved.args) | set(wanted.args)
                         if saved.args.get(k) != wanted.args.get(k))
        detail = ", ".join(f"{k}: {saved.args.get(k)} vs {wanted.args.get(k)}" for k in differs)
        raise ValueError(f"checkpoint {ckpt_path} holds {saved.name}, the config asks for "
                         f"{wanted.name} ({detail})")


def _default_loggers(root: str) -> list[dict]:
    """CSV always, TensorBoard when installed; both write into the run directory itself, so the
    saved config.yaml lies next to metrics.json."""
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": root, "name": "", "version": ""}}]
    if _installed("tensorboard") or _installed("tensorboardX"):
        loggers.append({"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {"save_dir": root, "name": "", "version": "tb"}})
    return loggers


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_lightning(argv: list[str]) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from wrn.data import CIFARData
    from wrn.module import LitClassifier
    from wrn.recorder import RunRecorder

    # last.ckpt has a callback of its own: Lightning (>= 2.6) rewrites a monitored callback's
    # last.ckpt only in epochs that improve the monitor, so a killed run would resume from its best
    # epoch rather than its latest. No version counter: resuming always finds checkpoints/last.ckpt.
    callbacks = [RunRecorder(),
                 ModelCheckpoint(filename="best", monitor="val_acc", mode="max",
                                 auto_insert_metric_name=False),
                 ModelCheckpoint(filename="last", enable_version_counter=False)]
    _make_cli_class()(
        LitClassifier, CIFARData, args=None if argv == sys.argv[1:] else argv, seed_everything_default=0,
        trainer_defaults={"callbacks": callbacks, "max_epochs": 200},
        save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
        parser_kwargs={"prog": "wrn", "exit_on_error": False,
                       "description": "Train and evaluate WRN / ResNet on CIFAR."})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in LIGHTNING_COMMANDS or argv[:1] in (["-h"], ["--help"]):
        sys.exit(_guarded(run_lightning, argv))
    if argv and argv[0] in OWN_COMMANDS:
        command = importlib.import_module(OWN_COMMANDS[argv[0]]).main
        sys.exit(_guarded(command, argv[1:]))
    print("usage: wrn {" + ",".join(LIGHTNING_COMMANDS + tuple(OWN_COMMANDS)) + "} ...\n"
          "  fit/validate/test/predict --config FILE   train and evaluate (LightningCLI)\n"
          "  count NAME...                             parameters and multiply-adds\n"
          "  sweep run|status|summarize ...            depth x width grids\n"
          "  plot RESULTS.csv / table RESULTS.csv      trade-off figures and paper tables",
          file=sys.stderr)
    return sys.exit(2)


def _guarded(command, argv) -> int:
    """Known user errors become one line on stderr and exit code 2; WRN_DEBUG=1 shows tracebacks."""
    from wrn.errors import one_line_error

    if os.environ.get(DEBUG_ENV):
        return command(argv) or 0
    try:
        return command(argv) or 0
    except Exception as exc:  # noqa: BLE001 - turned into a one-line message or re-raised
        message = one_line_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


class ConfigError(ValueError):
    """A config that does not parse: unknown key, wrong type, unreadable file."""


class FitConfigChecker:
    """Parses `wrn fit` argument lists exactly as the CLI would, without instantiating or running;
    the parser is built once, so checking every point of a sweep costs milliseconds each."""

    def __init__(self):
        import logging

        from wrn.data import CIFARData
        from wrn.module import LitClassifier

        logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)

        class Checker(_make_cli_class()):
            def instantiate_classes(self) -> None:  # parsing is all a check needs
                pass

        self._cli = Checker(LitClassifier, CIFARData, args=[], run=False,
                            seed_everything_default=0, auto_configure_optimizers=False,
                            parser_kwargs={"exit_on_error": False})

    def check(self, argv: list[str]):
        """The parsed config (a jsonargparse Namespace); ConfigError for keys or types the CLI
        would reject, ValueError for a model the registry would reject."""
        import torch

        try:
            config = self._cli.parser.parse_args(argv)
        except SystemExit as exc:
            raise ConfigError(f"invalid config {' '.join(argv)} (exit {exc.code})") from None
        except Exception as exc:  # jsonargparse's ArgumentError and friends
            raise ConfigError(" ".join(str(exc).split())) from None
        spec = _model_spec(config.model)
        with torch.device("meta"):  # runs every constructor check, allocates nothing
            spec.build()
        return config
