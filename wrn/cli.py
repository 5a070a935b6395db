"""The `wrn` command: LightningCLI subcommands (fit, validate, test, predict) and the package's own
(count, sweep, plot, table), each of which owns its argument parser."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
DEBUG_ENV = "WRN_DEBUG"  # 1, true or yes: full tracebacks instead of one-line errors
DEBUG_ON = ("1", "true", "yes")


OWN_COMMANDS = {"count": "wrn.complexity", "sweep": "wrn.sweep.cli", "plot": "wrn.report.plot",
                "table": "wrn.report.tables"}  # command -> module with main(argv) -> exit code

COMMAND_HELP = {  # one line per command, in the order `wrn --help` lists them
    "fit": "train a model (--config FILE; --model.*, --data.*, --trainer.* override it)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "write class probabilities for the test split or a folder of images to a CSV",
    "count": "parameters and multiply-adds of named models (wrn count wrn-28-10 resnet-110)",
    "sweep": "run, inspect and summarize depth x width grids (run | status | summarize)",
    "plot": "error against parameters, FLOPs and time from a sweep's results.csv",
    "table": "paper-style tables (markdown, latex, csv) from a sweep's results.csv",
}


def usage() -> str:
    """`wrn --help`: every command with one line; built without importing torch or Lightning."""
    from wrn import __version__

    width = max(map(len, COMMAND_HELP))
    lines = ["usage: wrn COMMAND [ARGS]    (wrn COMMAND --help: that command's options)", "",
             f"wrn {__version__}: Wide ResNets against thin deep ResNets on CIFAR, from a name to a "
             "trade-off plot.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMAND_HELP.items()]
    lines += ["", "options:", "  -h, --help  this help", "  --version   the package version", "",
              f"{DEBUG_ENV}=1 shows full tracebacks instead of one-line errors."]
    return "\n".join(lines)


def default_run_dir(model_cfg, seed) -> str:
    """runs/<model>-seed<seed>: stable, so `--ckpt_path last` finds the run again."""
    name = _model_spec(model_cfg).name
    return str(Path("runs") / f"{name}-seed{seed if seed is not None else 'none'}")


def _make_cli_class():
    import time

    import torch
    from lightning.pytorch.cli import LightningCLI

    from wrn import console
    from wrn.data import DATASETS
    from wrn.predict import FolderPredictData, PredictionWriter

    class WRNCLI(LightningCLI):
        def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            if subcommand == "predict":
                parser.add_lightning_class_args(PredictionWriter, "predictions")
            console.put_package_options_first(parser)
            return parser

        def _instantiate_trainer(self, config: dict, callbacks: list):
            if config.get("enable_progress_bar") is not False and not console.has_progress_bar(config):
                callbacks = [*callbacks, console.progress_bar()]  # epochs counted from 1
            return super()._instantiate_trainer(config, callbacks)

        def before_fit(self) -> None:
            if self.trainer.is_global_zero:
                console.say(console.slow_cpu_warning(self.trainer, self.model, self.datamodule), sys.stderr)

        def after_fit(self) -> None:
            if self.trainer.is_global_zero:
                console.say(console.fit_summary(self.trainer))

        def before_test(self) -> None:
            self._test_started = time.perf_counter()

        def after_test(self) -> None:
            if self.trainer.is_global_zero:
                console.say(console.evaluation_summary(
                    self.trainer, time.perf_counter() - self._test_started,
                    console.count_test_images(self.datamodule)))

        def before_predict(self) -> None:
            writer = self._get(self.config_init, "predictions")
            if writer.images:
                self.datamodule = FolderPredictData(writer.images, self.datamodule)

        def after_predict(self) -> None:
            writer = self._get(self.config_init, "predictions")
            if self.trainer.is_global_zero and writer.written:
                console.say(f"predictions: {writer.written}")

        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.dataset", "model.num_classes",
                                  compute_fn=lambda dataset: DATASETS[dataset].num_classes)
            parser.link_arguments("model.copies", "data.copies")
            parser.link_arguments("seed_everything", "data.seed", lambda s: None if isinstance(s, bool) else s)
            parser.link_arguments("trainer.enable_progress_bar", "data.progress", lambda on: on is not False)

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
    command = argv[0] if argv else None
    if command in LIGHTNING_COMMANDS:
        sys.exit(_guarded(_lightning_command, argv))
    if command in OWN_COMMANDS:
        sys.exit(_guarded(lambda args: _own_command(command, args), argv[1:]))
    if command in ("-h", "--help"):
        print(usage())
        sys.exit(0)
    if command == "--version":
        from wrn import __version__

        print(f"wrn {__version__}")
        sys.exit(0)
    print(usage() if command is None else f"{usage()}\n\nerror: unknown command {command!r}",
          file=sys.stderr)
    sys.exit(2)


def _own_command(command: str, argv: list[str]) -> int | None:
    """count, sweep, plot or table, after the YAML files among its arguments (a sweep spec)
    passed the size check."""
    from wrn.errors import check_config_args

    check_config_args(argv)
    return importlib.import_module(OWN_COMMANDS[command]).main(argv)


def _lightning_command(argv: list[str]) -> None:
    """A Lightning subcommand, after its config files passed the size check and with third-party
    noise kept off the console."""
    from wrn.console import quiet_known_noise
    from wrn.errors import check_config_args

    check_config_args(argv)
    quiet_known_noise()
    run_lightning(argv)


def debugging() -> bool:
    """WRN_DEBUG=1 (or true, yes) asks for tracebacks; unset, 0, false or no do not."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in DEBUG_ON


def _guarded(command, argv) -> int:
    """Known user errors become one line on stderr and exit code 2 (130 for Ctrl-C);
    WRN_DEBUG=1 shows tracebacks."""
    from wrn.errors import INTERRUPTED_EXIT, interrupted, one_line_error

    if debugging():
        return command(argv) or 0
    try:
        return command(argv) or 0
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED_EXIT
    except SystemExit as exc:
        if interrupted(exc):  # Lightning's own Ctrl-C handling ends in sys.exit(1)
            print("error: interrupted (Ctrl-C)", file=sys.stderr)
            return INTERRUPTED_EXIT
        raise
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
