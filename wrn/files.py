"""The one way the package writes a file whole (temporary name, fsync, rename), and JSON lines."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

SHARED_FILE_MODE = 0o644  # records, caches and figures are meant to be read by others


@contextmanager
def atomic_file(path: str | os.PathLike, keep_previous: str | os.PathLike | None = None
                ) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` only once whole: readers see the old file or the new
    one, never half; on any failure the temporary file goes and `path` stays as it was.
    `keep_previous`: where the file being replaced is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, SHARED_FILE_MODE)  # mkstemp makes 0600
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: they are stored as null, so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, obj: dict) -> None:
    """One line in a single write: a kill leaves at most a cut last line, which `read_jsonl`
    reports and skips, and the next line starts afresh."""
    line = json.dumps(_clean(obj), sort_keys=True) + "\n"
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """(records, problems): every parseable line, and one message per bad line."""
    records, problems = [], []
    path = Path(path)
    if not path.exists():
        return records, problems
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: unreadable line (truncated write?) skipped")
    return records, problems
