"""The `wrn` command: LightningCLI subcommands (fit, validate, test, predict) and the package's own
(count, sweep, plot, table), each of which owns its argument parser."""

from __future__ import annotations

import importlib
import os
import signal
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
    from wrn.predict import DEFAULT_OUT, FolderPredictData, PredictionWriter

    class WRNCLI(LightningCLI):
        def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            parser.set_defaults(weights_only=True)  # checkpoints hold tensors and plain data only
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

        def before_test(self) -> None:
            self._test_started = time.perf_counter()

        def before_predict(self) -> None:
            writer = self._get(self.config_init, "predictions")
            if not writer.out:  # beside the evaluation's record, never into the run's own files
                writer.out = str(self.record_dir / DEFAULT_OUT)
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
            parser.link_arguments("seed_everything", "model.seed", compute_fn=_int_seed)
            parser.link_arguments("seed_everything", "data.seed", compute_fn=_int_seed)
            parser.link_arguments("trainer.enable_progress_bar", "data.progress", lambda on: on is not False)
            parser.link_arguments("data.augment", "model.crop_size", compute_fn=_crop_size)
            parser.link_arguments("data.pad", "model.pad")
            parser.link_arguments("data.pad_mode", "model.pad_mode")
            # Every command accepts it, so that a fit's config.yaml serves `wrn test` as it is.
            parser.add_argument("--test_after_fit", type=bool, default=True,
                                help="fit: when the data root has a test split, evaluate the final "
                                     "weights (test_acc) and the best-validation checkpoint "
                                     "(test_acc_best) on it once, at the end; other commands ignore it")

        def parse_arguments(self, parser, args) -> None:
            # --print_config prints after the run's defaults are resolved: what the run will use.
            from jsonargparse._actions import _ActionPrintConfig
            from jsonargparse._link_arguments import ActionLink

            with _ActionPrintConfig.skip_print_config():
                super().parse_arguments(parser, args)
            print_request = getattr(parser, "print_config", None)
            if print_request is not None:  # jsonargparse skipped the links for printing
                del parser.print_config
                ActionLink.apply_parsing_links(parser, self.config)
                parser.print_config = print_request
            subcommand = self.config.get("subcommand")
            cfg = self.config[subcommand] if subcommand else self.config
            self.as_given = {"trainer.logger": cfg.trainer.logger, "ckpt_path": cfg.get("ckpt_path")}
            self.record_dir = resolve_run_defaults(cfg, subcommand) if subcommand else None
            _ActionPrintConfig.print_config_if_requested(parser, self.config)

        def _parse_ckpt_path(self) -> None:
            # Lightning would silently replace the configured model with the checkpoint's; a
            # mismatch is far more often a wrong path than a wish, so it is an error instead.
            subcommand = self.config.get("subcommand")
            cfg = self.config[subcommand] if subcommand else None
            if cfg is None or not cfg.get("ckpt_path"):
                return
            cfg.ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.trainer.default_root_dir)
            if cfg.ckpt_path and Path(cfg.ckpt_path).is_file():
                check_checkpoint_matches(cfg.ckpt_path, cfg.model)

        def before_instantiate_classes(self) -> None:
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            if cfg.model.get("seed") is None and _int_seed(cfg.seed_everything) is not None:
                cfg.model.seed = cfg.seed_everything  # seed_everything: true, now drawn
            trainer = cfg.trainer
            if torch.cuda.is_available() and trainer.accelerator in ("auto", "gpu", "cuda"):
                # Fast defaults on GPU unless the config chose otherwise.
                trainer.precision = trainer.precision or "bf16-mixed"
                trainer.benchmark = True if trainer.benchmark is None else trainer.benchmark
            self.save_config_kwargs = {**self.save_config_kwargs, "folder": self.record_dir,
                                       "as_given": self.as_given}

        def instantiate_trainer(self, **kwargs):
            from lightning.fabric.plugins import CheckpointIO

            from wrn.checkpoints import AtomicCheckpointIO, checkpoints_dir

            plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
            plugins = plugins if isinstance(plugins, list) else [plugins]
            if not any(isinstance(p, CheckpointIO) for p in plugins):
                kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
            trainer = super().instantiate_trainer(**kwargs)
            for callback in trainer.checkpoint_callbacks:  # whatever the loggers, next to the record
                callback.dirpath = str(checkpoints_dir(trainer.default_root_dir).resolve())
            return trainer

        def _run_subcommand(self, subcommand: str) -> None:
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            try:
                super()._run_subcommand(subcommand)
            except SIGTERMException:
                raise SystemExit(128 + signal.SIGTERM) from None  # Lightning's would exit 0
            except SystemExit as exc:  # Lightning exits 1 after Ctrl-C
                if exc.code == 1 and self.trainer.interrupted:
                    raise KeyboardInterrupt from None  # one line and exit 130 (wrn.cli._guarded)
                raise

        def after_fit(self) -> None:
            self._test_after_fit()
            if self.trainer.is_global_zero:
                console.say(console.fit_summary(self.trainer))

        def _test_after_fit(self) -> None:
            """The test split, once, at the end: the final weights, then the best-val checkpoint."""
            if self.trainer.interrupted or not self.config["fit"].get("test_after_fit"):
                return
            if not self.datamodule.has_test_split():
                return
            recorder = _recorder(self.trainer)
            self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
            recorder.record_test(self.trainer, self.model, "test_acc")
            best = _best_checkpoint(self.trainer)
            if best is not None:
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best,
                                  weights_only=True, verbose=False)
                recorder.record_test(self.trainer, self.model, "test_acc_best")

        def after_validate(self) -> None:
            self._record_evaluation("validate")

        def after_test(self) -> None:
            self._record_evaluation("test")
            if self.trainer.is_global_zero:
                console.say(console.evaluation_summary(
                    self.trainer, time.perf_counter() - self._test_started,
                    console.count_test_images(self.datamodule)))

        def _record_evaluation(self, stage: str) -> None:
            ckpt_path = self.config[stage].get("ckpt_path")
            _recorder(self.trainer).record_evaluation(self.trainer, self.model, self.record_dir,
                                                      stage, ckpt_path)

    return WRNCLI


def _int_seed(seed) -> int | None:
    """seed_everything as the run seed: an int, or None for true/false (true is drawn later)."""
    return None if isinstance(seed, bool) or seed is None else int(seed)


def _crop_size(augment: str) -> int:
    return 28 if augment == "crop-28" else 32


def resolve_run_defaults(cfg, subcommand: str | None) -> Path:
    """Fill in what the config left to the defaults, so that --print_config, the saved config and
    the run agree: weights_only, the run folder, the loggers. Returns the folder of this
    command's own record: the run folder for fit, RUN/eval/<command>-<time> for evaluations
    (which never write into the run's own files)."""
    if subcommand and cfg.get("weights_only") is None:
        cfg.weights_only = True  # also for old configs that saved weights_only: null
    trainer = cfg.trainer
    if not trainer.default_root_dir:
        trainer.default_root_dir = default_run_dir(cfg.model, cfg.seed_everything)
    root = Path(trainer.default_root_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"trainer.default_root_dir {root} is a file, not a folder; "
                         "give the folder the run should write into")
    record_dir = root if subcommand in (None, "fit") else _evaluation_dir(root, subcommand)
    if trainer.logger is not False:
        trainer.logger = _run_loggers(trainer.logger, str(root), record_dir)
    return record_dir


def _run_loggers(configured, root: str, record_dir: Path) -> list:
    """The run's own logs first (fit: CSV and TensorBoard in the run folder; an evaluation: CSV
    in its own folder), then every configured logger (`--trainer.logger+=WandbLogger`) but those
    that would write the run's own logs again (configs saved by earlier versions list them)."""
    fit_defaults = _default_loggers(root)
    own = fit_defaults if record_dir == Path(root) else [
        _logger("CSVLogger", str(record_dir.parent), record_dir.name)]
    if configured in (None, True):
        return own
    configured = configured if isinstance(configured, list) else [configured]

    def key(entry) -> tuple:
        entry = entry.as_dict() if hasattr(entry, "as_dict") else entry
        if not isinstance(entry, dict):
            return (id(entry),)
        args = entry.get("init_args") or {}
        return (entry.get("class_path"), str(args.get("save_dir")), args.get("name"), args.get("version"))

    taken = {key(entry) for entry in fit_defaults + own}
    return own + [entry for entry in configured if key(entry) not in taken]


def _evaluation_dir(root: Path, subcommand: str) -> Path:
    """RUN/eval/<command>-<YYYYmmdd-HHMMSS>[-n]: one new folder per evaluation."""
    import time

    base = root / "eval" / f"{subcommand}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def resolve_ckpt_path(ckpt_path: str, run_dir: str) -> str | None:
    """--ckpt_path as Lightning will load it. The run's own last checkpoint ('last', or its path)
    falls back past an unreadable file (wrn.checkpoints.resolve_last); a folder or an empty file is
    a ValueError naming it."""
    from wrn.checkpoints import LAST, checkpoints_dir, resolve_last

    own_last = checkpoints_dir(run_dir) / LAST
    if ckpt_path == "last" or (Path(ckpt_path).exists() and own_last.exists()
                               and Path(ckpt_path).resolve() == own_last.resolve()):
        return resolve_last(run_dir)
    path = Path(ckpt_path)
    if path.is_dir():
        raise ValueError(f"--ckpt_path is a directory: {ckpt_path}; give a checkpoint file "
                         f"(e.g. {path / 'checkpoints' / LAST}) or 'last'")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"--ckpt_path {ckpt_path}: checkpoint is empty or truncated (an empty file)")
    return ckpt_path


def _recorder(trainer):
    from wrn.recorder import RunRecorder

    return next(cb for cb in trainer.callbacks if isinstance(cb, RunRecorder))


def _best_checkpoint(trainer) -> str | None:
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor and callback.best_model_path and Path(callback.best_model_path).is_file():
            return callback.best_model_path
    return None


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
    """CSV and TensorBoard (a dependency; skipped with a warning where it is missing), both
    writing into the run folder itself, so metrics.csv lies next to metrics.json and TensorBoard
    reads RUN/tb. The saved config.yaml keeps `logger: null` for these defaults, so it replays
    into whatever folder a later command names, on machines with or without TensorBoard."""
    import warnings

    loggers = [_logger("CSVLogger", root, "")]
    if _installed("tensorboard") or _installed("tensorboardX"):
        loggers.append(_logger("TensorBoardLogger", root, "tb"))
    else:
        warnings.warn("tensorboard is not installed: this run has no TensorBoard log "
                      "(pip install tensorboard)", stacklevel=2)
    return loggers


def _logger(name: str, save_dir: str, version: str) -> dict:
    """A Lightning logger writing into save_dir/version."""
    return {"class_path": f"lightning.pytorch.loggers.{name}",
            "init_args": {"save_dir": save_dir, "name": "", "version": version}}


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_lightning(argv: list[str]) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from wrn.data import CIFARData
    from wrn.module import LitClassifier
    from wrn.recorder import ConfigSaver, RunRecorder

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
        save_config_callback=ConfigSaver, save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
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
