"""`wrn fit | validate | test | predict`: the LightningCLI over `LitClassifier` and `CIFARData`, the
run folder and loggers each command writes into, and the config checker a sweep plans with."""

from __future__ import annotations

import inspect
import signal
import sys
import time
from pathlib import Path

import torch
import yaml
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wrn import console, rundir
from wrn.data import DATASETS, CIFARData
from wrn.data.augment import crop_size
from wrn.errors import interruption
from wrn.models import model_spec_from_config
from wrn.module import LitClassifier
from wrn.predict import DEFAULT_OUT, FolderPredictData, PredictionWriter
from wrn.recorder import RunRecorder

SIGTERM_EXIT = 128 + signal.SIGTERM
AS_GIVEN = ("trainer.logger", "ckpt_path", "trainer.precision", "trainer.benchmark",
            "model.channels_last", "data.loader")


class ConfigError(ValueError):
    """A config that does not parse: unknown key, wrong type, unreadable file."""


def run_seed(seed) -> int | None:
    """seed_everything as the run seed; None for true (drawn later) and false."""
    return None if isinstance(seed, bool) or seed is None else int(seed)


def classes_of(dataset: str) -> int:
    return DATASETS[dataset].num_classes


def shows_progress(enable_progress_bar) -> bool:
    return enable_progress_bar is not False


class WRNCLI(LightningCLI):
    # Lightning's private API, in one place (tests/test_train.py pins both methods).
    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        # The only place a subcommand's own arguments can be added: `wrn predict`'s CSV writer.
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_lightning_class_args(PredictionWriter, "predictions")
        if subcommand in ("validate", "test"):
            parser.set_defaults(verbose=False)  # the summary says it, to one decimal
        return parser

    def _parse_ckpt_path(self) -> None:
        # Lightning would silently replace the configured model with the checkpoint's; a mismatch
        # is far more often a wrong path than a wish, so it is an error instead.
        cfg = self.config.get(self.config.get("subcommand") or "")
        if cfg is None or not cfg.get("ckpt_path"):
            return
        cfg.ckpt_path = rundir.resolve_ckpt_path(cfg.ckpt_path, cfg.trainer.default_root_dir)
        if cfg.ckpt_path and Path(cfg.ckpt_path).is_file():
            check_checkpoint_matches(cfg.ckpt_path, cfg.model)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.dataset", "model.num_classes", compute_fn=classes_of)
        parser.link_arguments("model.copies", "data.copies")
        parser.link_arguments("seed_everything", "model.seed", compute_fn=run_seed)
        parser.link_arguments("seed_everything", "data.seed", compute_fn=run_seed)
        parser.link_arguments("trainer.enable_progress_bar", "data.progress", compute_fn=shows_progress)
        parser.link_arguments("data.augment", "model.crop_size", compute_fn=crop_size)
        parser.link_arguments("data.pad", "model.pad")
        parser.link_arguments("data.pad_mode", "model.pad_mode")
        # Every command accepts it, so that a fit's config.yaml serves `wrn test` as it is.
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="fit: when the data root has a test split, evaluate the final "
                                 "weights (test_acc) and the best-validation checkpoint "
                                 "(test_acc_best) on it once, at the end; other commands ignore it")
        parser.add_argument("--allow_slow", type=bool, default=False,
                            help="fit: train even when this CPU would take days; without it such a "
                                 "run stops before training, with its estimate and a quicker command")
        console.put_package_options_first(parser)

    def parse_arguments(self, parser, args) -> None:
        """Parses, then fills in what the run will use, so that --print_config, the saved config
        and the run agree."""
        args = list(sys.argv[1:] if args is None else args)
        printing = any(arg.split("=")[0] == "--print_config" for arg in args)
        self.config = parser.parse_args([arg for arg in args if arg.split("=")[0] != "--print_config"])
        subcommand = self.config.get("subcommand")
        cfg = self.config[subcommand] if subcommand else self.config
        # Saved as given: the run's own loggers and this machine's choices are made again wherever
        # the config is replayed.
        self.as_given = {key: cfg.get(key) for key in AS_GIVEN}
        self.settings = rundir.run_settings(cfg.as_dict())  # as asked, before this machine's defaults
        self.record_dir = resolve_run_defaults(cfg, subcommand) if subcommand else None
        if subcommand == "fit" and not printing:  # a fresh start and a resume alike
            rundir.refuse_other_settings(self.record_dir, self.settings)
        if printing:  # after the links and the defaults above: what the run will use
            dump = parser.dump(self.config, skip_none=False, skip_link_targets=False)
            if subcommand:
                dump = yaml.safe_dump(yaml.safe_load(dump)[subcommand], sort_keys=False)
            sys.stdout.write(dump)
            sys.exit(0)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.model.get("seed") is None and run_seed(cfg.seed_everything) is not None:
            cfg.model.seed = cfg.seed_everything  # seed_everything: true, now drawn
        self.save_config_kwargs = {**self.save_config_kwargs, "folder": self.record_dir,
                                   "as_given": self.as_given}
        for callback in self.trainer_defaults.get("callbacks", []):
            if isinstance(callback, RunRecorder):
                self.recorder, callback.settings = callback, self.settings

    def instantiate_trainer(self, **kwargs):
        trainer_config = self.config_init[self.subcommand]["trainer"] if self.subcommand else \
            self.config_init["trainer"]
        callbacks = _listed(trainer_config.get("callbacks"))
        plugins = _listed(trainer_config.get("plugins"))
        if trainer_config.get("enable_progress_bar") is not False and not console.has_progress_bar(callbacks):
            kwargs["callbacks"] = [*callbacks, console.progress_bar()]  # epochs counted from 1
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:  # whatever the loggers, next to the record
            callback.dirpath = str(rundir.checkpoints_dir(trainer.default_root_dir).resolve())
        return trainer

    def before_fit(self) -> None:
        slow = console.slow_cpu_warning(self.trainer, self.model, self.datamodule)
        cfg = self.config["fit"]
        if slow and not cfg.allow_slow:
            default = inspect.signature(CIFARData).parameters["root"].default
            root = f" --data.root {cfg.data.root}" if cfg.data.root != default else ""
            raise ValueError(f"{slow}; for a run of minutes: wrn fit --config configs/quick.yaml{root}; "
                             "to train this anyway, add --allow_slow true")
        recorder = self.recorder
        if self.trainer.is_global_zero:
            recorder.lock = rundir.hold_lock(self.trainer.default_root_dir)
            console.say(slow and f"warning: {slow}", sys.stderr)
        recorder.test_follows = bool(cfg.get("test_after_fit")) and self.datamodule.has_test_split()

    def after_fit(self) -> None:
        recorder = self.recorder
        if recorder.test_follows and not self.trainer.interrupted:
            previous = signal.signal(signal.SIGTERM, _raise_sigterm)  # between the passes too
            try:
                self._test_after_fit()
            except BaseException as exc:
                recorder.on_exception(self.trainer, self.model, exc)
                raise
            finally:
                signal.signal(signal.SIGTERM, previous)
            recorder.finish(self.trainer)  # a run is finished once its record is whole
        if self.trainer.is_global_zero:
            console.say(console.fit_summary(self.trainer))

    def _test_after_fit(self) -> None:
        """The test split at the end: the final weights, then the best-validation weights (each
        copy's own, for a fused run), one pass when they are the final ones."""
        recorder = self.recorder
        self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        recorder.record_test(self.trainer, self.model, "test_acc")
        if not recorder.best_is_final(self.trainer):
            if self.model.copies > 1:
                recorder.restore_copy_bests(self.model)
                self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
            else:
                best = next(cb.best_model_path for cb in self.trainer.checkpoint_callbacks if cb.monitor)
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best,
                                  weights_only=True, verbose=False)
        recorder.record_test(self.trainer, self.model, "test_acc_best")

    def after_validate(self) -> None:
        self._record_evaluation("validate")

    def before_test(self) -> None:
        self._test_started = time.perf_counter()

    def after_test(self) -> None:
        self._record_evaluation("test")
        if self.trainer.is_global_zero:
            console.say(console.evaluation_summary(
                self.trainer, time.perf_counter() - self._test_started,
                console.count_test_images(self.datamodule)))

    def _record_evaluation(self, stage: str) -> None:
        self.recorder.record_evaluation(self.trainer, self.model, self.record_dir, stage,
                                        self.config[stage].get("ckpt_path"))

    def before_predict(self) -> None:
        writer = self.config_init["predict"]["predictions"]
        if not writer.out:  # beside the evaluation's record, never into the run's own files
            writer.out = str(self.record_dir / DEFAULT_OUT)
        if writer.images:
            self.datamodule = FolderPredictData(writer.images, self.datamodule)

    def after_predict(self) -> None:
        writer = self.config_init["predict"]["predictions"]
        if self.trainer.is_global_zero and writer.written:
            console.say(f"predictions: {writer.written} ({writer.summary})")


def _raise_sigterm(signum, frame) -> None:
    raise SIGTERMException()


def _listed(value) -> list:
    """A trainer option of one object or a list, as a list; None or True: none given."""
    return [] if value is None or value is True else value if isinstance(value, list) else [value]


def resolve_run_defaults(cfg, subcommand: str | None) -> Path:
    """Fill in weights_only, the run folder and the loggers; returns the folder of this command's
    own record: the run folder for fit, RUN/eval/<command>-<time> for an evaluation."""
    if subcommand and cfg.get("weights_only") is None:
        cfg.weights_only = True  # checkpoints hold tensors and plain data only
    for key in ("data.root", "data.cache_dir"):  # a saved config's paths mean the same folders
        if cfg.get(key) and not Path(cfg[key]).expanduser().is_absolute():
            cfg[key] = str(Path(cfg[key]).resolve())
    trainer = cfg.trainer
    cuda = torch.cuda.is_available() and trainer.accelerator in ("auto", "gpu", "cuda")
    trainer.precision = trainer.precision or ("bf16-mixed" if cuda else "32-true")
    trainer.benchmark = cuda if trainer.benchmark is None else trainer.benchmark
    cfg.model.channels_last = cuda if cfg.model.channels_last is None else cfg.model.channels_last
    cfg.data.loader = ("gpu" if cuda else "dataloader") if cfg.data.loader == "auto" else cfg.data.loader
    if not trainer.default_root_dir:
        trainer.default_root_dir = str(rundir.default_run_dir(model_spec_from_config(cfg.model).name,
                                                              cfg.seed_everything))
    root = Path(trainer.default_root_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"trainer.default_root_dir {root} is a file, not a folder; "
                         "give the folder the run should write into")
    record_dir = root if subcommand in (None, "fit") else rundir.new_evaluation_dir(root, subcommand)
    if trainer.logger is not False:
        trainer.logger = _own_loggers(str(root), record_dir) + _listed(trainer.logger)
    return record_dir


def _own_loggers(root: str, record_dir: Path) -> list[dict]:
    """A fit logs CSV and TensorBoard into the run folder, an evaluation CSV into its own; the
    saved config keeps `logger: null` for these, so it replays anywhere, TensorBoard or not."""
    import importlib.util
    import warnings

    if record_dir != Path(root):
        return [_logger("CSVLogger", str(record_dir.parent), record_dir.name)]
    loggers = [_logger("CSVLogger", root, "")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(_logger("TensorBoardLogger", root, "tb"))
    else:
        warnings.warn("tensorboard is not installed: this run has no TensorBoard log "
                      "(pip install tensorboard)", stacklevel=2)
    return loggers


def _logger(name: str, save_dir: str, version: str) -> dict:
    return {"class_path": f"lightning.pytorch.loggers.{name}",
            "init_args": {"save_dir": save_dir, "name": "", "version": version}}


def check_checkpoint_matches(ckpt_path: str, model_cfg) -> None:
    from jsonargparse import Namespace

    checkpoint = rundir.load_checkpoint(ckpt_path)
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if "name" not in hparams:
        return
    saved = model_spec_from_config(Namespace(**{**hparams, "arch": hparams.get("arch") or {}}))
    wanted = model_spec_from_config(model_cfg)
    if saved != wanted:
        differs = sorted(k for k in set(saved.args) | set(wanted.args)
                         if saved.args.get(k) != wanted.args.get(k))
        detail = ", ".join(f"{k}: {saved.args.get(k)} vs {wanted.args.get(k)}" for k in differs)
        raise ValueError(f"checkpoint {ckpt_path} holds {saved.name}, the config asks for "
                         f"{wanted.name} ({detail})")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, saving through `rundir.save_checkpoint`."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        rundir.save_checkpoint(checkpoint, path)


class ConfigSaver(SaveConfigCallback):
    """config.yaml, atomically, into the command's own record folder, with the values it was
    given before resolution (`as_given`: loggers, ckpt_path), so the file replays anywhere."""

    def __init__(self, parser, config, folder: Path, as_given: dict, **kwargs):
        super().__init__(parser, config, **kwargs)
        self.folder, self.as_given = Path(folder), as_given

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            config = self.config.clone()
            for key, value in self.as_given.items():
                if key in config:
                    config[key] = value
            rundir.write_config(self.folder, self.parser.dump(config, skip_none=False))
        self.already_saved = trainer.strategy.broadcast(True)


def run_lightning(argv: list[str]) -> None:
    # last.ckpt has a callback of its own: Lightning (>= 2.6) rewrites a monitored callback's
    # last.ckpt only in epochs that improve the monitor, so a killed run would resume from its best
    # epoch rather than its latest. No version counters: a run has one best.ckpt and one last.ckpt.
    recorder = RunRecorder()
    callbacks = [recorder,
                 ModelCheckpoint(filename="best", monitor="val_acc", mode="max",
                                 auto_insert_metric_name=False, enable_version_counter=False),
                 ModelCheckpoint(filename="last", enable_version_counter=False)]
    try:
        WRNCLI(LitClassifier, CIFARData, args=None if argv == sys.argv[1:] else argv,
               seed_everything_default=0, trainer_defaults={"callbacks": callbacks, "max_epochs": 200},
               save_config_callback=ConfigSaver, save_config_kwargs={"overwrite": True},
               auto_configure_optimizers=False,
               parser_kwargs={"prog": "wrn", "exit_on_error": False,
                              "description": "Train and evaluate WRN / ResNet on CIFAR."})
    except SIGTERMException:  # Lightning's would exit 0
        print(interruption("by SIGTERM", argv), file=sys.stderr)
        raise SystemExit(SIGTERM_EXIT) from None
    finally:
        if recorder.lock is not None:  # the run folder is free again
            recorder.lock.close()


class FitConfigChecker:
    """Parses `wrn fit` argument lists as the CLI would, running nothing; built once, it checks
    each point of a sweep in milliseconds."""

    def __init__(self):
        import logging

        logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)

        class Checker(WRNCLI):
            def instantiate_classes(self) -> None:  # parsing is all a check needs
                pass

        self._cli = Checker(LitClassifier, CIFARData, args=[], run=False, seed_everything_default=0,
                            auto_configure_optimizers=False, parser_kwargs={"exit_on_error": False})

    def check(self, argv: list[str]):
        """The parsed config; ConfigError for bad keys or types, ValueError for a bad model."""
        try:
            config = self._cli.parser.parse_args(argv)
        except SystemExit as exc:
            raise ConfigError(f"invalid config {' '.join(argv)} (exit {exc.code})") from None
        except Exception as exc:  # jsonargparse's ArgumentError and friends
            raise ConfigError(" ".join(str(exc).split())) from None
        with torch.device("meta"):  # runs every constructor check, allocates nothing
            model_spec_from_config(config.model).build()
        return config
