"""The `wrn` command: dispatch to the Lightning subcommands (wrn.train) and the package's own, with
one line on stderr for the user's errors."""

from __future__ import annotations

import os
import sys

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# Each a module with main(argv) -> exit code.
OWN_COMMANDS = {"count": "wrn.complexity", "sweep": "wrn.sweep.cli", "plot": "wrn.report.plot",
                "table": "wrn.report.tables"}
DEBUG_ENV = "WRN_DEBUG"  # 1, true or yes: full tracebacks instead of one-line errors
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, as a shell reports a reader that closed the pipe

COMMAND_HELP = {  # one line per command, in the order `wrn --help` lists them
    "fit": "train a model (--config FILE; --model.*, --data.*, --trainer.* override it)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "write class probabilities for the test split or a folder of images to a CSV",
    "count": "parameters and multiply-adds of named models (wrn count wrn-28-10 resnet-110)",
    "sweep": "run, inspect and summarize depth x width grids (run | status | summarize)",
    "plot": "error against parameters, MACs and training time from results.csv files",
    "table": "paper-style tables (markdown, latex, csv) from results.csv files",
}


def usage() -> str:
    """`wrn --help`, built without importing torch or Lightning."""
    from wrn import __version__

    width = max(map(len, COMMAND_HELP))
    lines = ["usage: wrn COMMAND [ARGS]    (wrn COMMAND --help: that command's options)", "",
             f"wrn {__version__}: Wide ResNets against thin deep ResNets on CIFAR, from a name to a "
             "trade-off plot.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMAND_HELP.items()]
    lines += ["", "options:", "  -h, --help  this help", "  --version   the package version", "",
              f"{DEBUG_ENV}=1 shows full tracebacks instead of one-line errors."]
    return "\n".join(lines)


def _run(command: str, argv: list[str]) -> int | None:
    if command in LIGHTNING_COMMANDS:
        from wrn.console import quiet_known_noise
        from wrn.errors import check_config_args
        from wrn.train import run_lightning

        check_config_args(argv)  # before the parser expands an alias bomb
        quiet_known_noise()
        return run_lightning(argv)
    import importlib

    return importlib.import_module(OWN_COMMANDS[command]).main(argv[1:])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    if command in (*LIGHTNING_COMMANDS, *OWN_COMMANDS):
        sys.exit(_guarded(lambda args: _run(command, args), argv))
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


def debugging() -> bool:
    """WRN_DEBUG=1 (or true, yes) asks for tracebacks; unset, 0, false or no do not."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def _guarded(command, argv) -> int:
    """The user's errors as one line on stderr and exit code 2 (130 for Ctrl-C)."""
    from wrn.errors import INTERRUPTED_EXIT, interrupted, interruption, one_line_error

    if debugging():
        return command(argv) or 0
    try:
        return command(argv) or 0
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say, to anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not interrupted(exc):  # Lightning's Ctrl-C: sys.exit(1)
            raise
        print(interruption("(Ctrl-C)", argv), file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as exc:  # noqa: BLE001 - turned into a one-line message or re-raised
        message = one_line_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
