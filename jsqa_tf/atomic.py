"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file, and an interrupted run leaves finished files intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    The temporary name ends with `suffix` (default: `path`'s extension), for writers that
    insist on one (Keras wants ".weights.h5").
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] if suffix is None else suffix
    handle, temp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-", suffix=suffix)
    os.close(handle)
    os.chmod(temp_path, 0o666 & ~_umask())
    try:
        yield temp_path
        os.replace(temp_path, path)
    finally:
        if os.path.exists(temp_path):
            os.remove(temp_path)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes a text file atomically."""
    with atomic_path(path) as temp_path:
        with open(temp_path, "w", encoding="utf-8") as stream:
            stream.write(text)


def write_json(path: str | os.PathLike, data: object) -> None:
    """Writes `data` as indented JSON atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_writable(path: str | os.PathLike) -> None:
    """Raises `OutputError` now, before any work, when `path` could not be written later:
    a file stands where a folder of its path should be, or the folder is not writable."""
    from jsqa_tf.errors import OutputError

    path = os.path.abspath(os.fspath(path))
    ancestor = os.path.dirname(path)
    while not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if not os.path.isdir(ancestor):
        raise OutputError(path, f"cannot be written: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(path, f"cannot be written: no permission to write in {ancestor}")
