"""The `wrn` command: LightningCLI subcommands (fit, validate, test, predict) and the package's own
(count, sweep, plot, table), each of which owns its argument parser."""

from __future__ import annotations

import sys


def _own_commands() -> dict:
    from wrn import complexity

    return {"count": complexity.main}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = _own_commands()
    if argv and argv[0] in commands:
        sys.exit(commands[argv[0]](argv[1:]))
    print("usage: wrn {" + ",".join(commands) + "} ...", file=sys.stderr)
    sys.exit(2)
