"""Which exceptions are the user's to fix, and their one-line message; YAML read within a size cap."""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

MAX_MESSAGE = 400  # characters of one error line; longer messages end in "…"
INTERRUPTED_EXIT = 130  # Ctrl-C, as the shell reports a SIGINT death
MAX_YAML_NODES = 100_000  # a YAML file expanding past this many nodes is an alias bomb
YAML_SUFFIXES = (".yaml", ".yml")
# What torch.load raises for a damaged or foreign file.
CHECKPOINT_DAMAGE = ("PytorchStreamReader failed", "Invalid magic number", "unexpected EOF",
                     "file might be corrupted")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line_error(exc: BaseException) -> str | None:
    """One line of at most MAX_MESSAGE characters for an error caused by input (config, data,
    checkpoint, resources, the network); None for anything else: a bug keeps its traceback."""
    message = _message(exc)
    return None if message is None else cap(message)


def cap(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` on one line, cut to `limit` characters with "…" (only the head is read)."""
    head = " ".join(text[:limit * 4].split())
    return head if len(head) <= limit and len(text) <= limit * 4 else head[:limit - 1].rstrip() + "…"


def interrupted(exc: SystemExit) -> bool:
    """True for the sys.exit(1) with which Lightning ends a fit after Ctrl-C."""
    return isinstance(exc.__context__, KeyboardInterrupt)


def interruption(cause: str, argv: list) -> str:
    """The one line a stopped command leaves; a fit's says how to carry on."""
    return f"error: interrupted {cause}" + ("; resume with --ckpt_path last" if argv[:1] == ["fit"] else "")


def _ray_connection_errors() -> tuple[type, ...]:
    """Ray's connection and authentication errors, when Ray is already imported (never imports it)."""
    module = sys.modules.get("ray.exceptions")
    names = ("RaySystemError", "RpcError", "AuthenticationError", "GetTimeoutError")
    return tuple(getattr(module, name) for name in names if isinstance(getattr(module, name, None), type))


def decode_error(path: str | os.PathLike, exc: UnicodeDecodeError) -> str:
    return f"{path} is not a UTF-8 text file (byte {exc.start}: {exc.reason})"


def _message(exc: BaseException) -> str | None:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        reason = _first_line(exc)  # torch's own message starts "CUDA out of memory."
        prefix = "" if reason.startswith("CUDA out of memory") else "CUDA out of memory: "
        return prefix + reason + " (lower data.batch_size)"
    if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict" in str(exc):
        return _checkpoint_mismatch(str(exc))
    if isinstance(exc, (ConnectionError, TimeoutError, *_ray_connection_errors())):
        return f"connection failed ({type(exc).__name__}): {_first_line(exc)}"
    if (unreadable := checkpoint_load_error(exc)) is not None:
        return unreadable
    if isinstance(exc, UnicodeDecodeError):
        return f"not a UTF-8 text file (byte {exc.start}: {exc.reason})"
    if isinstance(exc, (ValueError, FloatingPointError, KeyError, TypeError)):
        return str(exc).strip() or type(exc).__name__
    if type(exc).__name__ == "ArgumentError":  # jsonargparse / argparse config errors
        return str(exc)
    return None


def _checkpoint_mismatch(message: str) -> str:
    shape = r"(torch\.Size\(\[[^\]]*\]\)|\S+)"  # torch.Size([16, 3, 3, 3]) holds spaces
    shapes = re.search(rf"size mismatch for ([\w.]+): copying a param with shape {shape} from "
                       rf"checkpoint, the shape in current model is {shape}", message)
    detail = (f"{shapes.group(1)} is {shapes.group(2)} in the checkpoint but "
              f"{shapes.group(3)} in the model" if shapes else _first_line(message))
    return f"checkpoint was saved from a different architecture: {detail}"


def checkpoint_load_error(exc: BaseException) -> str | None:
    """One line for what torch.load(weights_only=True) refused (pickled code or objects, or not
    a checkpoint at all) or could not read (truncated, damaged, an OS error); None otherwise."""
    if isinstance(exc, pickle.UnpicklingError):
        text = str(exc)
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = next((line.strip() for line in detail.splitlines() if line.strip()), "unpickling failed")
        return (f"checkpoint refused by the safe loader (torch.load weights_only=True: "
                f"{reason.split('. ')[0].rstrip('.')}); nothing in it was unpickled")
    if isinstance(exc, RuntimeError) and any(text in str(exc) for text in CHECKPOINT_DAMAGE):
        return f"checkpoint is truncated or damaged ({str(exc).split('. ')[0]})"
    if isinstance(exc, EOFError):
        return "checkpoint is empty or truncated (the file ends before its data)"
    if isinstance(exc, OSError):  # 'permission denied: <path>', 'no space left on device: <path>'
        reason = os.strerror(exc.errno).lower() if exc.errno else _first_line(exc)
        paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
        return f"{reason}: {' -> '.join(paths)}" if paths else reason
    return None


def _composed(text: str, source: str) -> tuple[list, int]:
    """The documents of `text` as composed (aliases shared) and how many nodes they hold once
    every alias is expanded, counted on the graph without expanding anything."""
    import yaml

    loader = yaml.SafeLoader(text)
    sizes: dict[int, int] = {}

    def size(node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 1  # a node that contains itself counts once
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                        else [])
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    try:
        nodes = [loader.get_node() for _ in iter(loader.check_node, False)]
        return nodes, sum(map(size, nodes))
    except RecursionError:
        raise ValueError(f"{source}: YAML nested too deeply to read") from None
    finally:
        loader.dispose()


def _refuse_bombs(count: int, source: str) -> None:
    if count > MAX_YAML_NODES:
        raise ValueError(f"{source}: YAML aliases expand past {MAX_YAML_NODES:,} nodes ({count:,}); "
                         "refusing to read it")


def yaml_node_count(text: str, source: str = "YAML") -> int:
    """How many nodes the documents in `text` hold once every alias is expanded; 0 when it is
    not YAML (the parser that reads it then says where)."""
    import yaml

    try:
        return _composed(text, source)[1]
    except yaml.YAMLError:
        return 0


def load_yaml(path: Path) -> Any:
    """yaml.safe_load of a file, refusing binary files and alias bombs in one line naming it."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(decode_error(path, exc)) from None
    try:
        nodes, count = _composed(text, str(path))
        _refuse_bombs(count, str(path))
        if len(nodes) > 1:
            raise ValueError(f"{path}: holds {len(nodes)} YAML documents; expected one")
        return yaml.SafeLoader("").construct_document(nodes[0]) if nodes else None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:300]})") from None


def check_config_args(argv: list[str]) -> None:
    """ValueError naming the file for a config on the command line (after --config, or any
    existing .yaml/.yml file; --config may also be inline YAML) that is not UTF-8 text or expands
    past MAX_YAML_NODES: checked before the parser reads it, which would expand an alias bomb
    into gigabytes."""
    for i, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        if option == "--config":
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
        elif arg.lower().endswith(YAML_SUFFIXES) or value.lower().endswith(YAML_SUFFIXES):
            value = value or arg
        else:
            continue
        source, path = value, os.path.expanduser(value)
        if os.path.isfile(path):
            try:
                text = Path(path).read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(decode_error(value, exc)) from None
        elif option == "--config" and value:
            text, source = value, "--config"
        else:
            continue
        _refuse_bombs(yaml_node_count(text, source), source)
